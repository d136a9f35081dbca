//! Streaming uploads to GCS through the official client library, against
//! gcp-storage-emulator started on its own loopback address.

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::*;
use servers::*;

fn object<'a>(result: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} object in {result}"))
}

#[test]
fn gcs_resumable_upload_is_checked_and_only_writes() {
    let gcs = GcsEmulator::start();
    let spill = tempfile::tempdir().unwrap();
    let (_p, profile) = big_profile();
    let out = veil()
        .arg("reprocess")
        .arg(session())
        .args(["--dest", "gs://rec/tenant-c", "--part-size-mib", "2", "--profile", profile.to_str().unwrap()])
        .arg("--spill-dir")
        .arg(spill.path())
        .env("STORAGE_EMULATOR_HOST", gcs.endpoint())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .unwrap();
    let result = result_json(&out);
    let video = object(&result, "composite");
    assert_eq!(video["confirmed_by"], "gcs object size, crc32c and md5");
    assert!(video["size"].as_u64().unwrap() > 8 << 20);
    assert!(spill_files(spill.path()).is_empty(), "spill wiped once the object was confirmed");
    // Only writes reached the service: the resumable session's POST and its PUTs.
    let reqs = gcs.requests();
    assert!(reqs.iter().filter(|r| r.starts_with("\"PUT ")).count() >= 2, "the video went up in several chunks: {reqs:?}");
    for r in &reqs {
        assert!(r.starts_with("\"POST /upload/") || r.starts_with("\"PUT /upload/"), "a non-write request: {r}");
    }
    let bytes = gcs.get(video["key"].as_str().unwrap());
    assert_eq!(sha256_hex(&bytes), video["sha256"].as_str().unwrap());
    let (_d, mp4) = write_temp(&bytes, "landed.mp4");
    assert_eq!(probe_stream(&mp4, "v:0")["codec_name"], "h264");
    assert!(gcs.get(object(&result, "chat")["key"].as_str().unwrap()).starts_with(b"SenderPeerID,"));
}

#[test]
fn gcs_missing_bucket_is_the_customers_fault() {
    let gcs = GcsEmulator::start();
    let spill = tempfile::tempdir().unwrap();
    let out = veil()
        .arg("reprocess")
        .arg(session())
        .args(["--dest", "gs://no-such-bucket/x"])
        .arg("--spill-dir")
        .arg(spill.path())
        .env("STORAGE_EMULATOR_HOST", gcs.endpoint())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("gs://no-such-bucket/x"), "{err}");
    assert!(err.contains("bucket `no-such-bucket` does not exist"), "{err}");
}

#[test]
fn gcs_verify_bucket_reports_what_the_emulator_allows() {
    // The emulator checks no credentials: everything is allowed, which --hipaa must refuse.
    let gcs = GcsEmulator::start();
    let run = |hipaa: bool| {
        let mut c = veil();
        c.args(["verify-bucket", "gs://rec/probe", "--json"]).env("STORAGE_EMULATOR_HOST", gcs.endpoint());
        if hipaa {
            c.arg("--hipaa");
        }
        c.output().unwrap()
    };
    let v = result_json(&run(false));
    let allowed: Vec<bool> = v["checks"].as_array().unwrap().iter().map(|c| c["allowed"].as_bool().unwrap()).collect();
    assert_eq!(allowed, [true, true, true, true], "{v}");
    assert_eq!(v["write_only"], false);
    let out = run(true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("hipaa enabled: the credentials for gs://rec/probe can read, head, list objects"), "{}", stderr(&out));
}

#[test]
fn gcs_cancel_leaves_no_object_and_no_spill() {
    let gcs = GcsEmulator::start();
    let spill = tempfile::tempdir().unwrap();
    let (_p, profile) = big_profile();
    let child = veil()
        .arg("reprocess")
        .arg(session())
        .args(["--dest", "gs://rec/cancel", "--part-size-mib", "1", "--profile", profile.to_str().unwrap()])
        .arg("--spill-dir")
        .arg(spill.path())
        .env("STORAGE_EMULATOR_HOST", gcs.endpoint())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cancel once a few parts are on their way (they stay in the spill until the object is
    // confirmed) or after 4 s.
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(4) && spill_files(spill.path()).len() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(spill_files(spill.path()).is_empty(), "spill shredded");
    let url = format!("{}/storage/v1/b/rec/o?prefix=cancel/", gcs.endpoint());
    let listing = ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(!listing.contains("cancel/composite"), "no object was finalized: {listing}");
}
