//! Bad input gets a clear error naming the file or field, a non-zero exit and no panic.
//! A truncated track ends that peer's video and the recording goes on with a warning.

mod common;

use common::*;

fn edit_manifest(dir: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("session.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Runs reprocess and returns stderr, asserting failure without a panic and an empty spill.
fn fails(dir: &std::path::Path) -> String {
    let run = reprocess(dir, &[]);
    let err = stderr(&run.out);
    assert!(!run.out.status.success(), "should fail; stdout: {}", stdout(&run.out));
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert!(run.out.stdout.is_empty(), "no result on failure");
    assert_eq!(std::fs::read_dir(run.dest.path()).unwrap().count(), 0, "nothing delivered");
    err
}

#[test]
fn missing_session_json() {
    let d = tempfile::tempdir().unwrap();
    let err = fails(d.path());
    assert!(err.contains("session.json") && err.contains("cannot read"), "{err}");
}

#[test]
fn unknown_field_is_named() {
    let d = session_copy();
    edit_manifest(d.path(), |v| v["peers"][1]["nickname"] = "x".into());
    let err = fails(d.path());
    assert!(err.contains("session.json") && err.contains("unknown field `nickname`"), "{err}");
}

#[test]
fn missing_track_file_is_named() {
    let d = session_copy();
    std::fs::remove_file(d.path().join("tracks/bob-camera.mp4")).unwrap();
    let err = fails(d.path());
    assert!(err.contains("tracks/bob-camera.mp4") && err.contains("peers[1].tracks[0].file") && err.contains("does not exist"), "{err}");
}

#[test]
fn undecodable_track_is_named() {
    let d = session_copy();
    std::fs::write(d.path().join("tracks/dan-camera.webm"), vec![0x5au8; 4096]).unwrap();
    let err = fails(d.path());
    assert!(err.contains("dan-camera.webm") && err.contains("peers[3].tracks[0].file") && err.contains("no decodable"), "{err}");
}

#[test]
fn chat_line_that_is_not_json_reports_its_line() {
    let d = session_copy();
    let p = d.path().join("chat.jsonl");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("this is not json, and it is private\n");
    std::fs::write(&p, text).unwrap();
    let err = fails(d.path());
    assert!(err.contains("chat.jsonl") && err.contains("line 5"), "{err}");
    assert!(!err.contains("private"), "the error does not echo chat text: {err}");
}

#[test]
fn bad_fields_are_named() {
    for (field, f) in [
        ("started_at", Box::new(|v: &mut serde_json::Value| v["started_at"] = "yesterday".into()) as Box<dyn Fn(&mut serde_json::Value)>),
        ("room_id", Box::new(|v: &mut serde_json::Value| v["room_id"] = "../../etc".into())),
        ("peers[2].left_ms", Box::new(|v: &mut serde_json::Value| v["peers"][2]["left_ms"] = 10.into())),
        ("peers[0].tracks[1].file", Box::new(|v: &mut serde_json::Value| v["peers"][0]["tracks"][1]["file"] = "../x.webm".into())),
    ] {
        let d = session_copy();
        edit_manifest(d.path(), f);
        let err = fails(d.path());
        assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
    }
}

#[test]
fn unsupported_destination_and_profile() {
    let o = veil().args(["reprocess", "/nonexistent", "--dest", "ftp://x/y"]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("ftp://x/y"), "{}", stderr(&o));
    let o = veil().arg("reprocess").arg(session()).args(["--dest", "file:///tmp/x", "--profile", "nope"]).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("profile `nope`"), "{}", stderr(&o));
}

#[test]
fn truncated_track_ends_the_tile_and_the_recording_goes_on() {
    let d = session_copy();
    let p = d.path().join("tracks/ana-camera.webm");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let run = reprocess(d.path(), &[]);
    let result = result_json(&run.out);
    let warnings = result["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(w.contains("peers[0].tracks[0]") && w.contains("truncated"), "{w}");
    let cut: f64 = w.split("ends at ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(cut > 3.0 && cut < 10.0, "cut at {cut}");
    let mp4 = object_path(&result, "composite");
    let v = probe_stream(&mp4, "v");
    let frames: i64 = v["nb_read_packets"].parse().unwrap();
    assert!((frames - 360).abs() <= 1, "the recording keeps its full length ({frames} frames)");
    // Before the cut her red camera shows; after it her placeholder, never a frozen frame.
    assert!(colour_share(&frame(&mp4, cut - 0.5), 0xff0000, 30) > 0.02);
    let after = frame(&mp4, (cut + 1.0).max(9.5));
    assert!(colour_share(&after, 0xff0000, 30) < 0.002, "no frozen last frame");
    assert!(colour_share(&after, 0x3a3f58, 10) > 0.02, "placeholder with her name instead");
    // Audio of the other peers goes on.
    let pcm = audio_mono_8k(&mp4);
    assert!(tone_amplitude(&pcm, 8000.0, 1320.0, 10.0, 10.4) > 0.08);
}
