//! A media subscription to one VideoRoom publisher: a webrtcbin inside the caller's pipeline
//! that receives the publisher's audio, video and data channel.
//!
//! One subscription per publisher: Janus relays every publisher's data-channel messages over a
//! subscriber's single SCTP association under the publishers' own labels, so a shared
//! subscription could not tell who wrote a chat message. Per publisher, the sender is the
//! subscription's feed.
//!
//! Janus offers; we set the offer, open our own data channel (Janus sends chat only to a
//! subscriber that has one), answer, and `start`. Each incoming RTP stream appears as a
//! [`MediaEvent::Pad`] (depayloading and decoding are the caller's); each chat message as a
//! [`MediaEvent::Chat`] with the time it was received.

use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use serde_json::json;

use super::signaling::{Client, JanusError};
use crate::privacy::Redacted;
pub use crate::session::source::PadHold;

#[derive(Debug)]
pub enum MediaEvent {
    /// An RTP source pad of the subscription's webrtcbin (`kind` is `audio` or `video`). The
    /// pad is blocked until `hold` is dropped: link it first. (An unlinked pad would make the
    /// shared ICE source stop with not-linked, ending every stream of the subscription.)
    Pad { feed: u64, kind: String, pad: gst::Pad, hold: PadHold },
    /// A text message on the publisher's data channel (the raw JSON; may contain PHI).
    Chat { feed: u64, text: Redacted<String>, at: Instant },
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Janus(#[from] JanusError),
    #[error("subscription to feed {feed}: {message}")]
    Media { feed: u64, message: String },
}

/// A live subscription. Dropping it leaves the subscription and removes its webrtcbin.
pub struct Subscription {
    pub feed: u64,
    pub handle: u64,
    webrtc: gst::Element,
    pipeline: gst::Pipeline,
}

impl Subscription {
    /// Subscribes to `feed` in `room`; `pipeline` must be PLAYING (or go there soon).
    pub fn start(client: &Client, room: u64, private_id: Option<u64>, feed: u64, pipeline: &gst::Pipeline, events: Sender<MediaEvent>) -> Result<Self, SubscribeError> {
        let media = |message: String| SubscribeError::Media { feed, message };
        let handle = client.attach("janus.plugin.videoroom")?;
        let mut body = json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]});
        if let Some(p) = private_id {
            body["private_id"] = p.into();
        }
        let (data, jsep) = client.request(handle, "subscribe", body, None, Duration::from_secs(10))?;
        let offer = jsep.and_then(|j| j["sdp"].as_str().map(str::to_owned)).ok_or_else(|| media("Janus sent no offer".into()))?;
        if data["videoroom"] != "attached" {
            return Err(media("unexpected answer to subscribe".into()));
        }

        let webrtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .map_err(|_| media("webrtcbin is missing (gstreamer1.0-plugins-bad, gstreamer1.0-nice)".into()))?;
        pipeline.add(&webrtc).map_err(|_| media("cannot add webrtcbin".into()))?;
        webrtc.sync_state_with_parent().map_err(|_| media("webrtcbin did not start".into()))?;

        {
            let events = events.clone();
            webrtc.connect_pad_added(move |_, pad| {
                if pad.direction() != gst::PadDirection::Src {
                    return;
                }
                let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
                let kind = caps
                    .as_ref()
                    .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
                    .unwrap_or_default();
                let hold = PadHold::block(pad);
                if let Err(e) = events.send(MediaEvent::Pad { feed, kind, pad: pad.clone(), hold }) {
                    drop(e); // nobody listens: the hold is released with the event
                }
            });
        }
        let watch = move |channel: &gst_webrtc::WebRTCDataChannel, events: Sender<MediaEvent>| {
            channel.connect_on_message_string(move |_, text| {
                if let Some(t) = text {
                    let _ = events.send(MediaEvent::Chat { feed, text: Redacted::new(t.to_owned()), at: Instant::now() });
                }
            });
        };
        {
            let events = events.clone();
            webrtc.connect("on-data-channel", false, move |values| {
                if let Ok(ch) = values[1].get::<gst_webrtc::WebRTCDataChannel>() {
                    watch(&ch, events.clone());
                }
                None
            });
        }
        {
            let (client_url_handle, c) = (handle, client_candidates(client));
            webrtc.connect("on-ice-candidate", false, move |values| {
                let mline = values[1].get::<u32>().unwrap_or(0);
                let cand = values[2].get::<String>().unwrap_or_default();
                let _ = c.send((client_url_handle, json!({"candidate": cand, "sdpMLineIndex": mline})));
                None
            });
        }

        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).map_err(|_| media("Janus's offer is not valid SDP".into()))?;
        let remote = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, sdp);
        let done = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-remote-description", &[&remote, &done]);
        done.wait();
        // Our own channel, before answering: Janus relays data only to subscribers with one.
        if let Some(ch) = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCDataChannel>>("create-data-channel", &[&"veil", &None::<gst::Structure>]) {
            watch(&ch, events.clone());
        }
        let answer_promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &answer_promise]);
        let reply = match answer_promise.wait() {
            gst::PromiseResult::Replied => answer_promise.get_reply().map(|r| r.to_owned()),
            _ => None,
        };
        let answer = reply
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("answer").ok())
            .ok_or_else(|| media("webrtcbin made no answer".into()))?;
        let set = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-local-description", &[&answer, &set]);
        set.wait();
        let text = answer.sdp().as_text().map_err(|_| media("cannot print the answer".into()))?;
        client.request(handle, "start", json!({"request": "start", "room": room}), Some(json!({"type": "answer", "sdp": text})), Duration::from_secs(10))?;
        Ok(Self { feed, handle, webrtc, pipeline: pipeline.clone() })
    }

    pub fn webrtcbin(&self) -> &gst::Element {
        &self.webrtc
    }
}

/// Candidates are sent from a small thread of their own: webrtcbin emits them on its
/// streaming thread, which must not block on HTTP.
fn client_candidates(client: &Client) -> Sender<(u64, serde_json::Value)> {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, serde_json::Value)>();
    let trickle = client.trickler();
    std::thread::spawn(move || {
        while let Ok((handle, c)) = rx.recv() {
            let _ = trickle(handle, c);
        }
    });
    tx
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.webrtc.set_state(gst::State::Null);
        let _ = self.pipeline.remove(&self.webrtc);
    }
}
