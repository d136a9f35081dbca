//! Live recording end to end: Janus (Debian), synthetic publishers (and one headless Chromium)
//! and `veil record` all inside a network namespace the test creates; the recording lands in
//! Garage (write-only key, on the host side of the namespace's veth) or a local folder.

mod common;
#[path = "common/janus.rs"]
mod janus;
#[path = "common/servers.rs"]
mod servers;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;

fn publisher(j: &janus::Janus, display: &str, pattern: &str, freq: &str, duration: &str, chat: &[&str]) -> Child {
    let mut args = vec!["--display", display, "--pattern", pattern, "--freq", freq, "--duration", duration];
    for m in chat {
        args.extend(["--chat", m]);
    }
    publisher_with(j, &args)
}

/// `veil-publisher` inside the namespace with these arguments (after `--janus`).
fn publisher_with(j: &janus::Janus, args: &[&str]) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &j.netns]).arg(env!("CARGO_BIN_EXE_veil-publisher"));
    c.args(["--janus", &j.url]).args(args);
    c.arg("--seen-log").arg(j.dir.path().join("seen.log"));
    c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn a_live_room_is_recorded_into_garage_with_late_joiner_leaver_mute_and_chat() {
    const BLUE: u32 = 0x0000ff;
    let j = janus::Janus::start();
    // Garage with a write-only key for the worker, on the host side of the namespace's veth.
    let host_ip = j.ip.rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap();
    let g = servers::Garage::start_on(&host_ip);
    let work = tempfile::tempdir().unwrap();
    let mut job = job(&j, &work.path().join("unused"), 3);
    job["layout"] = "grid".into();
    job["destination"] = serde_json::json!({
        "url": format!("s3://{}/clinic-7/", g.bucket),
        "s3": {"region": g.writer.region, "endpoint": g.writer.endpoint, "access_key_id": g.writer.key_id,
               "secret_access_key": g.writer.secret, "force_path_style": true}
    });
    let spill = work.path().join("spill");
    let worker = start_worker(&j, work.path(), &job);
    std::thread::sleep(Duration::from_secs(1));
    // Ana (red, 440 Hz) for 13 s with a chat message; Chloe (blue, 660 Hz) for 13 s, her camera
    // off from 6 s to 9 s; Bob (green, 880 Hz) joins 5 s after them and leaves after 5 s. A
    // subscription takes about a second (ICE, DTLS, first key frame) on a busy 2-core machine
    // before its media reaches the mix; the bounds below allow for that.
    let mut ana = publisher(&j, "Ana", "red", "440", "13", &["2:hello from ana"]);
    let mut chloe = publisher_with(&j, &["--display", "Chloe", "--pattern", "blue", "--freq", "660", "--duration", "13", "--mute-video", "6:9"]);
    std::thread::sleep(Duration::from_secs(5));
    let bob_log = work.path().join("bob.log");
    let mut bob = publisher_with(&j, &["--display", "Bob", "--pattern", "green", "--freq", "880", "--duration", "5", "--events-log", bob_log.to_str().unwrap()]);
    for (who, p) in [("bob", &mut bob), ("ana", &mut ana), ("chloe", &mut chloe)] {
        assert!(p.wait().unwrap().success(), "{who} failed");
    }

    let result = finish_worker(worker);
    assert_eq!(result["warnings"][0], "recording ended: no publisher left", "{result}");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!((12.0..30.0).contains(&dur), "duration {dur}");
    assert!(std::fs::read_dir(&spill).unwrap().next().is_none(), "spill wiped");
    // What landed in the bucket is what the result says (fetched with a read key).
    let object = |kind: &str| result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == kind).unwrap().clone();
    let (video, chat) = (object("composite"), object("chat"));
    assert!(video["key"].as_str().unwrap().starts_with("clinic-7/composite/"), "{video}");
    let bytes = g.reader.get(&g.bucket, video["key"].as_str().unwrap());
    assert_eq!(servers::sha256_hex(&bytes), video["sha256"].as_str().unwrap());
    let mp4 = work.path().join("landed.mp4");
    std::fs::write(&mp4, &bytes).unwrap();

    // Who is visible when: sample every 0.25 s.
    let (mut red, mut green, mut blue) = (Vec::new(), Vec::new(), Vec::new());
    let mut t = 0.25;
    while t < dur - 0.3 {
        let f = frame(&mp4, t);
        for (c, v) in [(RED, &mut red), (GREEN, &mut green), (BLUE, &mut blue)] {
            if colour_share(&f, c, 60) > 0.05 {
                v.push(t);
            }
        }
        t += 0.25;
    }
    let span = |v: &[f64]| (v.first().copied().unwrap_or(0.0), v.last().copied().unwrap_or(0.0));
    let (r0, r1) = span(&red);
    let (g0, g1) = span(&green);
    let (b0, b1) = span(&blue);
    assert!(r1 - r0 >= 11.0 && r1 - r0 <= 15.0, "Ana visible {r0:.2}..{r1:.2}");
    assert!(g1 - g0 >= 3.5 && g1 - g0 <= 6.5, "Bob visible {g0:.2}..{g1:.2}");
    assert!(g0 > r0 + 3.0 && g1 < r1, "Bob joined after Ana and left before her: ana {r0}..{r1}, bob {g0}..{g1}");
    assert!(dur - r1 > 1.5, "after everyone left the tiles are gone ({r1:.2} of {dur:.2})");
    // Bob's tile (his name tile, then his camera over it) is there from when the room accepted
    // his stream until he left, within half a second, on the recording's own clock.
    let zero = chrono::DateTime::parse_from_rfc3339(result["started_at"].as_str().unwrap()).unwrap().timestamp_millis();
    let events = std::fs::read_to_string(&bob_log).unwrap();
    let at = |what: &str| -> f64 {
        let ms: i64 = events.lines().find_map(|l| l.strip_prefix(what)).unwrap_or_else(|| panic!("{what} in {events}")).trim().parse().unwrap();
        (ms - zero) as f64 / 1000.0
    };
    let (published, left) = (at("published "), at("left "));
    const BOB_PLACEHOLDER: u32 = 0x3a5850; // the third peer's name tile
    let bob_tile = |t: f64| {
        let f = frame(&mp4, t);
        colour_share(&f, GREEN, 60) > 0.05 || colour_share(&f, BOB_PLACEHOLDER, 10) > 0.03
    };
    let edge = |expected: f64, appearing: bool| -> f64 {
        let times: Vec<f64> = (0..=30).map(|i| expected - 1.5 + i as f64 * 0.1).filter(|&t| t > 0.0 && t < dur).collect();
        let first = times.iter().copied().find(|&t| bob_tile(t) == appearing).unwrap_or(f64::NAN);
        if appearing { first } else { first - 0.05 }
    };
    let (appeared, vanished) = (edge(published, true), edge(left, false));
    assert!((appeared - published).abs() <= 0.5, "Bob's tile appeared at {appeared:.2} s, his stream was accepted at {published:.2} s");
    assert!((vanished - left).abs() <= 0.5, "Bob's tile went at {vanished:.2} s, he left at {left:.2} s");
    eprintln!("Bob: accepted {published:.2} s, tile {appeared:.2}..{vanished:.2} s, left {left:.2} s; camera {g0:.2}..{g1:.2} s");
    // Chloe's camera was off for 3 s: a gap in her colour (her name tile instead), then back.
    let gap = blue.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    assert!((1.5..=4.0).contains(&gap) && b1 - b0 >= 10.0, "Chloe's camera off once for ~3 s: {b0}..{b1}, longest gap {gap}");
    // Who is audible when.
    let audio = audio_mono_8k(&mp4);
    let mid_bob = (g0 + g1) / 2.0;
    assert!(tone_amplitude(&audio, 8000.0, 880.0, mid_bob - 0.5, mid_bob + 0.5) > 0.02, "Bob audible while visible");
    assert!(tone_amplitude(&audio, 8000.0, 880.0, g1 + 1.0, r1) < 0.01, "Bob silent after leaving");
    assert!(tone_amplitude(&audio, 8000.0, 440.0, r0 + 1.0, r1 - 0.5) > 0.02, "Ana audible");
    assert!(tone_amplitude(&audio, 8000.0, 660.0, b0 + 1.0, b1 - 0.5) > 0.02, "Chloe audible, her camera off or not");
    // The chat CSV names the sender and carries the text.
    let csv = String::from_utf8(g.reader.get(&g.bucket, chat["key"].as_str().unwrap())).unwrap();
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
    let spill = work.path().join("spill");
    let worker = start_worker(&j, work.path(), &job(&j, &work.path().join("out"), 30));
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

