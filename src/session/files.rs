//! The `files` session source: a session folder (`session.json`, track files, chat log).
//! The input contract is documented in `docs/session-folder.md`.
//!
//! Loading is parse → validate → probe: the manifest is parsed strictly, checked without I/O
//! beyond existence, then every track is probed with GStreamer's discoverer so that a file
//! without a decodable stream is reported before the pipeline is built.

use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ChatMessage, Peer, Session, Source, Track};
use crate::privacy::Redacted;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Field { path: PathBuf, field: String, message: String },
    #[error("{path} (field `{field}`): track file does not exist")]
    MissingTrack { path: PathBuf, field: String },
    #[error("{path} (field `{field}`): no decodable audio or video stream{detail}")]
    Undecodable { path: PathBuf, field: String, detail: String },
    #[error("{path}: line {line}: not a valid chat message: {message}")]
    ChatLine { path: PathBuf, line: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    session_id: String,
    room_id: String,
    room_name: Redacted<String>,
    started_at: String,
    #[serde(default)]
    duration_ms: Option<u64>,
    peers: Vec<RawPeer>,
    #[serde(default)]
    chat: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    peer_id: String,
    name: Redacted<String>,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    role: String,
    joined_ms: u64,
    #[serde(default)]
    left_ms: Option<u64>,
    #[serde(default)]
    tracks: Vec<RawTrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    file: String,
    start_ms: u64,
    source: Source,
}

/// Object-key-safe identifiers: they become part of bucket keys and must not carry paths.
pub fn is_safe_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) && s != "." && s != ".."
}

/// Loads and probes a session folder.
pub fn load(dir: &Path) -> Result<Session, LoadError> {
    let manifest = dir.join("session.json");
    let text = std::fs::read_to_string(&manifest).map_err(|source| LoadError::Read { path: manifest.clone(), cause: source })?;
    let raw: RawSession =
        serde_json::from_str(&text).map_err(|e| LoadError::Parse { path: manifest.clone(), message: e.to_string() })?;
    let field_err = |field: String, message: &str| LoadError::Field { path: manifest.clone(), field, message: message.into() };

    if !is_safe_id(&raw.room_id) {
        return Err(field_err("room_id".into(), "must be 1-128 characters of A-Z a-z 0-9 - _ ."));
    }
    if raw.session_id.is_empty() {
        return Err(field_err("session_id".into(), "must not be empty"));
    }
    let started_at: DateTime<Utc> = DateTime::parse_from_rfc3339(&raw.started_at)
        .map_err(|e| field_err("started_at".into(), &format!("not an RFC 3339 time ({e})")))?
        .with_timezone(&Utc);

    let mut peers = Vec::with_capacity(raw.peers.len());
    let mut seen = std::collections::HashSet::new();
    for (pi, p) in raw.peers.into_iter().enumerate() {
        let f = |name: &str| format!("peers[{pi}].{name}");
        if p.peer_id.is_empty() || !seen.insert(p.peer_id.clone()) {
            return Err(field_err(f("peer_id"), "must be non-empty and unique"));
        }
        if let Some(left) = p.left_ms {
            if left <= p.joined_ms {
                return Err(field_err(f("left_ms"), "must be after joined_ms"));
            }
        }
        let mut tracks = Vec::with_capacity(p.tracks.len());
        for (ti, t) in p.tracks.into_iter().enumerate() {
            let field = f(&format!("tracks[{ti}].file"));
            let rel = Path::new(&t.file);
            if t.file.is_empty() || rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(field_err(field, "must be a path relative to the session folder, without `..`"));
            }
            let path = dir.join(rel);
            if !path.is_file() {
                return Err(LoadError::MissingTrack { path, field });
            }
            tracks.push(probe(path, t.file, field, t.start_ms, t.source)?);
        }
        peers.push(Peer {
            peer_id: p.peer_id,
            name: p.name,
            user_id: p.user_id,
            role: p.role,
            joined_ms: p.joined_ms,
            left_ms: p.left_ms.unwrap_or(u64::MAX),
            tracks,
        });
    }

    let duration_ms = match raw.duration_ms {
        Some(0) => return Err(field_err("duration_ms".into(), "must be greater than zero")),
        Some(d) => d,
        None => peers
            .iter()
            .flat_map(|p| {
                let media_end = p.tracks.iter().map(|t| t.end_ms(u64::MAX)).max().unwrap_or(p.joined_ms);
                [if p.left_ms == u64::MAX { media_end } else { p.left_ms }]
            })
            .max()
            .filter(|&d| d > 0 && d != u64::MAX)
            .ok_or_else(|| field_err("duration_ms".into(), "missing, and cannot be derived from peers' left_ms or tracks"))?,
    };
    for p in &mut peers {
        p.left_ms = p.left_ms.min(duration_ms);
    }

    let chat = match raw.chat {
        None => None,
        Some(rel) => {
            let rp = Path::new(&rel);
            if rel.is_empty() || rp.is_absolute() || rp.components().any(|c| matches!(c, Component::ParentDir)) {
                return Err(field_err("chat".into(), "must be a path relative to the session folder, without `..`"));
            }
            Some(load_chat(&dir.join(rp))?)
        }
    };

    Ok(Session {
        session_id: raw.session_id,
        room_id: raw.room_id,
        room_name: raw.room_name,
        started_at,
        duration_ms,
        peers,
        chat,
    })
}

