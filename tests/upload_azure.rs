//! Streaming uploads to Azure Blob (Azurite, started on loopback) with a create+write SAS.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::process::Command;

use common::*;
use servers::*;

fn reprocess_to(dest: &str, spill: &std::path::Path, extra: &[&str]) -> Command {
    let mut c = veil();
    c.arg("reprocess").arg(session()).arg("--dest").arg(dest).arg("--spill-dir").arg(spill).args(extra);
    c
}

fn object<'a>(result: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} object in {result}"))
}

/// The SAS signature (the secret part of the URL).
fn sig(sas: &str) -> String {
    sas.split('&').find_map(|kv| kv.strip_prefix("sig=")).unwrap().to_owned()
}

#[test]
fn azurite_streams_md5_checked_blocks_and_wipes_the_spill() {
    let az = Azurite::start();
    let spill = tempfile::tempdir().unwrap();
    let (_p, profile) = big_profile();
    let out = reprocess_to(&az.dest("tenant-b", &az.writer_sas), spill.path(), &["--profile", profile.to_str().unwrap(), "--part-size-mib", "4"])
        .output()
        .unwrap();
    let result = result_json(&out);
    let video = object(&result, "composite");
    let size = video["size"].as_u64().unwrap();
    // A 256 KiB first block (a refusal shows within seconds), then 4 MiB blocks.
    let blocks = 1 + (size as usize - (256 << 10)).div_ceil(4 << 20);
    assert!(blocks >= 3, "several blocks expected, {size} bytes");
    assert_eq!(video["confirmed_by"], format!("azure block list of {blocks} block(s) committed, each block's MD5 echoed"));
    assert!(!video["url"].as_str().unwrap().contains('?'), "no SAS in the result");
    // Only writes reached the service (looked at before this test reads anything back).
    let reqs = az.requests();
    assert!(reqs.len() > blocks, "{reqs:?}");
    for (method, url) in &reqs {
        assert_eq!(method, "PUT", "a non-write request: {method} {url}");
    }
    let bytes = az.get(video["key"].as_str().unwrap());
    assert_eq!(sha256_hex(&bytes), video["sha256"].as_str().unwrap());
    let (_d, mp4) = write_temp(&bytes, "landed.mp4");
    assert_eq!(probe_stream(&mp4, "v:0")["codec_name"], "h264");
    let csv = az.get(object(&result, "chat")["key"].as_str().unwrap());
    assert!(csv.starts_with(b"SenderPeerID,"));
    assert!(spill_files(spill.path()).is_empty(), "spill wiped");
    let secret = sig(&az.writer_sas);
    assert!(!stdout(&out).contains(&secret) && !stderr(&out).contains(&secret), "SAS leaked");
}

#[test]
fn azurite_refusals_name_the_fault_without_the_sas() {
    let az = Azurite::start();
    let tampered = az.writer_sas.replace("sig=", "sig=AAAA");
    let cases = [
        (az.dest("p", &tampered), "the SAS token was refused", sig(&tampered)),
        (az.dest("p", &az.reader_sas), "the SAS needs create and write (sp=cw)", sig(&az.reader_sas)),
    ];
    for (dest, says, secret) in cases {
        let spill = tempfile::tempdir().unwrap();
        let out = reprocess_to(&dest, spill.path(), &[]).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(err.contains(says), "{err}");
        assert!(err.contains(&format!("{}/{}/p", az.base, az.container)), "names the destination: {err}");
        assert!(!err.contains(&secret), "SAS leaked: {err}");
    }
}

#[test]
fn azurite_verify_bucket_tells_write_only_from_readable_sas() {
    let az = Azurite::start();
    let verify = |sas: &str| veil().args(["verify-bucket", &az.dest("probe", sas), "--json", "--hipaa"]).output().unwrap();
    let v = result_json(&verify(&az.writer_sas));
    assert_eq!(v["write_only"], true, "{v}");
    let out = verify(&az.all_sas);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("can read, head, list objects"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(&sig(&az.all_sas)));
}
