//! Helpers for end-to-end tests: fixture generation, running the `veil` binary, and
//! measuring the output with ffprobe/ffmpeg.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn veil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_veil"))
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The generated demo session, made once per test binary (kept under target/).
pub fn session() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("veil-fixture-").tempdir().unwrap().keep();
        gen_session(&dir);
        dir
    })
}

pub fn gen_session(dir: &Path) {
    let st = Command::new("bash").arg(repo().join("fixtures/gen-session.sh")).arg(dir).output().unwrap();
    assert!(st.status.success(), "fixture generation failed: {}", String::from_utf8_lossy(&st.stderr));
}

/// A private copy of the generated session that a test may modify.
pub fn session_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let st = Command::new("cp").arg("-r").arg(format!("{}/.", session().display())).arg(d.path()).status().unwrap();
    assert!(st.success());
    d
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `veil reprocess` into fresh destination and spill folders.
pub struct Run {
    pub out: Output,
    pub dest: tempfile::TempDir,
    pub spill: tempfile::TempDir,
}

/// `veil reprocess SESSION --dest file://DEST --spill-dir SPILL`, ready for more arguments.
pub fn reprocess_cmd(session: &Path, dest: &Path, spill: &Path) -> Command {
    let mut c = veil();
    c.arg("reprocess").arg(session).arg("--dest").arg(format!("file://{}", dest.display())).arg("--spill-dir").arg(spill);
    c
}

pub fn reprocess(session: &Path, extra: &[&str]) -> Run {
    let dest = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let out = reprocess_cmd(session, dest.path(), spill.path()).args(extra).output().unwrap();
    Run { out, dest, spill }
}

pub fn result_json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "veil failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("result is not JSON ({e}): {}", stdout(o)))
}

/// One video frame at `t` seconds, scaled to 320x180, as RGB24.
pub fn frame(mp4: &Path, t: f64) -> Vec<u8> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{t:.3}"), "-i"])
        .arg(mp4)
        .args(["-frames:v", "1", "-vf", "scale=320:180", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", stderr(&o));
    assert_eq!(o.stdout.len(), 320 * 180 * 3, "frame at {t}");
    o.stdout
}

/// Share of pixels within `tol` of `rgb` per channel.
pub fn colour_share(frame: &[u8], rgb: u32, tol: i32) -> f64 {
    let (r, g, b) = (((rgb >> 16) & 255) as i32, ((rgb >> 8) & 255) as i32, (rgb & 255) as i32);
    let n = frame.len() / 3;
    let hits = frame
        .chunks_exact(3)
        .filter(|p| (p[0] as i32 - r).abs() <= tol && (p[1] as i32 - g).abs() <= tol && (p[2] as i32 - b).abs() <= tol)
        .count();
    hits as f64 / n as f64
}

/// The whole audio track, mixed to mono at 8 kHz.
pub fn audio_mono_8k(mp4: &Path) -> Vec<f32> {
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(mp4)
        .args(["-vn", "-ac", "1", "-ar", "8000", "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg: {}", stderr(&o));
    o.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Peak absolute sample of the decoded audio at its own rate and channels.
pub fn audio_peak(mp4: &Path) -> f32 {
    let o = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(mp4).args(["-vn", "-f", "f32le", "-"]).output().unwrap();
    assert!(o.status.success(), "ffmpeg: {}", stderr(&o));
    o.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).abs()).fold(0.0, f32::max)
}

/// Amplitude of the `freq` component in samples [from, to) seconds (Goertzel).
pub fn tone_amplitude(samples: &[f32], rate: f64, freq: f64, from: f64, to: f64) -> f64 {
    let a = ((from * rate) as usize).min(samples.len());
    let b = ((to * rate) as usize).min(samples.len());
    let n = (b - a) as f64;
    if n < 1.0 {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in &samples[a..b] {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n
}

/// `ffprobe` entries as key=value pairs for one stream kind ("v" or "a").
pub fn probe_stream(mp4: &Path, kind: &str) -> std::collections::HashMap<String, String> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", kind, "-show_entries"])
        .arg("stream=codec_name,width,height,r_frame_rate,sample_rate,channels,nb_read_packets,duration")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(mp4)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffprobe: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

pub fn object_path(result: &serde_json::Value, kind: &str) -> PathBuf {
    let o = result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} object"));
    PathBuf::from(o["url"].as_str().unwrap().strip_prefix("file://").unwrap())
}

/// Where `bytes` hold plaintext fragmented-MP4 structure: a `moof` with its `mfhd`, a `moov`
/// with its `mvhd`, or an `ftyp` with an ISO brand. (A bare four-letter box name is no proof:
/// random ciphertext holds one by chance about once per 1.4 GB.)
pub fn mp4_structure(bytes: &[u8]) -> Option<&'static str> {
    let at = |i: usize, s: &[u8]| bytes.get(i..i + s.len()) == Some(s);
    (0..bytes.len()).find_map(|i| {
        if at(i, b"moof") && at(i + 4, b"\0\0\0\x10mfhd") {
            Some("moof")
        } else if at(i, b"moov") && at(i + 8, b"mvhd") {
            Some("moov")
        } else if at(i, b"ftyp") && [&b"iso"[..], b"mp4", b"dash", b"avc1"].iter().any(|b| at(i + 4, b)) {
            Some("ftyp")
        } else {
            None
        }
    })
}