/// Reads a JSON-lines chat log; blank lines are skipped, anything else must be a message.
pub fn load_chat(path: &Path) -> Result<Vec<ChatMessage>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_owned(), cause: source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let msg: ChatMessage = serde_json::from_str(line).map_err(|e| LoadError::ChatLine {
            path: path.to_owned(),
            line: i + 1,
            // serde's message can quote input text; keep only its category and column.
            message: describe_json_error(&e),
        })?;
        out.push(msg);
    }
    out.sort_by_key(|m| m.sent_ms);
    Ok(out)
}

/// A serde_json error without echoing the input (chat text must not reach error messages).
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "invalid JSON",
        Category::Eof => "unexpected end of line",
        Category::Data => "wrong or missing field",
        Category::Io => "read error",
    };
    let text = e.to_string();
    // Field names in "missing field `x`" are safe and useful; values are not.
    let field = text.split('`').nth(1).filter(|f| text.contains("missing field") && f.len() < 40);
    match field {
        Some(f) => format!("{what} (missing field `{f}`, column {})", e.column()),
        None => format!("{what} (column {})", e.column()),
    }
}

fn probe(path: PathBuf, label: String, field: String, start_ms: u64, source: Source) -> Result<Track, LoadError> {
    let undecodable = |detail: String| LoadError::Undecodable { path: path.clone(), field: field.clone(), detail };
    crate::compose::init().map_err(|e| undecodable(format!(": {e}")))?;
    let abs = std::fs::canonicalize(&path).map_err(|source| LoadError::Read { path: path.clone(), cause: source })?;
    let uri = gstreamer::glib::filename_to_uri(&abs, None).map_err(|e| undecodable(format!(": {e}")))?;
    let discoverer = gstreamer_pbutils::Discoverer::new(gstreamer::ClockTime::from_seconds(15))
        .map_err(|e| undecodable(format!(": {e}")))?;
    let info = discoverer.discover_uri(&uri).map_err(|_| undecodable(String::new()))?;
    let has_audio = !info.audio_streams().is_empty();
    let has_video = !info.video_streams().is_empty();
    if !has_audio && !has_video {
        return Err(undecodable(String::new()));
    }
    if source == Source::Microphone && !has_audio {
        return Err(undecodable(" (a microphone track needs an audio stream)".into()));
    }
    Ok(Track {
        label,
        path: abs,
        start_ms,
        source,
        has_audio,
        has_video: has_video && source != Source::Microphone,
        duration_ms: info.duration().map(|d| d.mseconds()).filter(|&d| d > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_line_errors_name_the_line_and_hide_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chat.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"1\",\"sent_ms\":5,\"sender_peer_id\":\"a\",\"sender_name\":\"A\",\"message\":\"hi\"}\n\nnot json SECRET\n",
        )
        .unwrap();
        let err = load_chat(&p).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        std::fs::write(&p, "{\"id\":\"1\",\"sent_ms\":5}\n").unwrap();
        let err = load_chat(&p).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("missing field"), "{err}");
    }

    #[test]
    fn safe_ids() {
        assert!(is_safe_id("room-42_a.b"));
        for bad in ["", "..", "a/b", "a b", "ü"] {
            assert!(!is_safe_id(bad), "{bad}");
        }
    }
}