/// Runs `veil record` on `job` inside the namespace; returns the child (stdout/stderr piped).
fn start_worker(j: &janus::Janus, work: &std::path::Path, job: &serde_json::Value) -> Child {
    let job_path = work.join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(job).unwrap()).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &j.netns])
        .arg(env!("CARGO_BIN_EXE_veil"))
        .arg("record")
        .arg(&job_path)
        .arg("--spill-dir")
        .arg(work.join("spill"))
        .arg("--outbox-dir")
        .arg(work.join("outbox"))
        .env("VEIL_LOG", "veil=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish_worker(worker: Child) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(60);
    let mut worker = worker;
    while worker.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the worker did not stop after the room emptied");
        std::thread::sleep(Duration::from_millis(100));
    }
    result_json(&worker.wait_with_output().unwrap())
}

/// Spans `(from, to)` of consecutive sample times (step `step`) for which `hit` holds.
fn spans(times: &[f64], hit: &[bool], step: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (&t, &h) in times.iter().zip(hit) {
        if !h {
            continue;
        }
        match out.last_mut() {
            Some(s) if t - s.1 <= step * 1.5 => s.1 = t,
            _ => out.push((t, t)),
        }
    }
    out
}

#[test]
fn a_screen_share_takes_the_main_region_and_a_muted_camera_shows_its_placeholder() {
    const BLUE: u32 = 0x0000ff;
    const PLACEHOLDER: u32 = 0x3a3f58; // the first peer's placeholder colour
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    let mut job = job(&j, &dest, 3);
    job["layout"] = "auto".into();
    let worker = start_worker(&j, work.path(), &job);
    std::thread::sleep(Duration::from_secs(1));
    // Ana's camera (red, 440 Hz) for 13 s, video muted from 8 s to 11 s; her screen share
    // (blue, a second publisher whose video is described as "screen") from about 2 s for 4 s.
    let mut ana = publisher_with(&j, &["--display", "Ana", "--pattern", "red", "--freq", "440", "--duration", "13", "--mute-video", "8:11"]);
    std::thread::sleep(Duration::from_secs(2));
    let screen = publisher_with(&j, &["--display", "Ana", "--pattern", "blue", "--freq", "0", "--duration", "4", "--screen"]);
    let out = screen.wait_with_output().unwrap();
    assert!(out.status.success(), "screen share failed: {}", stderr(&out));
    assert!(ana.wait().unwrap().success(), "ana failed");
    let result = finish_worker(worker);
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;

    let step = 0.25;
    let times: Vec<f64> = (1..).map(|i| i as f64 * step).take_while(|&t| t < dur - 0.3).collect();
    let frames: Vec<Vec<u8>> = times.iter().map(|&t| frame(&mp4, t)).collect();
    let share = |c: u32| -> Vec<f64> { frames.iter().map(|f| colour_share(f, c, 60)).collect() };
    let (red, blue, ph) = (share(RED), share(BLUE), share(PLACEHOLDER));
    // The screen share is large (main region), with Ana's camera small in the strip.
    let big_screen = spans(&times, &blue.iter().map(|&y| y > 0.45).collect::<Vec<_>>(), step);
    assert_eq!(big_screen.len(), 1, "one screen-share span, large: {big_screen:?}");
    let (s0, s1) = big_screen[0];
    assert!(s1 - s0 >= 2.0 && s1 - s0 <= 5.0, "screen share {s0}..{s1}");
    let mid = times.iter().position(|&t| t >= (s0 + s1) / 2.0).unwrap();
    assert!(red[mid] > 0.005 && red[mid] < 0.12, "Ana's camera in the strip during the share: {}", red[mid]);
    // Afterwards the grid is back to Ana alone (large), then her camera stops for ~3 s: her
    // placeholder shows instead of a frozen frame, and her camera comes back.
    let after: Vec<bool> = times.iter().zip(&red).map(|(&t, &r)| t > s1 + 0.5 && r > 0.5).collect();
    assert!(after.iter().any(|&b| b), "Ana alone and large after the share");
    let muted = spans(&times, &times.iter().zip(ph.iter().zip(&red)).map(|(&t, (&p, &r))| t > s1 && p > 0.3 && r < 0.01).collect::<Vec<_>>(), step);
    let series: Vec<String> = times.iter().zip(red.iter().zip(&ph)).map(|(t, (r, p))| format!("{t:.2}:{r:.2}/{p:.2}")).collect();
    // (A camera also stops an instant before its publisher's leave is announced: a blip.)
    let muted: Vec<(f64, f64)> = muted.into_iter().filter(|(a, b)| b - a >= 0.5).collect();
    assert_eq!(muted.len(), 1, "one muted span: {muted:?}; time:red/placeholder {series:?}");
    let (m0, m1) = muted[0];
    assert!(m1 - m0 >= 1.5 && m1 - m0 <= 3.5, "muted {m0}..{m1}");
    let back = times.iter().zip(&red).any(|(&t, &r)| t > m1 + 0.3 && r > 0.5);
    assert!(back, "the camera came back after the mute");
    // Her audio went on while her camera was off.
    let audio = audio_mono_8k(&mp4);
    assert!(tone_amplitude(&audio, 8000.0, 440.0, m0, m1) > 0.02, "Ana audible while her camera was off");
}

