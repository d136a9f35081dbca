//! Uploaders: move a finished spill into its destination and confirm it landed.
//! One trait, one module per destination. Uploaders only ever write to the destination:
//! no read, head or list calls (the local folder's own `stat` after rename is the exception,
//! as it is the operator's disk, not a customer bucket).

pub mod local;

use std::path::Path;

use serde::Serialize;

use crate::spill::SpillKey;

#[derive(Debug, Clone, Serialize)]
pub struct StoredObject {
    pub key: String,
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// Whose fault a destination error is, for `recording.failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationFault {
    /// The credentials may not write there.
    Permission,
    /// The bucket or folder does not exist.
    Missing,
    /// The credentials were refused.
    Credentials,
    /// The destination could not be reached or failed (may be transient).
    Unreachable,
}

impl DestinationFault {
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        match kind {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => Self::Permission,
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Self::Missing,
            _ => Self::Unreachable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("destination {dest}: {message}")]
    Destination { dest: String, message: String, fault: DestinationFault },
    #[error(transparent)]
    Spill(#[from] crate::spill::SpillError),
}

/// Where recordings go, parsed from a destination URL.
#[derive(Debug, Clone)]
pub enum Destination {
    Local(local::LocalDir),
}

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("destination `{0}`: expected file:///absolute/dir (s3://, gs:// and Azure URLs are not supported by this version)")]
    Unsupported(String),
    #[error("destination `{url}`: {message}")]
    Invalid { url: String, message: String },
}

impl Destination {
    pub fn parse(url: &str) -> Result<Self, DestinationError> {
        if let Some(rest) = url.strip_prefix("file://") {
            return local::LocalDir::parse(rest)
                .map(Destination::Local)
                .map_err(|message| DestinationError::Invalid { url: url.into(), message });
        }
        // Never echo a query string: it may carry a SAS token.
        let shown = url.split('?').next().unwrap_or_default().to_owned();
        Err(DestinationError::Unsupported(shown))
    }

    /// The destination as shown in results and webhooks: no credentials, no query.
    pub fn describe(&self) -> String {
        match self {
            Destination::Local(d) => format!("file://{}", d.root().display()),
        }
    }

    /// The key prefix configured in the destination URL ("" for none).
    pub fn prefix(&self) -> &str {
        match self {
            Destination::Local(_) => "",
        }
    }

    /// Decrypts `spill` into the destination under `key` and confirms it.
    pub fn put(&self, key: &str, content_type: &str, spill: &Path, spill_key: &SpillKey) -> Result<StoredObject, PutFailure> {
        match self {
            Destination::Local(d) => d.put(key, content_type, spill, spill_key),
        }
    }
}

/// A failed put. `complete` says whether the destination nevertheless holds the whole
/// object (then the spill may go); otherwise the spill must stay.
#[derive(Debug)]
pub struct PutFailure {
    pub error: UploadError,
    pub complete: Option<StoredObject>,
}

impl From<UploadError> for PutFailure {
    fn from(error: UploadError) -> Self {
        Self { error, complete: None }
    }
}

/// `{prefix}/{kind}/{room_id}/{yyyy-mm-dd}/Rec-{room_id}-{epoch}.{ext}` (no leading slash
/// when the prefix is empty).
pub fn object_key(prefix: &str, kind: &str, room_id: &str, started_at: chrono::DateTime<chrono::Utc>, ext: &str) -> String {
    let date = started_at.format("%Y-%m-%d");
    let epoch = started_at.timestamp();
    let tail = format!("{kind}/{room_id}/{date}/Rec-{room_id}-{epoch}.{ext}");
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() { tail } else { format!("{prefix}/{tail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(object_key("", "composite", "room-42", t, "mp4"), "composite/room-42/2026-11-30/Rec-room-42-1796047200.mp4");
        assert_eq!(object_key("/rec/a/", "chat", "r", t, "csv"), "rec/a/chat/r/2026-11-30/Rec-r-1796047200.csv");
    }

    #[test]
    fn unsupported_destination_hides_query() {
        let e = Destination::parse("https://acct.blob.core.windows.net/c/p?sig=SECRET").unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(Destination::parse("file://relative/dir").is_err());
    }
}
