//! Live recording end to end: Janus (Debian), two synthetic publishers and `veil record` all
//! inside a network namespace the test creates; the recording lands in a local folder.

mod common;
#[path = "common/janus.rs"]
mod janus;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;

fn publisher(j: &janus::Janus, display: &str, pattern: &str, freq: &str, duration: &str, chat: &[&str]) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &j.netns]).arg(env!("CARGO_BIN_EXE_veil-publisher"));
    c.args(["--janus", &j.url, "--display", display, "--pattern", pattern, "--freq", freq, "--duration", duration]);
    c.arg("--seen-log").arg(j.dir.path().join("seen.log"));
    for m in chat {
        c.args(["--chat", m]);
    }
    c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn a_live_room_is_recorded_with_late_joiner_leaver_and_chat() {
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    let job = serde_json::json!({
        "id": "live-1",
        "session": {"type": "janus", "url": j.url, "room": 1234},
        "layout": "grid",
        "destination": {"url": format!("file://{}", dest.display())},
        "limits": {"max_duration_s": 60, "empty_timeout_s": 3}
    });
    let job_path = work.path().join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job).unwrap()).unwrap();
    let spill = work.path().join("spill");
    let worker = Command::new("ip")
        .args(["netns", "exec", &j.netns])
        .arg(env!("CARGO_BIN_EXE_veil"))
        .arg("record")
        .arg(&job_path)
        .arg("--spill-dir")
        .arg(&spill)
        .arg("--outbox-dir")
        .arg(work.path().join("outbox"))
        .env("VEIL_LOG", "veil=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // Ana (red, 440 Hz) for 11 s with a chat message; Bob (green, 880 Hz) joins 3 s later for
    // 5 s. A subscription takes about a second (ICE, DTLS, first key frame) on a busy 2-core
    // machine before its media reaches the mix; the bounds below allow for that.
    let mut ana = publisher(&j, "Ana", "red", "440", "11", &["2:hello from ana"]);
    std::thread::sleep(Duration::from_secs(3));
    let mut bob = publisher(&j, "Bob", "green", "880", "5", &[]);
    assert!(bob.wait().unwrap().success(), "bob failed");
    assert!(ana.wait().unwrap().success(), "ana failed");

    let end = Instant::now() + Duration::from_secs(60);
    let mut worker = worker;
    while worker.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the worker did not stop after the room emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = worker.wait_with_output().unwrap();
    let result = result_json(&out);
    assert_eq!(result["warnings"][0], "recording ended: no publisher left", "{result}");
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!((10.0..30.0).contains(&dur), "duration {dur}");
    assert!(std::fs::read_dir(&spill).unwrap().next().is_none(), "spill wiped");

    // Who is visible when: sample every 0.25 s.
    let mut red = Vec::new();
    let mut green = Vec::new();
    let mut t = 0.25;
    while t < dur - 0.3 {
        let f = frame(&mp4, t);
        if colour_share(&f, RED, 60) > 0.05 {
            red.push(t);
        }
        if colour_share(&f, GREEN, 60) > 0.05 {
            green.push(t);
        }
        t += 0.25;
    }
    let span = |v: &[f64]| (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
    let (r0, r1) = span(&red);
    let (g0, g1) = span(&green);
    assert!(r1 - r0 >= 9.0 && r1 - r0 <= 13.0, "Ana visible {r0:.2}..{r1:.2}");
    assert!(g1 - g0 >= 3.5 && g1 - g0 <= 6.5, "Bob visible {g0:.2}..{g1:.2}");
    assert!(g0 > r0 + 1.0 && g1 < r1, "Bob joined after Ana and left before her: ana {r0}..{r1}, bob {g0}..{g1}");
    assert!(dur - r1 > 1.5, "after everyone left the tiles are gone ({r1:.2} of {dur:.2})");
    // Who is audible when.
    let audio = audio_mono_8k(&mp4);
    let mid_bob = (g0 + g1) / 2.0;
    assert!(tone_amplitude(&audio, 8000.0, 880.0, mid_bob - 0.5, mid_bob + 0.5) > 0.02, "Bob audible while visible");
    assert!(tone_amplitude(&audio, 8000.0, 880.0, g1 + 1.0, r1) < 0.01, "Bob silent after leaving");
    assert!(tone_amplitude(&audio, 8000.0, 440.0, r0 + 1.0, r1 - 0.5) > 0.02, "Ana audible");
    // The chat CSV names the sender and carries the text.
    let csv = std::fs::read_to_string(object_path(&result, "chat")).unwrap();
    let line = csv.lines().find(|l| l.contains("hello from ana")).unwrap_or_else(|| panic!("chat missing: {csv}"));
    assert!(line.contains(",Ana,"), "{line}");
    // The publishers saw each other, never the worker.
    let seen = std::fs::read_to_string(j.dir.path().join("seen.log")).unwrap_or_default();
    assert!(seen.lines().any(|l| l == "Ana"), "Bob saw Ana: {seen}");
    assert!(!seen.contains(veil::session::janus::HIDDEN_DISPLAY), "a publisher was told about the worker: {seen}");
}

fn job(j: &janus::Janus, dest: &std::path::Path, empty_timeout: u64) -> serde_json::Value {
    serde_json::json!({
        "id": "live-stop",
        "session": {"type": "janus", "url": j.url, "room": 1234},
        "destination": {"url": format!("file://{}", dest.display())},
        "limits": {"max_duration_s": 60, "empty_timeout_s": empty_timeout}
    })
}

#[test]
fn stop_by_signal_mid_session_delivers_a_complete_file() {
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    let job_path = work.path().join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job(&j, &dest, 30)).unwrap()).unwrap();
    let spill = work.path().join("spill");
    let worker = Command::new("ip")
        .args(["netns", "exec", &j.netns])
        .arg(env!("CARGO_BIN_EXE_veil"))
        .arg("record")
        .arg(&job_path)
        .arg("--spill-dir")
        .arg(&spill)
        .arg("--outbox-dir")
        .arg(work.path().join("outbox"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ana = publisher(&j, "Ana", "red", "440", "20", &[]);
    std::thread::sleep(Duration::from_secs(6));
    // SIGTERM to the worker (ip netns exec execs it, so the pid is the worker's).
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let out = worker.wait_with_output().unwrap();
    let _ = ana.kill();
    let _ = ana.wait();
    let result = result_json(&out);
    assert_eq!(result["warnings"][0], "recording ended: stop requested");
    let mp4 = object_path(&result, "composite");
    let v = probe_stream(&mp4, "v:0");
    assert_eq!(v["codec_name"], "h264");
    let frames: f64 = v["nb_read_packets"].parse().unwrap();
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(dur > 4.0 && (frames / 30.0 - dur).abs() < 1.0, "a complete file: {frames} frames for {dur} s");
    assert!(colour_share(&frame(&mp4, dur - 1.0), RED, 60) > 0.05, "Ana was still on screen when it stopped");
    assert!(std::fs::read_dir(&spill).unwrap().next().is_none(), "spill empty");
}
