//! The live path fed by the `files` source: the demo session folder played in real time
//! (`{"type": "files", "live": true}`) through the same live loop and compositor a Janus room
//! goes through. What it shows and plays must match the manifest, as re-compositing does.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_session_folder_replayed_live_shows_who_is_there_when() {
    let work = tempfile::tempdir().unwrap();
    let job = serde_json::json!({
        "id": "replay-1",
        "session": {"type": "files", "dir": session(), "live": true},
        "destination": {"url": format!("file://{}", work.path().join("out").display())},
        "limits": {"max_duration_s": 60, "empty_timeout_s": 30}
    });
    let job_path = work.path().join("job.json");
    std::fs::write(&job_path, serde_json::to_vec(&job).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .arg("record")
        .arg(&job_path)
        .arg("--spill-dir")
        .arg(work.path().join("spill"))
        .arg("--outbox-dir")
        .arg(work.path().join("outbox"))
        .output()
        .unwrap();
    let result = result_json(&out);
    assert_eq!(result["warnings"][0], "recording ended: the replayed session ended", "{result}");
    let dur = result["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!((11.5..13.5).contains(&dur), "about the session's 12 s: {dur}");
    let mp4 = object_path(&result, "composite");
    // (colour, share threshold) present / absent at chosen instants, mid-way between changes.
    const RED: u32 = 0xff0000;
    const GREEN: u32 = 0x00ff00;
    const BLUE: u32 = 0x0000ff;
    const YELLOW: u32 = 0xffff00;
    let at = |t: f64| {
        let f = frame(&mp4, t);
        [RED, GREEN, BLUE, YELLOW].map(|c| colour_share(&f, c, 60))
    };
    let [r, g, b, y] = at(1.5);
    assert!(r > 0.05 && g < 0.01 && b < 0.01 && y < 0.01, "1.5 s: Ana only ({r} {g} {b} {y})");
    let [r, g, b, y] = at(4.0);
    assert!(r > 0.05 && g > 0.05 && b > 0.05 && y < 0.01, "4 s: Ana, Bob, Dan ({r} {g} {b} {y})");
    let [r, g, b, y] = at(7.0);
    assert!(y > 0.3 && r > 0.005 && r < 0.1 && g < 0.1 && b < 0.1, "7 s: Ana's screen large, cameras in the strip ({r} {g} {b} {y})");
    let [r, g, b, y] = at(10.5);
    assert!(r > 0.15 && g < 0.01 && b < 0.01 && y < 0.01, "10.5 s: Ana (and Chloe's name tile) again ({r} {g} {b} {y})");
    // Who is audible when.
    let audio = audio_mono_8k(&mp4);
    for (freq, from, to, on) in [(880.0, 3.0, 8.0, true), (880.0, 10.0, 11.5, false), (1320.0, 2.0, 10.0, true), (660.0, 4.0, 8.0, true), (660.0, 10.0, 11.5, false)] {
        let a = tone_amplitude(&audio, 8000.0, freq, from, to);
        assert!(if on { a > 0.02 } else { a < 0.01 }, "{freq} Hz from {from} to {to} s: {a}");
    }
    // The chat: public messages with their senders; the direct one left out.
    let csv = std::fs::read_to_string(object_path(&result, "chat")).unwrap();
    assert_eq!(csv.matches(",chat,").count(), 3, "three public messages: {csv}");
    assert!(csv.contains("Dr. Ana Müller") && csv.contains("Merci! 日本語も大丈夫") && !csv.contains("private note"), "{csv}");
}
