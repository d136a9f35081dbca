//! The live compositor: the same output chain as re-compositing (`output`), fed by peers that
//! come and go while it runs.
//!
//! ```text
//! videotestsrc is-live (black, drives 30 fps) ──────────────────────────► compositor ─► output
//! per peer:  videotestsrc is-live (placeholder) ! textoverlay(name) ─────►     ▲
//!            webrtcbin pad ! depay ! decode ! convert ! scale ! textoverlay ──┘  (above it)
//!            webrtcbin pad ! depay ! decode ! convert ! resample ──────► audiomixer
//! audiotestsrc is-live (silence) ───────────────────────────────────────► audiomixer
//! ```
//!
//! Timestamps are the pipeline's running time (webrtcbin sits in the same pipeline), so media
//! lands where it was received. A peer's tile is their placeholder (name on a plain tile)
//! under their camera; a peer who leaves is hidden and the grid closes up. `stop` ends every
//! mixer input so the muxer finishes the file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::layout::{grid, Rect};
use super::profile::Profile;
use super::{capsfilter, label, make, output, raw_audio_caps, raw_video_caps, ByteSink, ComposeError, HEIGHT, WIDTH};
use crate::privacy::Redacted;

const TILE_W: i32 = 640;
const TILE_H: i32 = 360;
/// Placeholder colours, by join order (as in re-compositing's palette, muted tones).
const PLACEHOLDERS: [u32; 4] = [0xff3a3f58, 0xff583a4a, 0xff3a5850, 0xff58503a];

struct LivePeer {
    feed: u64,
    name: Redacted<String>,
    present: bool,
    placeholder: gst::Pad,
    video: Option<gst::Pad>,
    audio: Option<gst::Pad>,
}

pub struct LiveCompositor {
    pipeline: gst::Pipeline,
    comp: gst::Element,
    amix: gst::Element,
    sink_error: Arc<Mutex<Option<String>>>,
    /// Watched for the end: webrtcbin holds sinks of its own (for sending) that never end,
    /// so the pipeline as a whole never posts EOS while a subscription exists.
    appsink: gstreamer_app::AppSink,
    peers: Mutex<Vec<LivePeer>>,
}

fn pipe_err(e: impl std::fmt::Display) -> ComposeError {
    ComposeError::Pipeline(e.to_string())
}

impl LiveCompositor {
    /// Builds and starts the pipeline (black frames and silence until someone arrives).
    pub fn start(profile: &Profile, sink: ByteSink) -> Result<Self, ComposeError> {
        super::init()?;
        let pipeline = gst::Pipeline::with_name("veil-live");
        let out = output(&pipeline, profile, sink)?;
        // Live inputs arrive with network jitter; wait a little for late ones.
        out.comp.set_property("latency", 200_000_000u64);
        out.amix.set_property("latency", 200_000_000u64);

        let bg = make("videotestsrc")?;
        bg.set_property("is-live", true);
        bg.set_property_from_str("pattern", "black");
        let bg_caps = capsfilter(raw_video_caps(WIDTH, HEIGHT))?;
        pipeline.add_many([&bg, &bg_caps]).map_err(pipe_err)?;
        bg.link(&bg_caps).map_err(pipe_err)?;
        let pad = link_to(&bg_caps, &out.comp)?;
        pad.set_property("zorder", 0u32);

        let silence = make("audiotestsrc")?;
        silence.set_property("is-live", true);
        silence.set_property_from_str("wave", "silence");
        let s_caps = capsfilter(raw_audio_caps())?;
        pipeline.add_many([&silence, &s_caps]).map_err(pipe_err)?;
        silence.link(&s_caps).map_err(pipe_err)?;
        link_to(&s_caps, &out.amix)?;

        pipeline.set_state(gst::State::Playing).map_err(|_| ComposeError::Pipeline("the live pipeline did not start".into()))?;
        Ok(Self { pipeline, comp: out.comp, amix: out.amix, sink_error: out.sink_error, appsink: out.appsink, peers: Mutex::new(Vec::new()) })
    }

