//! `veil record JOB.json`: job documents with credentials as fields, the HIPAA workspace flag,
//! the worker-wide forced HIPAA mode, and errors that name the field.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::process::{Command, Output};

use common::*;
use servers::*;

/// `veil record` with no AWS/GCS variables in the environment: the job must carry them.
fn record(job: &serde_json::Value, extra_env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.json");
    std::fs::write(&path, serde_json::to_vec_pretty(job).unwrap()).unwrap();
    let spill = dir.path().join("spill");
    let mut c: Command = veil();
    c.arg("record").arg(&path).arg("--spill-dir").arg(&spill).arg("--outbox-dir").arg(dir.path().join("outbox"));
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "VEIL_FORCE_HIPAA"] {
        c.env_remove(k);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    (c.output().unwrap(), dir)
}

fn files_job(dest: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": "job-7",
        "session": {"type": "files", "dir": session()},
        "layout": "grid",
        "chat": {"record": true, "include_direct": false},
        "destination": dest,
        "workspace": {"hipaa": true},
        "upload": {"part_size_mib": 5}
    })
}

#[test]
fn job_with_s3_credentials_as_fields_records_into_the_bucket() {
    let g = Garage::start();
    let job = files_job(serde_json::json!({
        "url": format!("s3://{}/jobs", g.bucket),
        "s3": {"region": g.writer.region, "endpoint": g.writer.endpoint, "access_key_id": g.writer.key_id, "secret_access_key": g.writer.secret}
    }));
    let (out, dir) = record(&job, &[]);
    let result = result_json(&out);
    let video = result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "composite").unwrap();
    assert!(video["key"].as_str().unwrap().starts_with("jobs/composite/room-42/"));
    let bytes = g.reader.get(&g.bucket, video["key"].as_str().unwrap());
    assert_eq!(sha256_hex(&bytes), video["sha256"].as_str().unwrap());
    assert!(spill_files(&dir.path().join("spill")).is_empty());
    assert!(!stdout(&out).contains(&g.writer.secret) && !stderr(&out).contains(&g.writer.secret));
}

#[test]
fn job_with_gcs_endpoint_as_a_field() {
    let gcs = GcsEmulator::start();
    let job = files_job(serde_json::json!({"url": "gs://rec/j", "gcs": {"endpoint": gcs.endpoint()}}));
    let (out, _dir) = record(&job, &[]);
    let result = result_json(&out);
    assert_eq!(result["objects"][0]["confirmed_by"], "gcs object size, crc32c and md5");
}

#[test]
fn hipaa_jobs_are_refused_with_the_exact_messages() {
    let base = || files_job(serde_json::json!({"url": "s3://b/p", "s3": {"access_key_id": "A", "secret_access_key": "SECRETVALUE"}}));
    // No destination at all.
    let mut j = base();
    j.as_object_mut().unwrap().remove("destination");
    let (out, _d) = record(&j, &[]);
    assert!(stderr(&out).contains("hipaa enabled: recording config is not provided"), "{}", stderr(&out));
    // A local folder.
    let mut j = base();
    j["destination"] = serde_json::json!({"url": "file:///tmp/x"});
    let (out, _d) = record(&j, &[]);
    assert!(stderr(&out).contains("hipaa enabled: local folder destinations (file://) are not allowed"), "{}", stderr(&out));
    // A plain-http webhook.
    let mut j = base();
    j["webhook"] = serde_json::json!({"url": "http://hooks.example/x", "secret": "s"});
    let (out, _d) = record(&j, &[]);
    assert!(stderr(&out).contains("hipaa enabled: the webhook url must use https://"), "{}", stderr(&out));
    // An output HIPAA workspaces disable.
    let mut j = base();
    j["outputs"] = serde_json::json!(["composite", "hls"]);
    let (out, _d) = record(&j, &[]);
    assert!(stderr(&out).contains("hipaa enabled: the `hls` output is disabled in HIPAA workspaces"), "{}", stderr(&out));
    // Outside HIPAA the same output is refused as unsupported.
    j["workspace"]["hipaa"] = false.into();
    let (out, _d) = record(&j, &[]);
    assert!(stderr(&out).contains("`outputs`: `hls` is not an output this version makes"), "{}", stderr(&out));
    // The worker-wide switch wins over a job that says hipaa: false.
    let mut j = base();
    j["workspace"]["hipaa"] = false.into();
    j["destination"] = serde_json::json!({"url": "file:///tmp/x"});
    let (out, _d) = record(&j, &[("VEIL_FORCE_HIPAA", "1")]);
    assert!(stderr(&out).contains("hipaa enabled: local folder destinations (file://) are not allowed"), "{}", stderr(&out));
    let (out, _d) = veil_reprocess_forced();
    assert!(stderr(&out).contains("hipaa enabled: local folder destinations (file://) are not allowed"), "{}", stderr(&out));
}

fn veil_reprocess_forced() -> (Output, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let out = reprocess_cmd(session(), d.path(), &d.path().join("spill")).env("VEIL_FORCE_HIPAA", "true").output().unwrap();
    (out, d)
}

#[test]
fn job_errors_name_the_field_and_never_the_value() {
    let mut j = files_job(serde_json::json!({"url": "s3://b/p", "s3": {"access_key_id": "A", "secret_acess_key": "SECRETVALUE"}}));
    let (out, _d) = record(&j, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("`destination.s3.secret_acess_key`: unknown field"), "{err}");
    assert!(!err.contains("SECRETVALUE"), "{err}");
    j["destination"] = serde_json::json!({"url": "s3://b/p", "s3": {"access_key_id": "A", "secret_access_key": 4242424242u64}});
    let (out, _d) = record(&j, &[]);
    let err = stderr(&out);
    assert!(err.contains("`destination.s3.secret_access_key`: invalid type (integer), expected a string"), "{err}");
    assert!(!err.contains("4242424242"), "{err}");
    j["destination"] = serde_json::json!({"url": "https://acct.blob.core.windows.net/rec?sv=1&sp=cw&sig=SASSECRET"});
    j["session"] = serde_json::json!({"type": "janus", "url": "http://127.0.0.1:8088/janus", "room": 1});
    let (out, _d) = record(&j, &[]);
    let err = stderr(&out);
    assert!(err.contains("live session: janus"), "{err}");
    assert!(!err.contains("SASSECRET"), "{err}");
}

#[test]
fn documented_examples_parse() {
    for f in std::fs::read_dir(repo().join("fixtures/jobs")).unwrap() {
        let p = f.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        veil::job::Job::parse(&bytes, &p.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
    }
}
