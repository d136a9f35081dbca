//! Signed webhooks against a real HTTPS receiver (Python, self-signed CA), the durable outbox,
//! HIPAA refusals, and PHI-free logs and bodies.

mod common;
#[path = "common/servers.rs"]
mod servers;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "whsec-TOPSECRET-4f1c";
const HEADER_SECRET: &str = "tenant-key-91ab";

struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("bash").arg(repo().join("tests/support/make-ca.sh")).arg(dir.path()).status().unwrap();
        assert!(st.success(), "make-ca.sh failed");
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        Self { dir }
    }
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    fn start(tls: &Tls, port: u16, log: &Path, fail_first: u32) -> Self {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/support/webhook_receiver.py"))
            .args(["--port", &port.to_string(), "--fail-first", &fail_first.to_string()])
            .arg("--cert")
            .arg(tls.path("server.pem"))
            .arg("--key")
            .arg(tls.path("server.key"))
            .arg("--secret-file")
            .arg(tls.path("secret"))
            .arg("--log")
            .arg(log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Self { child, log: log.to_owned() }
    }
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhook_args(tls: &Tls, port: u16, outbox: &Path) -> Vec<String> {
    vec![
        "--webhook-url".into(),
        format!("https://127.0.0.1:{port}/hooks/veil"),
        "--webhook-secret-file".into(),
        tls.path("secret").display().to_string(),
        "--webhook-ca".into(),
        tls.path("ca.pem").display().to_string(),
        "--webhook-header".into(),
        format!("X-Tenant-Key: {HEADER_SECRET}"),
        "--outbox-dir".into(),
        outbox.display().to_string(),
        "--webhook-wait-s".into(),
        "60".into(),
    ]
}

fn body(r: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

fn outbox_files(outbox: &Path) -> Vec<PathBuf> {
    let out = Command::new("find").arg(outbox).args(["-type", "f"]).output().unwrap();
    stdout(&out).lines().map(PathBuf::from).collect()
}

const ODD_ROOM: &str = "Zimmer \"7\"\nÖstliche Klinik, 東京";
const ODD_NAMES: [&str; 4] = ["Dr. Ünal \"Doc\" O'Brien\nMD", "Zoë, \"the patient\"", "李小龍", "Robert'); DROP TABLE--"];
const CHAT_SECRET: &str = "chest pain since Tuesday";

/// A session copy with unusual names and chat text.
fn odd_session() -> tempfile::TempDir {
    let d = session_copy();
    let p = d.path().join("session.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["room_name"] = ODD_ROOM.into();
    for (i, n) in ODD_NAMES.iter().enumerate() {
        v["peers"][i]["name"] = (*n).into();
    }
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let chat = format!(
        "{}\n",
        serde_json::json!({"id": "x1", "sent_ms": 3000, "sender_peer_id": "p-bob", "sender_name": ODD_NAMES[1],
            "sender_user_id": "u-200", "roles": ["guest"], "type": "chat", "to": null, "message": CHAT_SECRET})
    );
    std::fs::write(d.path().join("chat.jsonl"), chat).unwrap();
    d
}

fn sha256(s: &str) -> String {
    veil::privacy::sha256_hex(s.as_bytes())
}

/// A full run in HIPAA mode into a write-only S3 bucket (Garage), with unusual names.
#[test]
fn signed_webhooks_and_phi_free_output_in_hipaa_mode() {
    let garage = servers::Garage::start();
    let tls = Tls::new();
    let port = free_port();
    let log = tls.path("requests.jsonl");
    let rx = Receiver::start(&tls, port, &log, 0);
    let outbox = tempfile::tempdir().unwrap();
    let session = odd_session();
    let args = webhook_args(&tls, port, outbox.path());
    let mut all: Vec<&str> = vec!["--log-format", "json", "--hipaa"];
    all.extend(args.iter().map(String::as_str));
    let spill = tempfile::tempdir().unwrap();
    let mut cmd = veil();
    cmd.arg("reprocess").arg(session.path()).arg("--dest").arg(format!("s3://{}/hipaa", garage.bucket)).arg("--spill-dir").arg(spill.path());
    garage.writer.apply(&mut cmd);
    let out = cmd.env("VEIL_LOG", "veil=trace").args(&all).output().unwrap();
    let result = result_json(&out);
    assert!(std::fs::read_dir(spill.path()).unwrap().next().is_none(), "spill wiped");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let events: Vec<serde_json::Value> = reqs.iter().map(body).collect();
    assert_eq!(events.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["recording.started", "recording.success"]);
    for r in &reqs {
        assert_eq!(r["valid"], true, "signature verifies with the plain HMAC recipe");
        assert_eq!(r["headers"]["x-tenant-key"], HEADER_SECRET, "custom header sent");
    }
    assert_ne!(events[0]["id"], events[1]["id"]);
    let success = &events[1];
    assert!(success["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(success["recording_id"], result["recording_id"]);
    assert_eq!(success["session_id"], "sess-0001");
    assert_eq!(success["room_id"], "room-42");
    assert_eq!(success["room_name_sha256"], sha256(ODD_ROOM));
    let names: Vec<&str> = success["participants"].as_array().unwrap().iter().map(|p| p["name_sha256"].as_str().unwrap()).collect();
    for n in ODD_NAMES {
        assert!(names.contains(&sha256(n).as_str()), "hash of a peer name present");
    }
    let composite = result["objects"].as_array().unwrap().iter().find(|o| o["kind"] == "composite").unwrap();
    assert_eq!(success["composite"]["key"], composite["key"]);
    assert_eq!(success["composite"]["sha256"], composite["sha256"]);
    assert_eq!(success["composite"]["size"], composite["size"]);
    assert_eq!((success["width"].as_i64(), success["height"].as_i64(), success["duration_ms"].as_i64()), (Some(1280), Some(720), Some(12000)));
    assert_eq!(success["stopped_at"], "2026-11-30T14:00:12.000Z");
    assert!(success["chat"]["key"].as_str().unwrap().ends_with(".csv"));
    assert_eq!(success["bucket"], garage.bucket);
    assert_eq!(success["destination"], format!("s3://{}/hipaa", garage.bucket));
    // The media is the customer's: the CSV in their bucket carries the names and the text.
    let csv = String::from_utf8(garage.reader.get(&garage.bucket, success["chat"]["key"].as_str().unwrap())).unwrap();
    assert!(csv.contains(CHAT_SECRET), "chat text is in the customer's CSV");
    assert_eq!(result["webhooks"]["delivered"], 2);
    assert!(outbox_files(outbox.path()).is_empty(), "outbox drained");

    // A tampered body with the original signature fails verification at the receiver.
    let tampered = reqs[1]["body"].as_str().unwrap().replace("room-42", "room-43");
    let st = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(tls.path("ca.pem"))
        .args(["-H", &format!("x-veil-signature: {}", reqs[1]["signature"].as_str().unwrap())])
        .args(["-H", "content-type: application/json", "--data-binary", &tampered])
        .arg(format!("https://127.0.0.1:{port}/hooks/veil"))
        .output()
        .unwrap();
    assert_eq!(stdout(&st), "401");
    assert_eq!(rx.requests().last().unwrap()["valid"], false);

    // Logs are JSON lines, and nothing anywhere carries a raw name, chat text or a secret.
    let err = stderr(&out);
    assert!(err.lines().count() >= 2, "trace logs were written");
    for line in err.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
    let mut haystacks = vec![stdout(&out), err];
    haystacks.extend(reqs.iter().map(|r| r["body"].as_str().unwrap().to_owned()));
    let s3_secret = garage.writer.secret.as_str();
    for secret in [SECRET, HEADER_SECRET, CHAT_SECRET, ODD_ROOM, "Zimmer", "Ünal", "Zoë", "李小龍", "DROP TABLE", s3_secret] {
        for h in &haystacks {
            assert!(!h.contains(secret), "`{secret}` leaked");
        }
    }
}

#[test]
fn receiver_down_then_up_gets_every_event_in_order() {
    let tls = Tls::new();
    let port = free_port();
    let log = tls.path("requests.jsonl");
    let outbox = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut args = webhook_args(&tls, port, outbox.path());
    args.extend(["--webhook-max-attempts".into(), "30".into()]);
    let child = reprocess_cmd(session(), dest.path(), spill.path())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Down for the first seconds, then up but failing twice with 503, then fine.
    std::thread::sleep(Duration::from_secs(4));
    let rx = Receiver::start(&tls, port, &log, 2);
    let out = child.wait_with_output().unwrap();
    let result = result_json(&out);
    let reqs = rx.requests();
    let delivered: Vec<serde_json::Value> = reqs.iter().filter(|r| r["status"] == 204).map(body).collect();
    assert_eq!(delivered.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["recording.started", "recording.success"]);
    assert!(reqs.iter().all(|r| r["valid"] == true));
    // Retries carry the same id and the same bytes.
    let first = body(&reqs[0]);
    assert_eq!(first["id"], delivered[0]["id"], "the retried event keeps its id");
    assert_eq!(reqs[0]["body"], reqs.iter().find(|r| r["status"] == 204).unwrap()["body"]);
    assert_eq!(result["webhooks"]["delivered"], 2);
    assert!(outbox_files(outbox.path()).is_empty());
}

#[test]
fn worker_killed_before_delivery_delivers_on_restart() {
    let tls = Tls::new();
    let port = free_port();
    let outbox = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut child = reprocess_cmd(session(), dest.path(), spill.path())
        .args(webhook_args(&tls, port, outbox.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the success event is durably queued, then kill the worker.
    let end = Instant::now() + Duration::from_secs(300);
    let success_id = loop {
        assert!(Instant::now() < end, "no success event queued");
        let found = outbox_files(outbox.path()).into_iter().find_map(|f| {
            let e: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok()?;
            (e["event"] == "recording.success").then(|| e["id"].as_str().unwrap().to_owned())
        });
        if let Some(id) = found {
            break id;
        }
        assert!(child.try_wait().unwrap().is_none(), "veil exited before queuing success");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // The video was confirmed before the event was queued.
    let listing = Command::new("find").arg(dest.path()).args(["-name", "*.mp4"]).output().unwrap();
    assert_eq!(stdout(&listing).lines().count(), 1);

    let log = tls.path("requests.jsonl");
    let rx = Receiver::start(&tls, port, &log, 0);
    let out = veil().arg("webhook-deliver").args(webhook_args(&tls, port, outbox.path())[2..].iter()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let delivered: Vec<serde_json::Value> = rx.requests().iter().filter(|r| r["valid"] == true).map(body).collect();
    let success = delivered.iter().find(|e| e["type"] == "recording.success").expect("success delivered after restart");
    assert_eq!(success["id"], success_id.as_str(), "same id as queued before the kill");
    assert!(outbox_files(outbox.path()).is_empty());
}

#[test]
fn hipaa_refusals_are_exact_and_start_nothing() {
    let spill = tempfile::tempdir().unwrap();
    let never = spill.path().join("never-created");
    let cases: [(&[&str], &str); 4] = [
        (&[], "hipaa enabled: recording config is not provided"),
        (&["--dest", "file:///tmp/veil-x"], "hipaa enabled: local folder destinations (file://) are not allowed; record into the customer's bucket"),
        (&["--dest", "s3://bucket/prefix", "--webhook-url", "http://hooks.example.com/x"], "hipaa enabled: the webhook url must use https://"),
        (&["--dest", "FILE:///tmp/veil-x", "--webhook-url", "https://hooks.example.com/x"], "hipaa enabled: local folder destinations (file://) are not allowed; record into the customer's bucket"),
    ];
    for (args, message) in cases {
        let out = veil().arg("reprocess").arg(session()).arg("--hipaa").arg("--spill-dir").arg(&never).args(args).output().unwrap();
        assert!(!out.status.success());
        assert_eq!(stderr(&out).trim(), format!("error: {message}"), "{args:?}");
        assert!(out.stdout.is_empty());
        assert!(!never.exists(), "nothing started");
    }
}

#[test]
fn failure_event_tells_the_customers_fault() {
    let tls = Tls::new();
    let port = free_port();
    let log = tls.path("requests.jsonl");
    let rx = Receiver::start(&tls, port, &log, 0);
    let outbox = tempfile::tempdir().unwrap();
    let blocker = tempfile::NamedTempFile::new().unwrap(); // a file where a folder should be
    let spill = tempfile::tempdir().unwrap();
    let out = veil()
        .arg("reprocess")
        .arg(session())
        .arg("--dest")
        .arg(format!("file://{}/recordings", blocker.path().display()))
        .arg("--spill-dir")
        .arg(spill.path())
        .args(webhook_args(&tls, port, outbox.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let events: Vec<serde_json::Value> = rx.requests().iter().filter(|r| r["valid"] == true).map(body).collect();
    assert_eq!(events.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["recording.started", "recording.failed"]);
    let err = &events[1]["error"];
    assert_eq!(err["type"], "destination_missing");
    assert_eq!(err["fault"], "customer");
    assert!(err["message"].as_str().unwrap().contains("recordings"), "{err}");
    assert_eq!(events[1]["session_id"], "sess-0001");
    // The recording could not be delivered: its encrypted spill was kept, not deleted.
    assert!(std::fs::read_dir(spill.path()).unwrap().count() >= 1);
}