    /// The pipeline media subscriptions (webrtcbin) must be added to.
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Milliseconds of output so far (the pipeline's running time).
    pub fn now_ms(&self) -> u64 {
        self.pipeline.current_running_time().map(|t| t.mseconds()).unwrap_or(0)
    }

    /// A peer arrived: their placeholder tile appears.
    pub fn add_peer(&self, feed: u64, name: &Redacted<String>) -> Result<(), ComposeError> {
        let mut peers = self.peers.lock().map_err(pipe_err)?;
        if let Some(p) = peers.iter_mut().find(|p| p.feed == feed) {
            p.present = true;
        } else {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", "solid-color");
            src.set_property("foreground-color", PLACEHOLDERS[peers.len() % PLACEHOLDERS.len()]);
            let caps = capsfilter(raw_video_caps(TILE_W, TILE_H))?;
            let text = label(name.expose(), true)?;
            let chain = [src, caps, text];
            self.add_running(&chain)?;
            let placeholder = link_to(&chain[2], &self.comp)?;
            placeholder.set_property("zorder", 1u32);
            peers.push(LivePeer { feed, name: name.clone(), present: true, placeholder, video: None, audio: None });
        }
        self.relayout(&peers);
        Ok(())
    }

    /// A peer left: their tiles disappear and the grid closes up.
    pub fn remove_peer(&self, feed: u64) {
        if let Ok(mut peers) = self.peers.lock() {
            if let Some(p) = peers.iter_mut().find(|p| p.feed == feed) {
                p.present = false;
                if let Some(a) = &p.audio {
                    a.set_property("mute", true);
                }
            }
            self.relayout(&peers);
        }
    }

    /// Links a subscription's RTP pad (`kind` audio or video) into the mix.
    pub fn add_media(&self, feed: u64, kind: &str, rtp: &gst::Pad) -> Result<(), ComposeError> {
        let caps = rtp.current_caps().or_else(|| Some(rtp.query_caps(None)));
        let encoding = caps.as_ref().and_then(|c| c.structure(0).and_then(|s| s.get::<String>("encoding-name").ok())).unwrap_or_default();
        let mut peers = self.peers.lock().map_err(pipe_err)?;
        let Some(i) = peers.iter().position(|p| p.feed == feed) else {
            return Err(ComposeError::Pipeline(format!("media for unknown feed {feed}")));
        };
        match kind {
            "video" => {
                let (depay, dec) = match encoding.as_str() {
                    "VP8" => ("rtpvp8depay", "vp8dec"),
                    "VP9" => ("rtpvp9depay", "vp9dec"),
                    "H264" => ("rtph264depay", "avdec_h264"),
                    other => return Err(ComposeError::Pipeline(format!("feed {feed}: video codec {other} is not supported"))),
                };
                let scale = make("videoscale")?;
                scale.set_property("add-borders", true);
                let text = label(peers[i].name.expose(), false)?;
                // No framerate in the caps: received video has a variable rate (0/1).
                let caps = gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", TILE_W)
                    .field("height", TILE_H)
                    .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                    .build();
                let chain = [make(depay)?, make(dec)?, make("videoconvert")?, scale, capsfilter(caps)?, text, make("queue")?];
                self.add_running(&chain)?;
                rtp.link(&chain[0].static_pad("sink").expect("depayloader sink")).map_err(|e| pipe_err(format!("{e:?}")))?;
                let pad = link_to(&chain[6], &self.comp)?;
                pad.set_property("zorder", 2u32);
                tracing::debug!(feed, "video linked");
                peers[i].video = Some(pad);
            }
            "audio" => {
                let (depay, dec) = match encoding.as_str() {
                    "OPUS" => ("rtpopusdepay", "opusdec"),
                    other => return Err(ComposeError::Pipeline(format!("feed {feed}: audio codec {other} is not supported"))),
                };
                let chain = [make(depay)?, make(dec)?, make("audioconvert")?, make("audioresample")?, capsfilter(raw_audio_caps())?, make("queue")?];
                self.add_running(&chain)?;
                rtp.link(&chain[0].static_pad("sink").expect("depayloader sink")).map_err(|e| pipe_err(format!("{e:?}")))?;
                peers[i].audio = Some(link_to(&chain[5], &self.amix)?);
            }
            _ => {}
        }
        self.relayout(&peers);
        Ok(())
    }

    /// An error the pipeline reported, if any (non-blocking).
    pub fn poll_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                if let Some(s) = self.sink_error.lock().ok().and_then(|mut s| s.take()) {
                    return Some(format!("the output sink failed: {s}"));
                }
                // Errors inside a subscription (a peer's network going away) end that peer's
                // media only; the mix goes on.
                let from = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                if from.contains("webrtcbin") || from.contains("nice") || from.contains("dtls") {
                    tracing::warn!(error = %e.error(), "a subscription failed; that peer's media stops");
                    continue;
                }
                return Some(format!("{from}: {}", e.error()));
            }
        }
        None
    }

    /// Ends every input so the muxer finishes, waits for the end, and stops the pipeline.
    pub fn stop(self, timeout: Duration) -> Result<u64, ComposeError> {
        let duration = self.now_ms();
        // From now on the mixers take no more media: every input is dropped, then ended.
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(true));
        for mixer in [&self.comp, &self.amix] {
            for pad in mixer.sink_pads() {
                let s = stopping.clone();
                pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, move |_, _| {
                    if s.load(std::sync::atomic::Ordering::Relaxed) {
                        gst::PadProbeReturn::Drop
                    } else {
                        gst::PadProbeReturn::Ok
                    }
                });
                pad.send_event(gst::event::Eos::new());
            }
        }
        let bus = self.pipeline.bus().expect("pipeline bus");
        let deadline = std::time::Instant::now() + timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(ComposeError::Pipeline("the recording did not finish within the stop timeout".into()));
            }
            if self.appsink.is_eos() {
                break Ok(duration);
            }
            let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(left.as_millis().min(50) as u64), &[gst::MessageType::Eos, gst::MessageType::Error]) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_) => break Ok(duration),
                gst::MessageView::Error(e) => {
                    if let Some(s) = self.sink_error.lock().ok().and_then(|mut s| s.take()) {
                        break Err(ComposeError::Sink(s));
                    }
                    let from = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                    if from.contains("webrtcbin") {
                        continue;
                    }
                    break Err(ComposeError::Pipeline(format!("{from}: {}", e.error())));
                }
                _ => {}
            }
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }

    fn add_running(&self, chain: &[gst::Element]) -> Result<(), ComposeError> {
        self.pipeline.add_many(chain).map_err(pipe_err)?;
        gst::Element::link_many(chain).map_err(pipe_err)?;
        for e in chain {
            e.sync_state_with_parent().map_err(pipe_err)?;
        }
        Ok(())
    }

    fn relayout(&self, peers: &[LivePeer]) {
        let present: Vec<&LivePeer> = peers.iter().filter(|p| p.present).collect();
        let rects = grid(present.len(), Rect::new(0, 0, WIDTH, HEIGHT));
        for p in peers {
            let slot = present.iter().position(|q| q.feed == p.feed).and_then(|i| rects.get(i));
            for pad in std::iter::once(&p.placeholder).chain(p.video.as_ref()) {
                match slot {
                    Some(r) => {
                        pad.set_property("xpos", r.x);
                        pad.set_property("ypos", r.y);
                        pad.set_property("width", r.w);
                        pad.set_property("height", r.h);
                        pad.set_property("alpha", 1f64);
                    }
                    None => pad.set_property("alpha", 0f64),
                }
            }
        }
    }
}

/// Links `last`'s src pad to a new request pad of `mixer`.
fn link_to(last: &gst::Element, mixer: &gst::Element) -> Result<gst::Pad, ComposeError> {
    let pad = mixer.request_pad_simple("sink_%u").ok_or_else(|| ComposeError::Pipeline("mixer refused a pad".into()))?;
    last.static_pad("src").ok_or_else(|| ComposeError::Pipeline("element without src pad".into()))?.link(&pad).map_err(|e| pipe_err(format!("{e:?}")))?;
    Ok(pad)
}