/// `start_time` of the first stream of `kind` ("v" or "a"), in seconds.
fn start_time(mp4: &std::path::Path, kind: &str) -> f64 {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", &format!("{kind}:0"), "-show_entries", "stream=start_time", "-of", "csv=p=0"])
        .arg(mp4)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0.0)
}

/// `(presentation time, mean luma)` of every video frame, as a player shows them.
fn luma_per_frame(mp4: &std::path::Path) -> Vec<(f64, f64)> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(mp4)
        .args(["-an", "-fps_mode", "passthrough", "-vf", "scale=16:9,format=gray", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let p = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time", "-of", "csv=p=0"])
        .arg(mp4)
        .output()
        .unwrap();
    let pts: Vec<f64> = String::from_utf8_lossy(&p.stdout).split_whitespace().filter_map(|t| t.trim_end_matches(',').parse().ok()).collect();
    let luma: Vec<f64> = o.stdout.chunks_exact(16 * 9).map(|f| f.iter().map(|&b| b as f64).sum::<f64>() / f.len() as f64).collect();
    assert_eq!(pts.len(), luma.len(), "one timestamp per frame");
    pts.into_iter().zip(luma).collect()
}

#[test]
fn lip_sync_of_a_flash_and_a_beep_is_measured() {
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let worker = start_worker(&j, work.path(), &job(&j, &work.path().join("out"), 2));
    std::thread::sleep(Duration::from_secs(1));
    // A white flash and a 1 kHz beep that start at the same instant at the source, every second.
    let mut p = publisher_with(&j, &["--display", "Sync", "--flash", "--duration", "9"]);
    assert!(p.wait().unwrap().success(), "publisher failed");
    let result = finish_worker(worker);
    let mp4 = object_path(&result, "composite");

    let a0 = start_time(&mp4, "a");
    let luma = luma_per_frame(&mp4);
    let flashes: Vec<f64> = luma.windows(2).filter(|w| w[1].1 > 128.0 && w[0].1 <= 128.0).map(|w| w[1].0).collect();
    let audio = audio_mono_8k(&mp4);
    let mut beeps = Vec::new();
    let mut quiet = 0usize;
    for (i, &x) in audio.iter().enumerate() {
        if x.abs() > 0.05 {
            if quiet >= 2400 {
                beeps.push(a0 + i as f64 / 8000.0);
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    // Pair each flash with the beep nearest to it; offset > 0: the sound comes late.
    let mut offsets: Vec<f64> = flashes
        .iter()
        .filter_map(|&f| beeps.iter().map(|&b| b - f).min_by(|x, y| x.abs().total_cmp(&y.abs())))
        .filter(|o| o.abs() < 0.5)
        .collect();
    assert!(offsets.len() >= 5, "flashes {flashes:?} beeps {beeps:?}");
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    let worst = offsets.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    // Reported, not a speed target (the target is ±45 ms): the output's frames fall on a
    // 1/30 s grid, so the flash is seen up to 33 ms after it happened.
    eprintln!("lip sync: audio minus video, median {:+.0} ms, worst {:.0} ms over {} flashes", median * 1000.0, worst * 1000.0, offsets.len());
    assert!(median.abs() <= 0.06, "audio and video out of sync: median {:+.0} ms ({offsets:?})", median * 1000.0);
}

#[test]
fn lost_signaling_is_rejoined_and_the_recording_goes_on() {
    use std::io::BufRead;
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let mut worker = start_worker(&j, work.path(), &job(&j, &work.path().join("out"), 5));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = worker.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut ana = publisher(&j, "Ana", "red", "440", "20", &[]);
    let mut log = Vec::new();
    let session = loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("the worker logs its Janus session");
        log.push(line.clone());
        if let Some(id) = line.split("janus_session=").nth(1) {
            break id.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::sleep(Duration::from_secs(4));
    // Destroy the worker's Janus session, as a gateway restart or a session timeout would.
    let o = Command::new("ip")
        .args(["netns", "exec", &j.netns, "curl", "-fsS", "-m", "5", "-d", r#"{"janus": "destroy", "transaction": "t1"}"#])
        .arg(format!("{}/{session}", j.url))
        .output()
        .unwrap();
    assert!(o.status.success(), "destroy: {}", stderr(&o));
    assert!(ana.wait().unwrap().success(), "ana failed");
    let result = finish_worker(worker);
    reader.join().unwrap();
    log.extend(rx.try_iter());
    assert!(log.iter().any(|l| l.contains("rejoined the room")), "{log:?}");
    let warned = result["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("rejoined 1 time"));
    assert!(warned, "{result}");
    // Ana is on screen again after the rejoin, until she leaves (the room then stays empty for
    // the 5 s empty timeout).
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    let late = dur - 5.0 - 1.5;
    assert!(late > 12.0, "duration {dur}");
    assert!(colour_share(&frame(&mp4, late), RED, 60) > 0.3, "Ana visible at {late:.1} s of {dur:.1} s, after the rejoin: {log:#?}");
    let audio = audio_mono_8k(&mp4);
    assert!(tone_amplitude(&audio, 8000.0, 440.0, late - 1.0, late) > 0.02, "Ana audible after the rejoin");
}

#[test]
fn a_real_browser_publisher_is_recorded() {
    const MAGENTA: u32 = 0xff00ff;
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    // Chromium's fake capture devices play these: a magenta picture and a 550 Hz tone.
    let (y4m, wav) = (work.path().join("cam.y4m"), work.path().join("mic.wav"));
    let gst = |desc: String| assert!(Command::new("gst-launch-1.0").arg("-q").args(desc.split(' ')).status().unwrap().success(), "{desc}");
    gst(format!("videotestsrc pattern=solid-color foreground-color=0xffff00ff num-buffers=30 ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! y4menc ! filesink location={}", y4m.display()));
    gst(format!("audiotestsrc freq=550 volume=0.4 num-buffers=100 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! wavenc ! filesink location={}", wav.display()));
    let worker = start_worker(&j, work.path(), &job(&j, &work.path().join("out"), 3));
    std::thread::sleep(Duration::from_secs(1));
    let page = format!(
        "file://{}?janus={}&room=1234&display=Eve%20(browser)&duration=8&chat=hello%20from%20chromium",
        repo().join("tests/support/browser-publisher.html").display(),
        j.url
    );
    let mut chromium = Command::new("ip")
        .args(["netns", "exec", &j.netns, "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .args(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--allow-file-access-from-files"])
        .arg(format!("--use-file-for-fake-video-capture={}", y4m.display()))
        .arg(format!("--use-file-for-fake-audio-capture={}", wav.display()))
        .arg(format!("--user-data-dir={}", work.path().join("chromium").display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(&page)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The page leaves 8 s after connecting; the worker stops 3 s after the room is empty.
    let result = finish_worker(worker);
    let _ = chromium.kill();
    let console = String::from_utf8_lossy(&chromium.wait_with_output().unwrap().stderr).into_owned();
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("veil-browser")).collect();
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    let seen: Vec<f64> = (1..).map(|i| i as f64 * 0.5).take_while(|&t| t < dur - 0.3).filter(|&t| colour_share(&frame(&mp4, t), MAGENTA, 60) > 0.3).collect();
    assert!(seen.len() >= 10, "the browser's camera on screen for at least 5 s: {seen:?}; console: {lines:#?}");
    let audio = audio_mono_8k(&mp4);
    let mid = seen[seen.len() / 2];
    assert!(tone_amplitude(&audio, 8000.0, 550.0, mid - 0.5, mid + 0.5) > 0.02, "the browser's microphone audible");
    let csv = std::fs::read_to_string(object_path(&result, "chat")).unwrap();
    let line = csv.lines().find(|l| l.contains("hello from chromium")).unwrap_or_else(|| panic!("chat missing: {csv}; console: {lines:#?}"));
    assert!(line.contains(",Eve (browser),"), "{line}");
}

#[test]
fn the_speaker_layout_follows_who_talks() {
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let mut job = job(&j, &work.path().join("out"), 3);
    job["layout"] = "speaker".into();
    let worker = start_worker(&j, work.path(), &job);
    std::thread::sleep(Duration::from_secs(1));
    // Ana talks for her first 5 s, then is silent; Bob is silent for his first 5 s, then talks.
    let mut ana = publisher_with(&j, &["--display", "Ana", "--pattern", "red", "--freq", "440", "--duration", "13", "--mute-audio", "5:13"]);
    std::thread::sleep(Duration::from_secs(1));
    let mut bob = publisher_with(&j, &["--display", "Bob", "--pattern", "green", "--freq", "660", "--duration", "12", "--mute-audio", "0:5"]);
    assert!(ana.wait().unwrap().success() && bob.wait().unwrap().success(), "a publisher failed");
    let result = finish_worker(worker);
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    let shares: Vec<(f64, f64, f64)> = (1..)
        .map(|i| i as f64 * 0.5)
        .take_while(|&t| t < dur - 0.3)
        .map(|t| {
            let f = frame(&mp4, t);
            (t, colour_share(&f, RED, 60), colour_share(&f, GREEN, 60))
        })
        .collect();
    let focus = |big: fn(&(f64, f64, f64)) -> (f64, f64)| shares.iter().find(|s| { let (b, small) = big(s); b > 0.4 && small > 0.005 && small < 0.15 }).map(|s| s.0);
    let ana_first = focus(|s| (s.1, s.2)).unwrap_or_else(|| panic!("Ana large with Bob in the strip: {shares:?}"));
    let bob_later = shares
        .iter()
        .find(|s| s.0 > ana_first && s.2 > 0.4 && s.1 > 0.005 && s.1 < 0.15)
        .unwrap_or_else(|| panic!("then Bob large with Ana in the strip: {shares:?}"));
    assert!(bob_later.0 - ana_first >= 2.0, "the focus moved when Bob started talking: {shares:?}");
}

#[test]
fn a_publisher_who_reconnects_keeps_one_tile() {
    let j = janus::Janus::start();
    let work = tempfile::tempdir().unwrap();
    let mut job = job(&j, &work.path().join("out"), 3);
    job["layout"] = "grid".into();
    let worker = start_worker(&j, work.path(), &job);
    std::thread::sleep(Duration::from_secs(1));
    // Ana's first connection dies without leaving (killed); she comes back a second later on a
    // new connection (a new feed for Janus, which still lists the old one for a while).
    let mut first = publisher(&j, "Ana", "red", "440", "30", &[]);
    std::thread::sleep(Duration::from_secs(5));
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait();
    std::thread::sleep(Duration::from_secs(1));
    let mut again = publisher(&j, "Ana", "red", "440", "6", &[]);
    assert!(again.wait().unwrap().success(), "the reconnected publisher failed");
    let result = finish_worker(worker);
    let mp4 = object_path(&result, "composite");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    let red: Vec<(f64, f64)> = (1..).map(|i| i as f64 * 0.5).take_while(|&t| t < dur - 0.3).map(|t| (t, colour_share(&frame(&mp4, t), RED, 60))).collect();
    // Before and after the reconnection Ana fills the frame alone: her tile was taken over,
    // not joined by a second one (which would halve it).
    let full: Vec<f64> = red.iter().filter(|(_, r)| *r > 0.8).map(|(t, _)| *t).collect();
    assert!(full.first().is_some_and(|&t| t < 4.0), "Ana alone before: {red:?}");
    let gap_end = full.windows(2).find(|w| w[1] - w[0] > 1.0).map(|w| w[1]);
    let after = gap_end.unwrap_or_else(|| panic!("a gap while she was away: {red:?}"));
    assert!(full.iter().filter(|&&t| t >= after).count() >= 6, "Ana alone and large for 3 s after reconnecting: {red:?}");
    assert!(red.iter().all(|(_, r)| *r < 0.05 || *r > 0.8), "never two half-size tiles: {red:?}");
}
