//! Signed webhooks with a durable outbox.
//!
//! Every event is first written to the outbox on local disk (fsynced), then delivered by
//! [`deliver`]. A worker restart finds what was pending and delivers it with the same `id`.
//! Events of one recording are delivered in order: only the oldest pending event of a
//! recording is attempted. The body is fixed when the event is created (`id`, `sent_at`), so
//! retries carry byte-identical bodies; the signature is computed at send time.
//!
//! Signature: `x-veil-signature` = lowercase hex HMAC-SHA256 of the raw body with the webhook
//! secret (`hmac.new(secret, body, sha256).hexdigest()`).
//!
//! Outbox layout (bodies hold no names: names appear only as SHA-256):
//! `OUTBOX/pending/{recording}/{seq:06}.json` and `OUTBOX/dead/{recording}-{seq:06}.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::privacy::{hex, mask_url, Redacted};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook outbox {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("webhook outbox {path}: unreadable entry ({message})")]
    Entry { path: PathBuf, message: String },
    #[error("webhook CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("webhook secret file {path}: {message}")]
    Secret { path: PathBuf, message: String },
    #[error("webhook url: {0}")]
    Url(String),
    #[error("webhook header `{0}`: expected `Name: value`")]
    Header(String),
}

/// Delivery settings. Secret and header values never print.
#[derive(Clone)]
pub struct WebhookConfig {
    pub secret: Redacted<Vec<u8>>,
    pub headers: Vec<(String, Redacted<String>)>,
    /// Extra trusted roots (PEM). When given, only these roots are trusted.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"<redacted>")
            .field("headers", &self.headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// Checks that a webhook URL is http(s); the error shows only the masked form.
pub fn validate_url(url: &str) -> Result<(), WebhookError> {
    let lower = url.to_ascii_lowercase();
    let host = mask_url(url);
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || host.ends_with("://") {
        return Err(WebhookError::Url(format!("`{host}` is not an http(s) URL with a host")));
    }
    Ok(())
}

impl WebhookConfig {
    pub fn new(secret: Vec<u8>) -> Self {
        Self {
            secret: Redacted::new(secret),
            headers: Vec::new(),
            ca_pem: None,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }

    /// Reads the secret from a file (trailing newline removed). Refuses an empty secret.
    pub fn read_secret(path: &Path) -> Result<Vec<u8>, WebhookError> {
        let mut s = std::fs::read(path).map_err(|e| WebhookError::Secret { path: path.into(), message: e.to_string() })?;
        while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            s.pop();
        }
        if s.is_empty() {
            return Err(WebhookError::Secret { path: path.into(), message: "empty".into() });
        }
        Ok(s)
    }

    pub fn add_header(&mut self, spec: &str) -> Result<(), WebhookError> {
        let (k, v) = spec.split_once(':').ok_or_else(|| WebhookError::Header(spec.split(':').next().unwrap_or("").into()))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(WebhookError::Header(k.chars().take(40).collect()));
        }
        self.headers.push((k.to_owned(), Redacted::new(v.trim().to_owned())));
        Ok(())
    }

    pub fn read_ca(&mut self, path: &Path) -> Result<(), WebhookError> {
        let pem = std::fs::read(path).map_err(|e| WebhookError::Ca { path: path.into(), message: e.to_string() })?;
        self.set_ca(&pem).map_err(|_| WebhookError::Ca { path: path.into(), message: "no PEM certificate found".into() })
    }

    /// Trusts the certificates in `pem` (and only them).
    pub fn set_ca(&mut self, pem: &[u8]) -> Result<(), WebhookError> {
        let n = ureq::tls::parse_pem(pem).filter(|i| matches!(i, Ok(ureq::tls::PemItem::Certificate(_)))).count();
        if n == 0 {
            return Err(WebhookError::Ca { path: "(inline)".into(), message: "no PEM certificate found".into() });
        }
        self.ca_pem = Some(pem.to_vec());
        Ok(())
    }

    fn agent(&self) -> ureq::Agent {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &self.ca_pem {
            let certs: Vec<_> = ureq::tls::parse_pem(pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .build()
            .new_agent()
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self.backoff_base.saturating_mul(1u32 << attempts.min(16).saturating_sub(1));
        let capped = exp.min(self.backoff_max);
        // Full jitter between 50 % and 100 % of the step.
        let mut r = [0u8; 2];
        let _ = SystemRandom::new().fill(&mut r);
        let frac = 0.5 + (u16::from_le_bytes(r) as f64 / u16::MAX as f64) * 0.5;
        capped.mul_f64(frac)
    }
}

/// `x-veil-signature` for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex(hmac::sign(&key, body).as_ref())
}

/// Random identifier with a prefix: `evt_…`, `rec_…`.
pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("system random generator");
    format!("{prefix}_{}", hex(&b))
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One outbox entry. `body` is the exact bytes that are signed and sent.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    id: String,
    event: String,
    url: String,
    body: String,
    attempts: u32,
    /// Unix ms before which no new attempt is made.
    not_before_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn open(dir: &Path) -> Result<Self, WebhookError> {
        use std::os::unix::fs::DirBuilderExt;
        for sub in ["pending", "dead"] {
            let p = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|source| WebhookError::Io { path: p.clone(), cause: source })?;
        }
        Ok(Self { dir: dir.to_owned() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes an event durably; returns its id. `body` must be a JSON object without `id`,
    /// `type` and `sent_at`, which are added here.
    pub fn enqueue(&self, recording: &str, url: &str, event: &str, mut body: serde_json::Map<String, serde_json::Value>) -> Result<String, WebhookError> {
        let id = random_id("evt");
        let mut full = serde_json::Map::new();
        full.insert("id".into(), id.clone().into());
        full.insert("type".into(), event.into());
        full.insert("sent_at".into(), now_rfc3339().into());
        full.append(&mut body);
        let entry = Entry {
            id: id.clone(),
            event: event.into(),
            url: url.into(),
            body: serde_json::Value::Object(full).to_string(),
            attempts: 0,
            not_before_ms: 0,
        };
        let rdir = self.dir.join("pending").join(recording);
        std::fs::create_dir_all(&rdir).map_err(|source| WebhookError::Io { path: rdir.clone(), cause: source })?;
        let seq = std::fs::read_dir(&rdir)
            .map_err(|source| WebhookError::Io { path: rdir.clone(), cause: source })?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse::<u64>().ok()))
            .max()
            .map_or(0, |m| m + 1);
        write_atomic(&rdir.join(format!("{seq:06}.json")), &entry)?;
        Ok(id)
    }

    /// Pending recordings and the path of each one's oldest event.
    fn heads(&self) -> Result<Vec<PathBuf>, WebhookError> {
        let pending = self.dir.join("pending");
        let mut heads = Vec::new();
        let rd = std::fs::read_dir(&pending).map_err(|source| WebhookError::Io { path: pending.clone(), cause: source })?;
        for r in rd.flatten() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(r.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            match files.first() {
                Some(f) => heads.push(f.clone()),
                None => {
                    let _ = std::fs::remove_dir(r.path());
                }
            }
        }
        heads.sort();
        Ok(heads)
    }

    /// Number of abandoned events of one recording.
    pub fn dead(&self, recording: &str) -> usize {
        let prefix = format!("{recording}-");
        std::fs::read_dir(self.dir.join("dead"))
            .map(|r| r.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).count())
            .unwrap_or(0)
    }

