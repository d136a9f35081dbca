//! [`LiveSource`] for a Janus VideoRoom: the hidden participant's signaling events become
//! peer events; each publisher gets its own media subscription, whose pads and chat become
//! track and message events. If the signaling session is lost (Janus destroyed it, it timed
//! out, or the gateway stayed unreachable), it joins again with a new session, with backoff,
//! and subscribes afresh.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;

use super::signaling::{join_hidden, publishers, Client, Event, HiddenParticipant, JanusError};
use super::subscriber::{MediaEvent, Subscription};
use crate::privacy::Redacted;
use crate::session::source::{LiveSource, SourceError, SourceEvent};

pub struct JanusSource {
    url: String,
    room: u64,
    pin: Option<Redacted<String>>,
    pipeline: gst::Pipeline,
    /// Gives up reconnecting when set (a stop request) or after `deadline`.
    stop: Arc<AtomicBool>,
    deadline: Instant,
    client: Client,
    events: Receiver<Event>,
    me: HiddenParticipant,
    /// Publishers present, and the subscriptions that carry their media.
    present: HashSet<u64>,
    subs: HashMap<u64, Subscription>,
    media_tx: Sender<MediaEvent>,
    media_rx: Receiver<MediaEvent>,
    queue: VecDeque<SourceEvent>,
}

impl JanusSource {
    /// Joins `room` hidden and subscribes to whoever publishes there; subscriptions live in
    /// `pipeline`.
    pub fn join(url: &str, room: u64, pin: Option<Redacted<String>>, pipeline: &gst::Pipeline, stop: Arc<AtomicBool>, deadline: Instant) -> Result<Self, JanusError> {
        let (client, events) = Client::connect(url)?;
        let me = join_hidden(&client, room, pin.as_ref())?;
        tracing::info!(janus_session = client.session_id(), "joined the room as a hidden participant");
        let (media_tx, media_rx) = std::sync::mpsc::channel();
        let mut s = Self {
            url: url.to_owned(),
            room,
            pin,
            pipeline: pipeline.clone(),
            stop,
            deadline,
            client,
            events,
            me,
            present: HashSet::new(),
            subs: HashMap::new(),
            media_tx,
            media_rx,
            queue: VecDeque::new(),
        };
        s.subscribe_initial()?;
        Ok(s)
    }

    fn subscribe_initial(&mut self) -> Result<(), JanusError> {
        for p in std::mem::take(&mut self.me.initial) {
            self.arrive(p.feed, p.display, p.screen)?;
        }
        Ok(())
    }

    fn arrive(&mut self, feed: u64, name: Redacted<String>, screen: bool) -> Result<(), JanusError> {
        // The tile first: the subscription's pads follow as track events.
        if self.present.insert(feed) {
            self.queue.push_back(SourceEvent::PeerJoined { peer: feed, name, screen });
        }
        if self.subs.contains_key(&feed) {
            return Ok(());
        }
        match Subscription::start(&self.client, self.room, self.me.private_id, feed, &self.pipeline, self.media_tx.clone()) {
            Ok(sub) => {
                self.subs.insert(feed, sub);
                tracing::info!(feed, "publisher subscribed");
            }
            Err(super::subscriber::SubscribeError::Janus(e)) => return Err(e),
            // One publisher's media failing leaves their placeholder; the rest goes on.
            Err(e) => tracing::warn!(feed, error = %e, "subscription failed"),
        }
        Ok(())
    }

    fn depart(&mut self, feed: u64) {
        self.subs.remove(&feed);
        if self.present.remove(&feed) {
            self.queue.push_back(SourceEvent::PeerLeft { peer: feed });
            tracing::info!(feed, "publisher left");
        }
    }

    /// Reads what signaling said; returns false when the session is lost.
    fn drain_signaling(&mut self) -> Result<bool, JanusError> {
        loop {
            let ev = match self.events.try_recv() {
                Ok(ev) => ev,
                Err(TryRecvError::Empty) => return Ok(!self.client.is_gone()),
                Err(TryRecvError::Disconnected) => return Ok(false),
            };
            if ev.handle != Some(self.me.handle) {
                continue;
            }
            let Some(data) = ev.data else { continue };
            if data["videoroom"] == "destroyed" {
                self.queue.push_back(SourceEvent::Closed { reason: "the room was destroyed".into() });
            }
            for p in publishers(&data) {
                self.arrive(p.feed, p.display, p.screen)?;
            }
            for gone in [data["unpublished"].as_u64(), data["leaving"].as_u64()].into_iter().flatten() {
                self.depart(gone);
            }
        }
    }

    /// Joins again after the signaling session was lost. Present peers keep their tiles
    /// (their media is reported lost); those no longer publishing leave.
    fn rejoin(&mut self) -> Result<(), JanusError> {
        tracing::warn!("janus signaling lost; reconnecting");
        self.subs.clear(); // their webrtcbins go before the branches they fed
        let feeds: Vec<u64> = self.present.iter().copied().collect();
        for &peer in &feeds {
            self.queue.push_back(SourceEvent::MediaLost { peer });
        }
        let mut backoff = Duration::from_millis(250);
        let (client, events, me) = loop {
            if self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline {
                // Nobody is subscribed now; the caller stops on its own conditions.
                for peer in feeds {
                    self.depart(peer);
                }
                return Ok(());
            }
            match Client::connect(&self.url).and_then(|(c, e)| join_hidden(&c, self.room, self.pin.as_ref()).map(|m| (c, e, m))) {
                Ok(joined) => break joined,
                Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "rejoining the room failed"),
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        };
        (self.client, self.events, self.me) = (client, events, me);
        tracing::info!(janus_session = self.client.session_id(), "rejoined the room");
        self.queue.push_back(SourceEvent::Reconnected);
        let present: Vec<u64> = self.me.initial.iter().map(|p| p.feed).collect();
        for peer in feeds.into_iter().filter(|f| !present.contains(f)) {
            self.depart(peer);
        }
        self.subscribe_initial()
    }
}

impl LiveSource for JanusSource {
    fn next_event(&mut self, timeout: Duration) -> Result<Option<SourceEvent>, SourceError> {
        let failed = |e: JanusError| SourceError::Failed(e.to_string());
        if self.queue.is_empty() && !self.drain_signaling().map_err(failed)? {
            self.rejoin().map_err(failed)?;
        }
        if let Some(ev) = self.queue.pop_front() {
            return Ok(Some(ev));
        }
        match self.media_rx.recv_timeout(timeout) {
            Ok(MediaEvent::Pad { feed, kind, pad, hold }) => Ok(Some(SourceEvent::Track { peer: feed, kind, pad, hold })),
            Ok(MediaEvent::Chat { feed, text, at }) => Ok(Some(SourceEvent::Message { peer: feed, text, at })),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn present(&self) -> usize {
        self.present.len()
    }
}

impl Drop for JanusSource {
    fn drop(&mut self) {
        self.subs.clear();
        let _ = self.client.detach(self.me.handle);
    }
}
