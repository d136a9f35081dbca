//! Streaming uploads to real S3 servers with write-only credentials: Garage (checksums,
//! 403 on reads) and moto (IAM policy enforced), started on loopback by the repo's scripts.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use servers::*;

fn reprocess_s3(access: &S3Access, dest: &str, spill: &Path, extra: &[&str]) -> Command {
    let mut c = veil();
    c.arg("reprocess").arg(session()).arg("--dest").arg(dest).arg("--spill-dir").arg(spill).args(extra);
    access.apply(&mut c);
    c
}

fn object<'a>(result: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} object in {result}"))
}

/// Checks what landed: same bytes as the result says, a playable 12 s MP4, and the CSV.
fn check_landed(access: &S3Access, bucket: &str, result: &serde_json::Value) {
    let video = object(result, "composite");
    let key = video["key"].as_str().unwrap();
    let bytes = access.get(bucket, key);
    assert_eq!(bytes.len() as u64, video["size"].as_u64().unwrap());
    assert_eq!(sha256_hex(&bytes), video["sha256"].as_str().unwrap());
    let (_d, mp4) = write_temp(&bytes, "landed.mp4");
    let v = probe_stream(&mp4, "v:0");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["width"], "1280");
    let chat = object(result, "chat");
    let csv = access.get(bucket, chat["key"].as_str().unwrap());
    assert!(String::from_utf8(csv).unwrap().starts_with("SenderPeerID,"), "chat CSV header");
}