    /// Number of events still pending, for one recording or all.
    pub fn pending(&self, recording: Option<&str>) -> usize {
        let base = self.dir.join("pending");
        let dirs: Vec<PathBuf> = match recording {
            Some(r) => vec![base.join(r)],
            None => std::fs::read_dir(&base).into_iter().flatten().flatten().map(|e| e.path()).collect(),
        };
        dirs.iter().map(|d| std::fs::read_dir(d).map(|r| r.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "json")).count()).unwrap_or(0)).sum()
    }
}

fn write_atomic(path: &Path, entry: &Entry) -> Result<(), WebhookError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| WebhookError::Io { path: path.to_owned(), cause: source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(serde_json::to_string(entry).expect("entry serializes").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// What happened to one attempt.
enum Attempt {
    Delivered,
    Retry(String),
    Final(String),
}

fn attempt(agent: &ureq::Agent, cfg: &WebhookConfig, entry: &Entry) -> Attempt {
    let sig = sign(cfg.secret.expose(), entry.body.as_bytes());
    let mut req = agent
        .post(&entry.url)
        .header("content-type", "application/json")
        .header("x-veil-signature", &sig)
        .header("x-veil-event", &entry.event)
        .header("x-veil-event-id", &entry.id);
    for (k, v) in &cfg.headers {
        req = req.header(k.as_str(), v.expose().as_str());
    }
    match req.send(entry.body.as_bytes()) {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match status {
                200..=299 => Attempt::Delivered,
                408 | 429 | 500..=599 => Attempt::Retry(format!("HTTP {status}")),
                _ => Attempt::Final(format!("HTTP {status}")),
            }
        }
        // Connection refused, reset, timeouts, TLS handshake trouble: the receiver may come back.
        Err(e) => Attempt::Retry(describe_ureq_error(&e)),
    }
}

/// A transport error without the URL (which could carry a token in its query).
fn describe_ureq_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("connection error ({:?})", io.kind()),
        ureq::Error::Timeout(t) => format!("timeout ({t:?})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS error (is the receiver's CA trusted? see --webhook-ca)".into(),
        other => format!("transport error ({})", other.to_string().split(':').next().unwrap_or("unknown")),
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub failed: usize,
    pub pending: usize,
}

/// Delivers pending events until none is left, or `deadline` passes, or (when `recording` is
/// given) that recording has nothing pending. Events that exhaust their attempts or meet a
/// final 4xx move to `dead/`.
pub fn deliver(
    outbox: &Outbox,
    cfg: &WebhookConfig,
    recording: Option<&str>,
    deadline: Instant,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<DeliveryReport, WebhookError> {
    let agent = cfg.agent();
    let mut report = DeliveryReport::default();
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            report.pending = outbox.pending(recording);
            return Ok(report);
        }
        let heads = outbox.heads()?;
        let relevant: Vec<&PathBuf> = heads
            .iter()
            .filter(|h| recording.is_none_or(|r| h.parent().and_then(|p| p.file_name()).is_some_and(|n| n == r)))
            .collect();
        if relevant.is_empty() || Instant::now() >= deadline {
            report.pending = outbox.pending(recording);
            return Ok(report);
        }
        let mut next_wake = deadline;
        for head in heads {
            let text = std::fs::read_to_string(&head).map_err(|source| WebhookError::Io { path: head.clone(), cause: source })?;
            let mut entry: Entry = match serde_json::from_str(&text) {
                Ok(e) => e,
                Err(e) => {
                    let dead = outbox.dir.join("dead").join(dead_name(&head));
                    let _ = std::fs::rename(&head, &dead);
                    tracing::error!(entry = %head.display(), error = %e, "unreadable outbox entry moved to dead/");
                    continue;
                }
            };
            let now = unix_ms();
            if entry.not_before_ms > now {
                next_wake = next_wake.min(Instant::now() + Duration::from_millis(entry.not_before_ms - now));
                continue;
            }
            entry.attempts += 1;
            match attempt(&agent, cfg, &entry) {
                Attempt::Delivered => {
                    std::fs::remove_file(&head).map_err(|source| WebhookError::Io { path: head.clone(), cause: source })?;
                    tracing::info!(event = %entry.event, id = %entry.id, attempts = entry.attempts, to = %mask_url(&entry.url), "webhook delivered");
                    report.delivered += 1;
                    next_wake = Instant::now();
                }
                Attempt::Retry(why) if entry.attempts < cfg.max_attempts => {
                    let wait = cfg.backoff(entry.attempts);
                    entry.not_before_ms = unix_ms() + wait.as_millis() as u64;
                    tracing::warn!(event = %entry.event, id = %entry.id, attempts = entry.attempts, reason = %why, retry_in_ms = wait.as_millis() as u64, to = %mask_url(&entry.url), "webhook delivery failed; will retry");
                    write_atomic(&head, &entry)?;
                    next_wake = next_wake.min(Instant::now() + wait);
                }
                Attempt::Retry(why) | Attempt::Final(why) => {
                    tracing::error!(event = %entry.event, id = %entry.id, attempts = entry.attempts, reason = %why, to = %mask_url(&entry.url), "webhook delivery abandoned; kept in the outbox's dead/ folder");
                    write_atomic(&head, &entry)?;
                    let dead = outbox.dir.join("dead").join(dead_name(&head));
                    std::fs::rename(&head, &dead).map_err(|source| WebhookError::Io { path: dead.clone(), cause: source })?;
                    report.failed += 1;
                    next_wake = Instant::now();
                }
            }
        }
        let now = Instant::now();
        if next_wake > now {
            std::thread::sleep((next_wake - now).min(Duration::from_millis(250)));
        }
    }
}

