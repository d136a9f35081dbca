//! Session sources: who was in the session, when, with which tracks, and what they wrote.
//!
//! Re-compositing consumes a [`Session`], built by `files` from a session folder. Live
//! recording consumes a [`source::LiveSource`] (events and media pads as they happen);
//! `janus` is its implementation for a Janus VideoRoom. Either way the result is described
//! by the same model (peers with join/leave times, chat messages).

pub mod files;
pub mod janus;
pub mod replay;
pub mod source;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::privacy::Redacted;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Camera,
    Screen,
    Microphone,
}

/// One media file of a peer, probed.
#[derive(Debug, Clone)]
pub struct Track {
    /// The path as written in the manifest (for messages; contains no names by contract).
    pub label: String,
    pub path: PathBuf,
    pub start_ms: u64,
    pub source: Source,
    pub has_audio: bool,
    pub has_video: bool,
    /// Duration announced by the container, if any.
    pub duration_ms: Option<u64>,
}

impl Track {
    /// Session time at which this track's media ends (as announced), bounded by `limit`.
    pub fn end_ms(&self, limit: u64) -> u64 {
        self.duration_ms.map(|d| self.start_ms.saturating_add(d)).unwrap_or(limit).min(limit)
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub peer_id: String,
    pub name: Redacted<String>,
    pub user_id: String,
    pub role: String,
    pub joined_ms: u64,
    pub left_ms: u64,
    pub tracks: Vec<Track>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    pub sent_ms: u64,
    pub sender_peer_id: String,
    pub sender_name: Redacted<String>,
    #[serde(default)]
    pub sender_user_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(rename = "type", default = "default_chat_type")]
    pub kind: String,
    #[serde(default)]
    pub to: Option<Vec<String>>,
    pub message: Redacted<String>,
}

fn default_chat_type() -> String {
    "chat".into()
}

impl ChatMessage {
    pub fn is_direct(&self) -> bool {
        self.to.is_some()
    }
}

/// A session ready to be composited.
#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub room_id: String,
    pub room_name: Redacted<String>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub peers: Vec<Peer>,
    /// `None` when the session has no chat log.
    pub chat: Option<Vec<ChatMessage>>,
}
