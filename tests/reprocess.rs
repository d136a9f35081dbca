//! End to end: `veil reprocess` on a generated session, checked with ffprobe/ffmpeg, strace
//! and by watching the spill folder while it runs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RED: u32 = 0xff0000;
const GREEN: u32 = 0x00ff00;
const BLUE: u32 = 0x0000ff;
const YELLOW: u32 = 0xffff00;
/// Chloé's placeholder tile (audio-only peer, third peer).
const CHLOE_PLACEHOLDER: u32 = 0x3a5850;
/// Ana's placeholder (first peer), shown when her camera has no video.
const ANA_PLACEHOLDER: u32 = 0x3a3f58;

const CHAT_TEXTS: [&str; 4] = ["Hello everyone", "second line", "private note for Bob", "日本語も大丈夫"];

/// Copies every spill file seen while `child` runs (bounded by `limit`).
fn watch_spill(child: &mut std::process::Child, spill: &Path, limit: Duration) -> HashMap<PathBuf, Vec<u8>> {
    let mut seen: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(entries) = std::fs::read_dir(spill) {
            for e in entries.flatten() {
                if let Ok(bytes) = std::fs::read(e.path()).and_then(|b| if b.is_empty() { Err(std::io::ErrorKind::NotFound.into()) } else { Ok(b) }) {
                    let slot = seen.entry(e.path()).or_default();
                    if bytes.len() > slot.len() {
                        *slot = bytes;
                    }
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let _ = child.kill();
    panic!("veil did not finish within {limit:?}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Paths opened for writing (O_WRONLY/O_RDWR/O_CREAT) according to an strace log.
fn written_paths(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines() {
        if !(line.contains("open") || line.contains("creat(")) {
            continue;
        }
        let Some(q1) = line.find('"') else { continue };
        let Some(len) = line[q1 + 1..].find('"') else { continue };
        let path = &line[q1 + 1..q1 + 1 + len];
        let flags = &line[q1 + 1 + len..];
        if flags.contains("O_WRONLY") || flags.contains("O_RDWR") || flags.contains("O_CREAT") || line.contains("creat(") {
            out.push(path.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn reprocess_demo_session_end_to_end() {
    let session = session();
    assert!(Command::new("strace").arg("-V").stdout(Stdio::null()).status().is_ok(), "strace is required (scripts/install-deps.sh installs it)");
    let dest = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,creat", "-o"])
        .arg(trace.path())
        .arg(env!("CARGO_BIN_EXE_veil"))
        .arg("reprocess")
        .arg(session)
        .arg("--dest")
        .arg(format!("file://{}", dest.path().display()))
        .arg("--spill-dir")
        .arg(spill.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let snapshots = watch_spill(&mut child, spill.path(), Duration::from_secs(600));
    let out = child.wait_with_output().unwrap();
    let result = result_json(&out);

    // --- the spill: ciphertext only, and gone after the confirmed upload -----------------
    // The chat CSV's spill lives only for the moment of its upload and may not be caught
    // here; strace below proves it was written only inside the spill folder.
    assert!(!snapshots.is_empty(), "expected the video spill to be seen");
    let biggest = snapshots.values().map(|b| b.len()).max().unwrap();
    assert!(biggest > 64 * 1024, "video spill grew while recording (largest seen {biggest} bytes)");
    for (path, bytes) in &snapshots {
        // (a segment caught while being shredded is zeros)
        assert!(bytes.starts_with(b"VEILSPIL") || bytes.starts_with(&[0u8; 8]), "{} is a spill", path.display());
        assert_eq!(mp4_structure(bytes), None, "{} holds plaintext MP4", path.display());
        assert!(!contains(bytes, b"SenderPeerID"), "{} holds the plaintext chat CSV", path.display());
        for t in CHAT_TEXTS {
            assert!(!contains(bytes, t.as_bytes()), "{} holds chat text", path.display());
        }
    }
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0, "spill folder is empty after the upload");

    // --- nothing else written: only the destination and the spill folder -----------------
    let log = std::fs::read_to_string(trace.path()).unwrap();
    let dest_s = dest.path().to_string_lossy().into_owned();
    let spill_s = spill.path().to_string_lossy().into_owned();
    for p in written_paths(&log) {
        if p.starts_with(&dest_s) || p.starts_with(&spill_s) || p.starts_with("/dev/") || p.starts_with("/proc/") {
            continue;
        }
        // GStreamer's plugin registry, fontconfig's cache and ORC's JIT code file are the only
        // other writes allowed, and they must not carry media or chat.
        let allowed = p.contains("/gstreamer-1.0/registry.") || p.contains("fontconfig") || p.contains("/orcexec.");
        assert!(allowed, "unexpected file opened for writing: {p}");
        if let Ok(bytes) = std::fs::read(&p) {
            for t in CHAT_TEXTS {
                assert!(!contains(&bytes, t.as_bytes()), "{p} holds chat text");
            }
            assert_eq!(mp4_structure(&bytes), None, "{p} holds MP4 data");
        }
    }

    // --- the result and the objects -------------------------------------------------------
    assert_eq!(result["status"], "success");
    assert_eq!((result["width"].as_i64(), result["height"].as_i64(), result["fps"].as_i64()), (Some(1280), Some(720), Some(30)));
    assert_eq!(result["duration_ms"], 12000);
    assert_eq!(result["warnings"].as_array().unwrap().len(), 0, "{}", result["warnings"]);
    let objects = result["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["key"], "composite/room-42/2026-11-30/Rec-room-42-1796047200.mp4");
    assert_eq!(objects[1]["key"], "chat/room-42/2026-11-30/Rec-room-42-1796047200.csv");
    for o in objects {
        let path = PathBuf::from(o["url"].as_str().unwrap().strip_prefix("file://").unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, o["size"].as_u64().unwrap());
        assert_eq!(veil::privacy::sha256_hex(&bytes), o["sha256"].as_str().unwrap());
    }
    // No temporaries left next to the targets.
    let listing = Command::new("find").arg(dest.path()).arg("-type").arg("f").output().unwrap();
    assert_eq!(stdout(&listing).lines().count(), 2, "{}", stdout(&listing));

    // --- streams, size, duration ---------------------------------------------------------
    let mp4 = object_path(&result, "composite");
    let head = std::fs::read(&mp4).unwrap();
    assert_eq!(&head[4..8], b"ftyp");
    assert!(contains(&head[..4096.min(head.len())], b"mvex"), "fragmented MP4 (mvex in moov)");
    assert!(contains(&head, b"moof"));
    assert_eq!(mp4_structure(&head), Some("ftyp"), "the plaintext detector used on the spill knows a real MP4");
    assert_eq!(mp4_structure(&head[head.len() / 2..]), Some("moof"), "and its fragments");
    let v = probe_stream(&mp4, "v");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!((v["width"].as_str(), v["height"].as_str(), v["r_frame_rate"].as_str()), ("1280", "720", "30/1"));
    let frames: i64 = v["nb_read_packets"].parse().unwrap();
    assert!((frames - 360).abs() <= 1, "12 s at 30 fps is 360 frames ±1, got {frames}");
    let a = probe_stream(&mp4, "a");
    assert_eq!((a["codec_name"].as_str(), a["sample_rate"].as_str(), a["channels"].as_str()), ("aac", "48000", "2"));
    let size = std::fs::metadata(&mp4).unwrap().len();
    assert!((100_000..8_000_000).contains(&size), "size {size}");

    // --- who is visible when ---------------------------------------------------------------
    // (time s, [(colour, expected visible)])
    let checks: &[(f64, &[(u32, bool)])] = &[
        (0.5, &[(RED, true), (GREEN, false), (BLUE, false), (YELLOW, false), (CHLOE_PLACEHOLDER, false)]),
        (1.5, &[(RED, true), (CHLOE_PLACEHOLDER, true), (GREEN, false)]),
        (1.95, &[(GREEN, false)]),
        (2.05, &[(GREEN, true)]),
        (4.0, &[(RED, true), (GREEN, true), (BLUE, true), (CHLOE_PLACEHOLDER, true), (YELLOW, false)]),
        (6.0, &[(YELLOW, true), (RED, true), (GREEN, true), (BLUE, true)]),
        (8.95, &[(GREEN, true), (BLUE, true)]),
        (9.05, &[(GREEN, false), (BLUE, false), (YELLOW, false)]),
        (10.0, &[(RED, true), (CHLOE_PLACEHOLDER, true), (GREEN, false), (BLUE, false)]),
        (11.5, &[(RED, true), (CHLOE_PLACEHOLDER, false), (ANA_PLACEHOLDER, false)]),
    ];
    for (t, expect) in checks {
        let f = frame(&mp4, *t);
        for (colour, visible) in *expect {
            // Placeholders are muted colours: match them tightly so text edges do not count.
            let tol = if [CHLOE_PLACEHOLDER, ANA_PLACEHOLDER].contains(colour) { 10 } else { 30 };
            let share = colour_share(&f, *colour, tol);
            if *visible {
                assert!(share > 0.02, "t={t}: colour {colour:06x} should be visible (share {share:.4})");
            } else {
                assert!(share < 0.002, "t={t}: colour {colour:06x} should be absent (share {share:.4})");
            }
        }
    }
    // The live screen share takes the largest region.
    let f = frame(&mp4, 6.0);
    assert!(colour_share(&f, YELLOW, 30) > 0.35, "screen share is the main region");
    assert!(colour_share(&f, RED, 30) < 0.1);

    // --- who is audible when ---------------------------------------------------------------
    let pcm = audio_mono_8k(&mp4);
    let dur = pcm.len() as f64 / 8000.0;
    assert!((dur - 12.0).abs() < 0.1, "audio lasts the session ({dur:.3} s)");
    let peak = audio_peak(&mp4);
    assert!(peak < 0.99, "no clipping (peak {peak})");
    // (freq, joined, left)
    let tones = [(440.0, 0.0, 12.0), (880.0, 2.0, 9.0), (1320.0, 1.0, 11.0), (660.0, 3.0, 9.0)];
    for (freq, from, to) in tones {
        for t in [0.5, 1.5, 2.5, 3.5, 5.0, 8.5, 9.5, 10.5, 11.5] {
            let amp = tone_amplitude(&pcm, 8000.0, freq, t - 0.2, t + 0.2);
            let present = t > from && t < to;
            if present {
                assert!(amp > 0.08, "{freq} Hz should be audible at {t} s (amplitude {amp:.4})");
            } else {
                assert!(amp < 0.01, "{freq} Hz should be silent at {t} s (amplitude {amp:.4})");
            }
        }
        // Edges within 100 ms of the session time.
        if from > 0.0 {
            assert!(tone_amplitude(&pcm, 8000.0, freq, from - 0.15, from - 0.05) < 0.01, "{freq} Hz before {from}");
            assert!(tone_amplitude(&pcm, 8000.0, freq, from + 0.05, from + 0.15) > 0.08, "{freq} Hz after {from}");
        }
    }

    // --- the chat CSV ----------------------------------------------------------------------
    let csv = std::fs::read_to_string(object_path(&result, "chat")).unwrap();
    let expected = "SenderPeerID,SenderName,SenderUserID,Roles,SentAt,Type,Message\r\n\
        p-ana,Dr. Ana Müller,u-100,host,2026-11-30T14:00:01.500Z,chat,\"Hello everyone 👋, welcome\"\r\n\
        p-bob,\"Bob \"\"Bobby\"\" O'Neil\",u-200,guest;patient,2026-11-30T14:00:02.600Z,chat,\"Hi, doctor — \"\"quoted\"\", with comma\nand a second line\"\r\n\
        p-chloe,Chloé Dupré,u-300,guest,2026-11-30T14:00:06.500Z,chat,Merci! 日本語も大丈夫\r\n";
    assert_eq!(csv, expected);
    assert!(!csv.contains("private note"), "direct messages are left out");

    // --- the result carries no names or chat ----------------------------------------------
    let text = stdout(&out) + &stderr(&out);
    for secret in ["Müller", "Bobby", "Chloé", "Cardiology", "Hello everyone"] {
        assert!(!text.contains(secret), "output mentions `{secret}`");
    }
}

#[test]
fn grid_layout_and_no_chat() {
    let run = reprocess(session(), &["--layout", "grid", "--no-chat"]);
    let result = result_json(&run.out);
    assert_eq!(result["objects"].as_array().unwrap().len(), 1, "no chat CSV with --no-chat");
    let mp4 = object_path(&result, "composite");
    // At 6 s: ana, bob, chloe, dan and the screen share in one grid of equal tiles.
    let f = frame(&mp4, 6.0);
    let yellow = colour_share(&f, YELLOW, 30);
    let red = colour_share(&f, RED, 30);
    assert!(yellow > 0.05 && red > 0.05, "yellow {yellow:.3} red {red:.3}");
    assert!((yellow / red - 1.0).abs() < 0.25, "screen tile is a grid cell like the cameras ({yellow:.3} vs {red:.3})");
    // Without the panel the tiles may use the full width: the right edge shows a tile at 4 s.
    let f = frame(&mp4, 4.0);
    let right: Vec<u8> = f.chunks_exact(320 * 3).flat_map(|row| row[300 * 3..].to_vec()).collect();
    assert!(colour_share(&right, BLUE, 30) + colour_share(&right, GREEN, 30) > 0.05);
    assert_eq!(std::fs::read_dir(run.spill.path()).unwrap().count(), 0);
}

#[test]
fn speaker_layout_follows_the_voice() {
    // Everyone speaks at the same level: the first speaker (ana, red) keeps the focus.
    let run = reprocess(session(), &["--layout", "speaker"]);
    let result = result_json(&run.out);
    let mp4 = object_path(&result, "composite");
    let f = frame(&mp4, 4.5);
    let (red, green, blue) = (colour_share(&f, RED, 30), colour_share(&f, GREEN, 30), colour_share(&f, BLUE, 30));
    assert!(red > 4.0 * green.max(blue), "the first speaker keeps the focus (red {red:.3} green {green:.3} blue {blue:.3})");
}