fn dead_name(head: &Path) -> String {
    let rec = head.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let file = head.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{rec}-{file}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_plain_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn config_debug_hides_secrets() {
        let mut c = WebhookConfig::new(b"s3cr3t".to_vec());
        c.add_header("X-Api-Key: hunter2").unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t") && !d.contains("hunter2"), "{d}");
        assert!(validate_url("ftp://x/y").is_err());
        assert!(validate_url("https://").is_err());
        let e = validate_url("gopher://h.example/x?token=abc").unwrap_err().to_string();
        assert!(!e.contains("token"), "{e}");
        assert!(validate_url("https://hooks.example.com/x").is_ok());
        assert!(c.add_header("novalue").is_err());
    }

    #[test]
    fn outbox_orders_and_numbers_events() {
        let d = tempfile::tempdir().unwrap();
        let o = Outbox::open(d.path()).unwrap();
        let a = o.enqueue("rec_1", "https://x", "recording.started", serde_json::Map::new()).unwrap();
        let b = o.enqueue("rec_1", "https://x", "recording.success", serde_json::Map::new()).unwrap();
        assert_ne!(a, b);
        assert_eq!(o.pending(Some("rec_1")), 2);
        let heads = o.heads().unwrap();
        assert_eq!(heads.len(), 1);
        assert!(heads[0].ends_with("rec_1/000000.json"));
        let e: Entry = serde_json::from_str(&std::fs::read_to_string(&heads[0]).unwrap()).unwrap();
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["id"], a.as_str());
        assert_eq!(body["type"], "recording.started");
        assert!(body["sent_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut c = WebhookConfig::new(vec![1]);
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(1_000);
        let b1 = c.backoff(1);
        let b4 = c.backoff(4);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100), "{b1:?}");
        assert!(b4 >= Duration::from_millis(400) && b4 <= Duration::from_millis(800), "{b4:?}");
        assert!(c.backoff(20) <= Duration::from_millis(1_000));
    }
}