#[test]
fn garage_streams_parts_with_checksums_and_wipes_the_spill() {
    let g = Garage::start();
    let spill = tempfile::tempdir().unwrap();
    let (_prof, profile) = big_profile();
    let dest = format!("s3://{}/tenant-a/", g.bucket);
    let mut child = reprocess_s3(&g.writer, &dest, spill.path(), &["--profile", profile.to_str().unwrap(), "--part-size-mib", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Watch the spill while it runs: it holds only ciphertext, and never the whole recording
    // (confirmed parts are wiped as the upload proceeds).
    let mut max_total = 0u64;
    let mut seen_files = std::collections::HashSet::new();
    let end = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "veil did not finish");
        let mut total = 0;
        for p in spill_files(spill.path()) {
            if let Ok(b) = std::fs::read(&p) {
                // A segment being shredded is overwritten with zeros before it goes.
                if !b.is_empty() && !b.starts_with(&[0u8; 8]) {
                    assert!(b.starts_with(b"VEILSPIL"), "spill file without the spill header");
                    assert_eq!(mp4_structure(&b), None, "plaintext MP4 structure in the spill");
                }
                total += b.len() as u64;
                seen_files.insert(p);
            }
        }
        max_total = max_total.max(total);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let result = result_json(&out);
    let video = object(&result, "composite");
    let size = video["size"].as_u64().unwrap();
    assert!(size > 11 << 20, "the test profile should make at least three 5 MiB parts, got {size} bytes");
    assert!(video["key"].as_str().unwrap().starts_with("tenant-a/composite/"), "{video}");
    assert_eq!(video["url"].as_str().unwrap(), format!("s3://{}/{}", g.bucket, video["key"].as_str().unwrap()));
    assert_eq!(video["confirmed_by"], "s3 composite sha256 and part count", "Garage returns the composite checksum");
    assert!(seen_files.len() >= 3, "one spill segment per part: saw {}", seen_files.len());
    assert!(max_total < size, "the spill never held the whole recording ({max_total} of {size} bytes at most)");
    // Streaming: parts went out while the muxer was still running; at its end of stream only
    // the part being written (and at most the one before it, in flight) was left to send.
    let st = &video["streaming"];
    let (parts, before) = (st["parts"].as_u64().unwrap(), st["parts_uploaded_before_end"].as_u64().unwrap());
    assert!(parts >= 3 && before >= 1 && parts - before <= 2, "streamed: {st}");
    eprintln!("end of stream to confirmed object: {} ms ({before} of {parts} parts uploaded before the end)", st["end_to_confirmed_ms"]);
    assert!(spill_files(spill.path()).is_empty(), "spill not wiped");
    check_landed(&g.reader, &g.bucket, &result);
    assert_eq!(g.reader.open_uploads(&g.bucket, "tenant-a/"), 0);
}

#[test]
fn garage_outage_the_recording_goes_on_and_catches_up() {
    let mut g = Garage::start();
    g.stop();
    let spill = tempfile::tempdir().unwrap();
    let dest = format!("s3://{}", g.bucket);
    let mut child = reprocess_s3(&g.writer, &dest, spill.path(), &["--upload-retention-s", "120"])
        .env("VEIL_LOG", "veil=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the destination is down the spill grows (ciphertext only).
    let t = Instant::now();
    let mut grew = 0u64;
    while t.elapsed() < Duration::from_secs(3) && child.try_wait().unwrap().is_none() {
        grew = grew.max(spill_files(spill.path()).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(grew > 0, "the recording went on into the spill while the destination was down");
    g.restart();
    let out = wait(child, Duration::from_secs(240));
    let result = result_json(&out);
    assert!(stderr(&out).contains("retrying"), "the outage was retried: {}", stderr(&out));
    check_landed(&g.reader, &g.bucket, &result);
    assert!(spill_files(spill.path()).is_empty());
}

fn wait(mut child: std::process::Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("veil did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn garage_permanent_errors_fail_fast_and_name_the_fault() {
    let g = Garage::start();
    let cases: [(S3Access, String, &str, &str); 3] = [
        (
            S3Access { secret: "0".repeat(64), ..g.writer.clone() },
            format!("s3://{}", g.bucket),
            "destination_credentials_invalid",
            "access key or secret was refused",
        ),
        (g.nobody.clone(), format!("s3://{}/p", g.bucket), "destination_permission_denied", "the credentials need s3:PutObject on"),
        (g.writer.clone(), "s3://no-such-bucket".to_string(), "destination_", "no-such-bucket"),
    ];
    for (access, dest, _kind, says) in cases {
        let spill = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let out = reprocess_s3(&access, &dest, spill.path(), &[]).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(says), "{dest}: {err}");
        assert!(err.contains(dest.split('/').take(3).collect::<Vec<_>>().join("/").as_str()), "names the destination: {err}");
        assert!(!err.contains(&access.secret), "secret leaked: {err}");
        assert!(t.elapsed() < Duration::from_secs(60), "failed fast: {:?}", t.elapsed());
    }
}

#[test]
fn garage_cancel_aborts_the_upload_and_shreds_the_spill() {
    let g = Garage::start();
    let spill = tempfile::tempdir().unwrap();
    let (_prof, profile) = big_profile();
    let dest = format!("s3://{}/cancel", g.bucket);
    let child = reprocess_s3(&g.writer, &dest, spill.path(), &["--profile", profile.to_str().unwrap(), "--part-size-mib", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Cancel once the first part has been sent (a segment was wiped) or after 4 s.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) && spill_files(spill.path()).iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum::<u64>() < (6 << 20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    assert!(spill_files(spill.path()).is_empty(), "spill shredded");
    assert!(g.reader.list(&g.bucket, "cancel/").is_empty(), "no object");
    assert_eq!(g.reader.open_uploads(&g.bucket, "cancel/"), 0, "multipart upload aborted");
}

#[test]
fn verify_bucket_tells_write_only_from_readable_credentials() {
    let g = Garage::start();
    let verify = |access: &S3Access, hipaa: bool| {
        let mut c = veil();
        c.args(["verify-bucket", &format!("s3://{}/probe", g.bucket), "--json"]);
        if hipaa {
            c.arg("--hipaa");
        }
        access.apply(&mut c);
        c.output().unwrap()
    };
    let out = verify(&g.writer, true);
    let v = result_json(&out);
    let allowed: Vec<(String, bool)> = v["checks"].as_array().unwrap().iter().map(|c| (c["operation"].as_str().unwrap().to_owned(), c["allowed"].as_bool().unwrap())).collect();
    assert_eq!(allowed, [("write".into(), true), ("read".into(), false), ("head".into(), false), ("list".into(), false)]);
    assert_eq!(v["write_only"], true);

    let out = verify(&g.reader, true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hipaa enabled: the credentials for s3://"), "{}", stderr(&out));
    assert!(stderr(&out).contains("can read, head, list objects"), "{}", stderr(&out));
    let out = verify(&g.reader, false);
    assert!(out.status.success());
    assert_eq!(result_json(&out)["write_only"], false);
}

#[test]
fn moto_with_iam_put_only_policy() {
    let m = Moto::start();
    let spill = tempfile::tempdir().unwrap();
    let out = reprocess_s3(&m.writer, &format!("s3://{}/m", m.bucket), spill.path(), &[]).output().unwrap();
    let result = result_json(&out);
    check_landed(&m.reader, &m.bucket, &result);
    assert!(spill_files(spill.path()).is_empty());

    let mut c = veil();
    c.args(["verify-bucket", &format!("s3://{}/m", m.bucket), "--json", "--hipaa"]);
    m.writer.apply(&mut c);
    let v = result_json(&c.output().unwrap());
    assert_eq!(v["write_only"], true, "{v}");
}
