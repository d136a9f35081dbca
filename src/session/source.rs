//! The live session source: what a session that is happening now reports, as events, with
//! its media as GStreamer pads inside the consumer's pipeline.
//!
//! The live compositor and the recording loop (`crate::live`) consume [`LiveSource`] and do
//! not know which gateway is behind it; `janus::JanusSource` is the implementation for a
//! Janus VideoRoom. Re-compositing does not go through this trait: a session folder is known
//! in full before it starts and is composited faster than real time from a [`super::Session`]
//! (`files`), where presence comes from the manifest rather than from events.

use std::time::{Duration, Instant};

use gstreamer as gst;

use crate::privacy::Redacted;

/// Keeps a new pad blocked until dropped: link the pad first, then drop this.
pub trait PadHold: std::fmt::Debug + Send {}

#[derive(Debug)]
pub enum SourceEvent {
    /// A peer is present (their tile appears). `screen`: the peer is a screen share.
    PeerJoined { peer: u64, name: Redacted<String>, screen: bool },
    /// A peer left (their tile goes).
    PeerLeft { peer: u64 },
    /// A media track of a peer: an RTP pad (`kind` `audio` or `video`), blocked until `hold`
    /// is dropped.
    Track { peer: u64, kind: String, pad: gst::Pad, hold: Box<dyn PadHold> },
    /// A peer's media stopped while they stay (the source is renewing its connection).
    MediaLost { peer: u64 },
    /// A text message from a peer (raw, may contain PHI), with the time it arrived.
    Message { peer: u64, text: Redacted<String>, at: Instant },
    /// The source lost its connection to the session and joined it again.
    Reconnected,
    /// The session itself ended (the room was destroyed).
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("live source: {0}")]
    Failed(String),
}

pub trait LiveSource {
    /// The next event, waiting up to `timeout`; None when nothing happened.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, SourceError>;
    /// How many peers are present now.
    fn present(&self) -> usize;
}
