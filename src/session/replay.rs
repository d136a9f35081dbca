//! [`LiveSource`] over a session folder played in real time: the `files` source of the live
//! path. Peers join and leave, tracks start and chat messages arrive when the manifest says,
//! on the clock of the pipeline the media is added to; each track is read by `filesrc !
//! decodebin` (reading only) and handed over as raw decoded pads. Useful to try live layouts,
//! webhooks and destinations without a gateway, and to check that the live compositor gives
//! what re-compositing gives.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::json;

use super::source::{LiveSource, PadHold, SourceError, SourceEvent};
use super::{Session, Source};

/// What the live path sees as one publisher: a peer's cameras and microphones, or one of
/// their screen shares (a gateway publishes a screen share as a feed of its own).
struct Feed {
    id: u64,
    peer: usize,
    screen: bool,
    joined_ms: u64,
    left_ms: u64,
    /// Track indices of the peer, and whether each was started.
    tracks: Vec<(usize, bool)>,
    joined: bool,
    left: bool,
}

pub struct FilesReplay {
    session: Session,
    pipeline: gst::Pipeline,
    begun: Option<Instant>,
    feeds: Vec<Feed>,
    next_chat: usize,
    present: usize,
    closed: bool,
    queue: VecDeque<SourceEvent>,
    tx: Sender<SourceEvent>,
    rx: Receiver<SourceEvent>,
    readers: Vec<gst::Element>,
}


impl FilesReplay {
    pub fn new(session: Session, pipeline: &gst::Pipeline) -> Self {
        let mut feeds = Vec::new();
        for (i, p) in session.peers.iter().enumerate() {
            let own: Vec<(usize, bool)> = (0..p.tracks.len()).filter(|&k| p.tracks[k].source != Source::Screen).map(|k| (k, false)).collect();
            feeds.push(Feed { id: feeds.len() as u64 + 1, peer: i, screen: false, joined_ms: p.joined_ms, left_ms: p.left_ms, tracks: own, joined: false, left: false });
            for (k, t) in p.tracks.iter().enumerate().filter(|(_, t)| t.source == Source::Screen) {
                let left_ms = t.end_ms(p.left_ms).min(p.left_ms);
                feeds.push(Feed { id: feeds.len() as u64 + 1, peer: i, screen: true, joined_ms: t.start_ms, left_ms, tracks: vec![(k, false)], joined: false, left: false });
            }
        }
        let (tx, rx) = channel();
        Self {
            session,
            pipeline: pipeline.clone(),
            begun: None,
            feeds,
            next_chat: 0,
            present: 0,
            closed: false,
            queue: VecDeque::new(),
            tx,
            rx,
            readers: Vec::new(),
        }
    }

    /// Starts reading a track: its decoded pads, offset to start now on the pipeline's clock,
    /// arrive as track events (blocked until linked).
    fn start_track(&mut self, feed: usize, track: usize) -> Result<(), SourceError> {
        let t = &self.session.peers[self.feeds[feed].peer].tracks[track];
        let failed = |what: &str| SourceError::Failed(format!("track {}: {what}", t.label));
        let src = gst::ElementFactory::make("filesrc").property("location", t.path.to_string_lossy().to_string()).build().map_err(|_| failed("no filesrc"))?;
        let decode = gst::ElementFactory::make("decodebin").build().map_err(|_| failed("no decodebin"))?;
        self.pipeline.add_many([&src, &decode]).map_err(|_| failed("cannot add its reader"))?;
        src.link(&decode).map_err(|_| failed("cannot link its reader"))?;
        let offset = self.pipeline.current_running_time().map(|t| t.nseconds() as i64).unwrap_or(0);
        let (tx, id) = (self.tx.clone(), self.feeds[feed].id);
        decode.connect_pad_added(move |_, pad| {
            let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
            let name = caps.as_ref().and_then(|c| c.structure(0).map(|s| s.name().to_string())).unwrap_or_default();
            let kind = if name.starts_with("video/") { "video" } else if name.starts_with("audio/") { "audio" } else { return };
            pad.set_offset(offset);
            let hold = PadHold::block(pad);
            let _ = tx.send(SourceEvent::Track { peer: id, kind: kind.into(), pad: pad.clone(), hold });
        });
        for e in [&decode, &src] {
            e.sync_state_with_parent().map_err(|_| failed("its reader did not start"))?;
        }
        self.readers.extend([src, decode]);
        Ok(())
    }

    /// Everything the manifest says happened by `now_ms`.
    fn catch_up(&mut self, now_ms: u64) -> Result<(), SourceError> {
        for f in 0..self.feeds.len() {
            let feed = &mut self.feeds[f];
            if !feed.joined && feed.joined_ms <= now_ms && feed.joined_ms < feed.left_ms {
                feed.joined = true;
                self.present += 1;
                let name = self.session.peers[feed.peer].name.clone();
                self.queue.push_back(SourceEvent::PeerJoined { peer: feed.id, name, screen: feed.screen });
            }
            if feed.joined && !feed.left {
                let due: Vec<usize> = (0..feed.tracks.len()).filter(|&n| !feed.tracks[n].1 && self.session.peers[feed.peer].tracks[feed.tracks[n].0].start_ms <= now_ms).collect();
                for n in due {
                    self.feeds[f].tracks[n].1 = true;
                    let track = self.feeds[f].tracks[n].0;
                    self.start_track(f, track)?;
                }
            }
            let feed = &mut self.feeds[f];
            if feed.joined && !feed.left && feed.left_ms <= now_ms {
                feed.left = true;
                self.present -= 1;
                self.queue.push_back(SourceEvent::PeerLeft { peer: feed.id });
            }
        }
        let chat = self.session.chat.as_deref().unwrap_or_default();
        while self.next_chat < chat.len() && chat[self.next_chat].sent_ms <= now_ms {
            let m = &chat[self.next_chat];
            self.next_chat += 1;
            let Some(i) = self.session.peers.iter().position(|p| p.peer_id == m.sender_peer_id) else { continue };
            let Some(feed) = self.feeds.iter().find(|f| f.peer == i && !f.screen) else { continue };
            let text = json!({"type": m.kind, "id": m.id, "to": m.to, "message": m.message.expose()}).to_string();
            self.queue.push_back(SourceEvent::Message { peer: feed.id, text: crate::privacy::Redacted::new(text), at: Instant::now() });
        }
        if !self.closed && now_ms >= self.session.duration_ms {
            self.closed = true;
            self.queue.push_back(SourceEvent::Closed { reason: "the replayed session ended".into() });
        }
        Ok(())
    }
}

impl LiveSource for FilesReplay {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, SourceError> {
        let begun = *self.begun.get_or_insert_with(Instant::now);
        if self.queue.is_empty() {
            self.catch_up(begun.elapsed().as_millis() as u64)?;
        }
        if let Some(ev) = self.queue.pop_front() {
            return Ok(Some(ev));
        }
        match self.rx.recv_timeout(timeout.min(Duration::from_millis(20))) {
            Ok(ev) => Ok(Some(ev)),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn present(&self) -> usize {
        self.present
    }
}

impl Drop for FilesReplay {
    fn drop(&mut self) {
        for e in self.readers.drain(..) {
            let _ = e.set_state(gst::State::Null);
            let _ = self.pipeline.remove(&e);
        }
    }
}
