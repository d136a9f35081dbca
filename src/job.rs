//! The job document: raw JSON → validated job. Pure apart from reading the environment for
//! fallbacks. Every error names the field at fault and never quotes a value (a value may be a
//! secret). Secrets are `Redacted` from the moment they are parsed. Schema: `docs/jobs.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::compose::layout::LayoutMode;
use crate::privacy::Redacted;
use crate::upload::{Destination, DestinationError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub id: String,
    pub session: SessionSpec,
    #[serde(default)]
    pub layout: LayoutMode,
    #[serde(default = "default_profile")]
    pub profile: String,
    #[serde(default)]
    pub chat: ChatSpec,
    pub destination: Option<DestinationSpec>,
    pub webhook: Option<WebhookSpec>,
    #[serde(default)]
    pub workspace: WorkspaceSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
    /// What to produce. veil makes `composite` (the MP4) and `chat` (the CSV).
    #[serde(default = "default_outputs")]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub upload: UploadSpec,
}

fn default_profile() -> String {
    "default".into()
}

fn default_outputs() -> Vec<String> {
    vec!["composite".into(), "chat".into()]
}

#[derive(Debug)]
pub enum SessionSpec {
    /// A recorded session folder (`docs/session-folder.md`): re-compositing.
    Files(FilesSession),
    /// A live Janus VideoRoom.
    Janus(JanusSession),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSession {
    #[serde(rename = "type")]
    _type: String,
    pub dir: PathBuf,
    /// Play the folder in real time through the live path instead of re-compositing it.
    #[serde(default)]
    pub live: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanusSession {
    #[serde(rename = "type")]
    _type: String,
    pub url: String,
    pub room: u64,
    pub pin: Option<Redacted<String>>,
}

/// Dispatches on `type` by hand (an internally tagged enum would hide the inner field's name
/// in errors).
impl<'de> Deserialize<'de> for SessionSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        let inner = |e: serde_path_to_error::Error<serde_json::Error>| {
            let path = e.path().to_string();
            D::Error::custom(format!("`{path}`: {}", scrub(&e.into_inner().to_string())))
        };
        match v.get("type").and_then(|t| t.as_str()) {
            Some("files") => serde_path_to_error::deserialize(v).map(SessionSpec::Files).map_err(inner),
            Some("janus") => serde_path_to_error::deserialize(v).map(SessionSpec::Janus).map_err(inner),
            Some(_) => Err(D::Error::custom("`type`: expected `files` or `janus`")),
            None => Err(D::Error::custom("missing field `type` (`files` or `janus`)")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSpec {
    #[serde(default = "yes")]
    pub record: bool,
    #[serde(default)]
    pub include_direct: bool,
}

impl Default for ChatSpec {
    fn default() -> Self {
        Self { record: true, include_direct: false }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// May carry an Azure SAS in its query: redacted.
    pub url: Redacted<String>,
    pub s3: Option<S3Spec>,
    pub gcs: Option<GcsSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Spec {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Redacted<String>>,
    pub session_token: Option<Redacted<String>>,
    pub force_path_style: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsSpec {
    /// An emulator or private endpoint (anonymous credentials).
    pub endpoint: Option<String>,
    /// The service account key file's contents (JSON text).
    pub service_account: Option<Redacted<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: String,
    pub secret: Redacted<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Redacted<String>>,
    /// An extra trusted root certificate (PEM text).
    pub ca_pem: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    #[serde(default)]
    pub hipaa: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default = "default_max_duration")]
    pub max_duration_s: u64,
    #[serde(default = "default_empty_timeout")]
    pub empty_timeout_s: u64,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self { max_duration_s: default_max_duration(), empty_timeout_s: default_empty_timeout() }
    }
}

fn default_max_duration() -> u64 {
    14_400
}

fn default_empty_timeout() -> u64 {
    30
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadSpec {
    pub part_size_mib: Option<usize>,
    pub retention_s: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("job {file}: `{field}`: {message}")]
    Field { file: String, field: String, message: String },
    #[error("job {file}: `destination.url`: {cause}")]
    Destination { file: String, cause: DestinationError },
}

/// The outputs veil can make.
pub const SUPPORTED_OUTPUTS: [&str; 2] = ["composite", "chat"];

impl Job {
    /// Parses a job document; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self, JobError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let job: Job = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            JobError::Field { file: file.into(), field: if field == "." { "(document)".into() } else { field }, message: scrub(&e.into_inner().to_string()) }
        })?;
        let bad = |field: &str, message: &str| JobError::Field { file: file.into(), field: field.into(), message: message.into() };
        if job.id.is_empty() || job.id.len() > 128 || !job.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(bad("id", "1-128 characters of A-Z, a-z, 0-9, '-', '_' and '.'"));
        }
        if job.limits.max_duration_s == 0 {
            return Err(bad("limits.max_duration_s", "must be at least 1"));
        }
        if let Some(w) = &job.webhook {
            if w.secret.expose().is_empty() {
                return Err(bad("webhook.secret", "must not be empty"));
            }
        }
        if let Some(u) = &job.upload.part_size_mib {
            if *u == 0 || *u > 4000 {
                return Err(bad("upload.part_size_mib", "must be 1-4000"));
            }
        }
        Ok(job)
    }

