//! The live session source: what a session that is happening now reports, as events, with
//! its media as GStreamer pads inside the consumer's pipeline.
//!
//! The live compositor and the recording loop (`crate::live`) consume [`LiveSource`] and do
//! not know what is behind it: `janus::JanusSource` for a Janus VideoRoom, `replay::FilesReplay`
//! for a session folder played in real time (media pads are RTP from the one, raw decoded
//! media from the other; the compositor takes both). Re-compositing a folder for delivery does
//! not go through this trait: known in full up front, it is composited faster than real time
//! from a [`super::Session`].

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::privacy::Redacted;

/// Keeps a new pad blocked until dropped: link the pad first, then drop this. (An unlinked
/// pad that pushes gets not-linked, which can stop a whole upstream source.)
#[derive(Debug)]
pub struct PadHold {
    pad: gst::Pad,
    probe: Option<gst::PadProbeId>,
}

impl PadHold {
    pub fn block(pad: &gst::Pad) -> Self {
        let probe = pad.add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| gst::PadProbeReturn::Ok);
        Self { pad: pad.clone(), probe }
    }
}

impl Drop for PadHold {
    fn drop(&mut self) {
        if let Some(p) = self.probe.take() {
            self.pad.remove_probe(p);
        }
    }
}

#[derive(Debug)]
pub enum SourceEvent {
    /// A peer is present (their tile appears). `screen`: the peer is a screen share.
    PeerJoined { peer: u64, name: Redacted<String>, screen: bool },
    /// A peer left (their tile goes).
    PeerLeft { peer: u64 },
    /// A media track of a peer: an RTP pad (`kind` `audio` or `video`), blocked until `hold`
    /// is dropped.
    Track { peer: u64, kind: String, pad: gst::Pad, hold: PadHold },
    /// A peer's media stopped while they stay (the source is renewing its connection).
    MediaLost { peer: u64 },
    /// A text message from a peer (raw, may contain PHI), with the time it arrived.
    Message { peer: u64, text: Redacted<String>, at: Instant },
    /// The source lost its connection to the session and joined it again.
    Reconnected,
    /// The session itself ended (`reason`: for the result, e.g. "the room was destroyed").
    Closed { reason: String },
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