    /// Builds the destination: fields in the job first, then the same environment variables
    /// as the CLI (`env`).
    pub fn destination(&self, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<Result<Destination, JobError>> {
        let spec = self.destination.as_ref()?;
        let s3 = spec.s3.as_ref();
        let gcs = spec.gcs.as_ref();
        let overlay = |k: &str| -> Option<String> {
            let from_job = match k {
                "AWS_ACCESS_KEY_ID" => s3.and_then(|s| s.access_key_id.clone()),
                "AWS_SECRET_ACCESS_KEY" => s3.and_then(|s| s.secret_access_key.as_ref()).map(|s| s.expose().clone()),
                "AWS_SESSION_TOKEN" => s3.and_then(|s| s.session_token.as_ref()).map(|s| s.expose().clone()),
                "AWS_REGION" => s3.and_then(|s| s.region.clone()),
                "AWS_ENDPOINT_URL" | "AWS_ENDPOINT_URL_S3" => s3.and_then(|s| s.endpoint.clone()),
                "AWS_S3_FORCE_PATH_STYLE" => s3.and_then(|s| s.force_path_style).map(|b| b.to_string()),
                "STORAGE_EMULATOR_HOST" => gcs.and_then(|g| g.endpoint.clone()),
                crate::upload::gcs::CREDENTIALS_JSON_VAR => gcs.and_then(|g| g.service_account.as_ref()).map(|s| s.expose().clone()),
                _ => None,
            };
            from_job.or_else(|| env(k))
        };
        Some(Destination::parse_with_env(spec.url.expose(), &overlay).map_err(|cause| JobError::Destination { file: file.into(), cause }))
    }
}

/// Drops quoted values from a serde message ("invalid type: string \"…\", expected u64"):
/// the value may be a secret put in the wrong field.
fn scrub(message: &str) -> String {
    let m = message.split(" at line ").next().unwrap_or(message);
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            let kind = rest.split([' ', ',']).next().unwrap_or("");
            let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("something else");
            return format!("{} ({kind}), expected {expected}", prefix.trim_end_matches([':', ' ']));
        }
    }
    m.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"id": "job-1",
        "session": {"type": "janus", "url": "http://10.0.0.1:8088/janus", "room": 1234, "pin": "PINSECRET"},
        "layout": "speaker",
        "chat": {"record": true, "include_direct": false},
        "destination": {"url": "s3://bucket/prefix",
                        "s3": {"region": "eu-west-1", "endpoint": "http://127.0.0.1:3900", "access_key_id": "AKID", "secret_access_key": "S3SECRET"}},
        "webhook": {"url": "https://hooks.example/veil", "secret": "WHSECRET", "headers": {"x-tenant": "HDRSECRET"}},
        "workspace": {"hipaa": true},
        "limits": {"max_duration_s": 60, "empty_timeout_s": 5}}"#;

    #[test]
    fn parses_the_documented_example_and_never_prints_secrets() {
        let job = Job::parse(JOB.as_bytes(), "job.json").unwrap();
        assert!(matches!(job.session, SessionSpec::Janus(JanusSession { room: 1234, .. })));
        assert_eq!(job.layout, LayoutMode::Speaker);
        assert!(job.workspace.hipaa);
        assert_eq!(job.limits.empty_timeout_s, 5);
        let shown = format!("{job:?}");
        for s in ["PINSECRET", "S3SECRET", "WHSECRET", "HDRSECRET"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
        let none = |_: &str| None;
        let Some(Ok(Destination::S3(d))) = job.destination("job.json", &none) else { panic!("s3 destination") };
        assert_eq!((d.region.as_str(), d.credentials.access_key_id.as_str()), ("eu-west-1", "AKID"));
        assert_eq!(d.credentials.secret_access_key.expose(), "S3SECRET");
        assert!(d.path_style);
    }

    #[test]
    fn environment_fills_what_the_job_leaves_out() {
        let doc = r#"{"id": "j", "session": {"type": "files", "dir": "/x"}, "destination": {"url": "s3://bkt"}}"#;
        let job = Job::parse(doc.as_bytes(), "j.json").unwrap();
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("ENVKEY".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("ENVSECRET".to_string()),
            _ => None,
        };
        let Some(Ok(Destination::S3(d))) = job.destination("j.json", &env) else { panic!() };
        assert_eq!(d.credentials.access_key_id, "ENVKEY");
        assert_eq!(job.outputs, ["composite", "chat"]);
    }

    #[test]
    fn errors_name_the_field_and_hide_the_value() {
        let cases = [
            (r#"{"id": "j", "session": {"type": "files", "dir": "/x"}, "destination": {"url": "s3://b", "s3": {"secret_acess_key": "TOPSECRET"}}}"#, "destination.s3"),
            (r#"{"id": "j", "session": {"type": "janus", "url": "u", "room": "TOPSECRET"}}"#, "session`: `room"),
            (r#"{"id": "j", "session": {"type": "files", "dir": "/x"}, "webhook": {"url": "https://h", "secret": 12345}}"#, "webhook.secret"),
            (r#"{"id": "j", "session": {"type": "zoom"}}"#, "session"),
            (r#"{"id": "bad id!", "session": {"type": "files", "dir": "/x"}}"#, "id"),
            (r#"{"id": "j"}"#, "(document)"),
        ];
        for (doc, field) in cases {
            let e = Job::parse(doc.as_bytes(), "j.json").unwrap_err().to_string();
            assert!(e.starts_with(&format!("job j.json: `{field}")), "{e}");
            assert!(!e.contains("TOPSECRET") && !e.contains("12345"), "{e}");
        }
    }
}
