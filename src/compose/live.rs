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
//! under their camera. The tiles are placed by the same [`Scene`] rules as re-compositing
//! (a screen share takes the main region in `auto` and `screen`; in `speaker`, the peer whose
//! decoded audio is loudest, with the same hold and margin). A camera that stops
//! sending (muted, or its network stalled) is hidden after [`VIDEO_STALL`] so the
//! placeholder shows instead of a frozen frame, and comes back with its next frame. A peer
//! who leaves is hidden and the others close up; their media branches are removed. `stop`
//! ends every mixer input so the muxer finishes the file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::layout::{LayoutMode, Rect, Scene, Span, Tile, TileKind};
use super::profile::Profile;
use super::speaker::SpeakerTracker;
use super::{capsfilter, label, make, output, raw_audio_caps, raw_video_caps, ByteSink, ComposeError, HEIGHT, WIDTH};
use crate::privacy::Redacted;

const TILE_W: i32 = 640;
const TILE_H: i32 = 360;
/// Placeholder colours, by join order (as in re-compositing's palette, muted tones).
const PLACEHOLDERS: [u32; 4] = [0xff3a3f58, 0xff583a4a, 0xff3a5850, 0xff58503a];

/// How long a camera may send nothing before its placeholder is shown instead.
pub const VIDEO_STALL: Duration = Duration::from_millis(700);

/// A peer's decoding branch into one of the mixers.
struct Branch {
    elements: Vec<gst::Element>,
    mixer_pad: gst::Pad,
}

struct LivePeer {
    feed: u64,
    name: Redacted<String>,
    kind: TileKind,
    present: bool,
    placeholder: gst::Pad,
    video: Option<Branch>,
    audio: Option<Branch>,
    /// Milliseconds since the compositor started at which the last video frame arrived.
    last_frame_ms: Arc<AtomicU64>,
    /// The same for the last audio buffer.
    last_audio_ms: Arc<AtomicU64>,
    /// Whether the camera is shown (frames are arriving) rather than the placeholder.
    video_live: bool,
}

pub struct LiveCompositor {
    pipeline: gst::Pipeline,
    comp: gst::Element,
    amix: gst::Element,
    sink_error: Arc<Mutex<Option<String>>>,
    /// Watched for the end: webrtcbin holds sinks of its own (for sending) that never end,
    /// so the pipeline as a whole never posts EOS while a subscription exists.
    appsink: gstreamer_app::AppSink,
    mode: LayoutMode,
    started: Instant,
    peers: Mutex<Vec<LivePeer>>,
    /// Audio levels and the focus they elect, for the `speaker` layout (peers by index).
    speaker: Option<Arc<Mutex<SpeakerTracker>>>,
    focus: Mutex<Option<usize>>,
}

fn pipe_err(e: impl std::fmt::Display) -> ComposeError {
    ComposeError::Pipeline(e.to_string())
}

impl LiveCompositor {
    /// Builds and starts the pipeline (black frames and silence until someone arrives).
    pub fn start(profile: &Profile, mode: LayoutMode, sink: ByteSink) -> Result<Self, ComposeError> {
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
        Ok(Self {
            pipeline,
            comp: out.comp,
            amix: out.amix,
            sink_error: out.sink_error,
            appsink: out.appsink,
            mode,
            started: Instant::now(),
            peers: Mutex::new(Vec::new()),
            speaker: (mode == LayoutMode::Speaker).then(|| Arc::new(Mutex::new(SpeakerTracker::live()))),
            focus: Mutex::new(None),
        })
    }

    /// The pipeline media subscriptions (webrtcbin) must be added to.
    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// Milliseconds of output so far (the pipeline's running time).
    pub fn now_ms(&self) -> u64 {
        self.pipeline.current_running_time().map(|t| t.mseconds()).unwrap_or(0)
    }

    /// A peer arrived: their placeholder tile appears. `kind` says whether the feed is a
    /// camera or a screen share.
    pub fn add_peer(&self, feed: u64, name: &Redacted<String>, kind: TileKind) -> Result<(), ComposeError> {
        let mut peers = self.peers.lock().map_err(pipe_err)?;
        if let Some(p) = peers.iter_mut().find(|p| p.feed == feed) {
            p.present = true;
            p.kind = kind;
        } else {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", "solid-color");
            src.set_property("foreground-color", PLACEHOLDERS[peers.len() % PLACEHOLDERS.len()]);
            let caps = capsfilter(raw_video_caps(TILE_W, TILE_H))?;
            let text = label(name.expose(), true)?;
            let chain = [src, caps, text];
            let placeholder = self.add_running(&chain, &self.comp)?;
            placeholder.set_property("zorder", 1u32);
            peers.push(LivePeer {
                feed,
                name: name.clone(),
                kind,
                present: true,
                placeholder,
                video: None,
                audio: None,
                last_frame_ms: Arc::new(AtomicU64::new(0)),
                last_audio_ms: Arc::new(AtomicU64::new(0)),
                video_live: false,
            });
        }
        self.relayout(&peers);
        Ok(())
    }

    /// A new feed under the name of a present peer whose media all stopped at least
    /// [`VIDEO_STALL`] ago is that peer reconnecting (a new connection is a new feed): their
    /// tile passes to the new feed, in place, instead of a second tile appearing. Returns the
    /// old feed if so.
    pub fn take_over(&self, feed: u64, name: &Redacted<String>) -> Option<u64> {
        let now = self.started.elapsed().as_millis() as u64;
        let stall = VIDEO_STALL.as_millis() as u64;
        let mut peers = self.peers.lock().ok()?;
        let stalled = |p: &LivePeer| {
            let last = p.last_frame_ms.load(Ordering::Relaxed).max(p.last_audio_ms.load(Ordering::Relaxed));
            p.present && p.feed != feed && p.name.expose() == name.expose() && now.saturating_sub(last) >= stall
        };
        let i = peers.iter().position(stalled)?;
        let old = std::mem::replace(&mut peers[i].feed, feed);
        for (branch, mixer) in [(peers[i].video.take(), &self.comp), (peers[i].audio.take(), &self.amix)] {
            if let Some(b) = branch {
                self.remove_branch(b, mixer);
            }
        }
        peers[i].video_live = false;
        self.relayout(&peers);
        Some(old)
    }

    /// A peer left: their tiles disappear, the others close up, and their media branches
    /// are taken out of the pipeline (the subscription that fed them is gone).
    pub fn remove_peer(&self, feed: u64) {
        if let Ok(mut peers) = self.peers.lock() {
            if let Some(p) = peers.iter_mut().find(|p| p.feed == feed) {
                p.present = false;
            }
        }
        self.drop_media(feed);
    }

    /// A peer's media went away while they stay (their subscription is being renewed): the
    /// branches are removed and the placeholder shows until new media is linked.
    pub fn drop_media(&self, feed: u64) {
        if let Ok(mut peers) = self.peers.lock() {
            if let Some(i) = peers.iter().position(|p| p.feed == feed) {
                if let (Some(tracker), true) = (&self.speaker, peers[i].audio.is_some()) {
                    if let Ok(mut t) = tracker.lock() {
                        t.set_audio_peer(i, Span { start_ms: 0, end_ms: self.now_ms() });
                    }
                }
                let p = &mut peers[i];
                p.video_live = false;
                for (branch, mixer) in [(p.video.take(), &self.comp), (p.audio.take(), &self.amix)] {
                    if let Some(b) = branch {
                        self.remove_branch(b, mixer);
                    }
                }
            }
            self.relayout(&peers);
        }
    }

    /// Shows or hides cameras by whether frames arrive; returns the feeds whose camera
    /// stopped (`false`) or resumed (`true`) since the last call.
    pub fn watch_video(&self) -> Vec<(u64, bool)> {
        let now = self.started.elapsed().as_millis() as u64;
        let Ok(mut peers) = self.peers.lock() else { return Vec::new() };
        let mut changed = Vec::new();
        for p in peers.iter_mut().filter(|p| p.present && p.video.is_some()) {
            let last = p.last_frame_ms.load(Ordering::Relaxed);
            let live = last > 0 && now.saturating_sub(last) < VIDEO_STALL.as_millis() as u64;
            if live != p.video_live {
                p.video_live = live;
                changed.push((p.feed, live));
            }
        }
        let mut refocus = false;
        if let Some(tracker) = &self.speaker {
            // Decided a little behind now, once every branch has reported that far.
            let speaker = tracker.lock().ok().and_then(|mut t| t.current_at(self.now_ms().saturating_sub(300)));
            if let Ok(mut focus) = self.focus.lock() {
                refocus = *focus != speaker;
                *focus = speaker;
            }
        }
        if !changed.is_empty() || refocus {
            self.relayout(&peers);
        }
        changed
    }

    /// Links a subscription's RTP pad (`kind` audio or video) into the mix.
    pub fn add_media(&self, feed: u64, kind: &str, rtp: &gst::Pad) -> Result<(), ComposeError> {
        let caps = rtp.current_caps().or_else(|| Some(rtp.query_caps(None)));
        let structure = caps.as_ref().and_then(|c| c.structure(0).map(|s| s.to_owned()));
        // RTP from a gateway (depayloaded and decoded here), or media already decoded (raw).
        let raw = structure.as_ref().is_some_and(|s| s.name().ends_with("/x-raw"));
        let encoding = if raw { "RAW".to_owned() } else { structure.and_then(|s| s.get::<String>("encoding-name").ok()).unwrap_or_default() };
        let mut peers = self.peers.lock().map_err(pipe_err)?;
        let Some(i) = peers.iter().position(|p| p.feed == feed) else {
            return Err(ComposeError::Pipeline(format!("media for unknown feed {feed}")));
        };
        match kind {
            "video" => {
                let (depay, dec) = match encoding.as_str() {
                    "RAW" => ("queue", "identity"),
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
                let pad = self.add_running(&chain, &self.comp)?;
                rtp.link(&chain[0].static_pad("sink").expect("depayloader sink")).map_err(|e| pipe_err(format!("{e:?}")))?;
                pad.set_property("zorder", 2u32);
                pad.set_property("alpha", 0f64); // until its first frame (see watch_video)
                let (last, started) = (peers[i].last_frame_ms.clone(), self.started);
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    last.store((started.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
                if let Some(old) = peers[i].video.replace(Branch { elements: chain.to_vec(), mixer_pad: pad }) {
                    self.remove_branch(old, &self.comp);
                }
            }
            "audio" => {
                let (depay, dec) = match encoding.as_str() {
                    "RAW" => ("queue", "identity"),
                    "OPUS" => ("rtpopusdepay", "opusdec"),
                    other => return Err(ComposeError::Pipeline(format!("feed {feed}: audio codec {other} is not supported"))),
                };
                let chain = [make(depay)?, make(dec)?, make("audioconvert")?, make("audioresample")?, capsfilter(raw_audio_caps())?, make("queue")?];
                let pad = self.add_running(&chain, &self.amix)?;
                let (last, started) = (peers[i].last_audio_ms.clone(), self.started);
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    last.store((started.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
                if let Some(tracker) = &self.speaker {
                    if let Ok(mut t) = tracker.lock() {
                        t.set_audio_peer(i, Span { start_ms: self.now_ms(), end_ms: u64::MAX });
                    }
                    let tracker = tracker.clone();
                    chain[4].static_pad("src").expect("caps src").add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                        if let Some(buf) = info.buffer() {
                            if let (Some(t_ms), Some(rms)) = (running_ms(pad, buf), super::rms_f32(buf)) {
                                if let Ok(mut t) = tracker.lock() {
                                    t.update(i, t_ms, rms);
                                }
                            }
                        }
                        gst::PadProbeReturn::Ok
                    });
                }
                // Received media is stamped when its first packet arrives; an audio packet
                // leaves the sender only once its whole frame (20 ms for WebRTC Opus) was
                // captured, so audio would sit one frame late against video. Take it back.
                if encoding == "OPUS" {
                    let out = chain[5].static_pad("src").expect("queue src");
                    chain[1].static_pad("src").expect("decoder src").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                        let frame = info.buffer().and_then(|b| b.duration()).unwrap_or(gst::ClockTime::ZERO);
                        out.set_offset(-(frame.min(gst::ClockTime::from_mseconds(120)).nseconds() as i64));
                        gst::PadProbeReturn::Remove
                    });
                }
                rtp.link(&chain[0].static_pad("sink").expect("depayloader sink")).map_err(|e| pipe_err(format!("{e:?}")))?;
                if let Some(old) = peers[i].audio.replace(Branch { elements: chain.to_vec(), mixer_pad: pad }) {
                    self.remove_branch(old, &self.amix);
                }
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
                // GStreamer's detail names the cause (elements, timestamps, caps; never names).
                return Some(format!("{from}: {} ({})", e.error(), e.debug().unwrap_or_default()));
            }
        }
        None
    }

    /// Ends every input so the muxer finishes, waits for the end, and stops the pipeline.
    pub fn stop(self, timeout: Duration) -> Result<u64, ComposeError> {
        let duration = self.now_ms();
        // From now on the mixers take no more media: every input is dropped, then ended.
        for mixer in [&self.comp, &self.amix] {
            for pad in mixer.sink_pads() {
                pad.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST, |_, _| gst::PadProbeReturn::Drop);
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

    /// Adds a chain, links it into `mixer`, and only then starts it (downstream first), so no
    /// buffer ever meets an unlinked pad. Returns the mixer's pad.
    fn add_running(&self, chain: &[gst::Element], mixer: &gst::Element) -> Result<gst::Pad, ComposeError> {
        self.pipeline.add_many(chain).map_err(pipe_err)?;
        gst::Element::link_many(chain).map_err(pipe_err)?;
        let pad = link_to(chain.last().expect("a chain"), mixer)?;
        for e in chain.iter().rev() {
            e.sync_state_with_parent().map_err(pipe_err)?;
        }
        Ok(pad)
    }

    /// Takes a branch out: its mixer pad first (which unblocks its queue), then its elements.
    fn remove_branch(&self, branch: Branch, mixer: &gst::Element) {
        mixer.release_request_pad(&branch.mixer_pad);
        for e in &branch.elements {
            let _ = e.set_state(gst::State::Null);
        }
        let _ = self.pipeline.remove_many(&branch.elements);
    }

    /// Places every present peer's tile by the layout rules re-compositing uses.
    fn relayout(&self, peers: &[LivePeer]) {
        let present: Vec<&LivePeer> = peers.iter().filter(|p| p.present).collect();
        let always = Span { start_ms: 0, end_ms: u64::MAX };
        let index = |feed: u64| peers.iter().position(|p| p.feed == feed).unwrap_or(usize::MAX);
        let scene = Scene {
            tiles: present.iter().map(|p| Tile { kind: p.kind, peer: index(p.feed), visible: always }).collect(),
            area: Rect::new(0, 0, WIDTH, HEIGHT),
            mode: self.mode,
        };
        let focus = self.focus.lock().ok().and_then(|f| *f);
        let placed = scene.at(0, focus);
        for p in peers {
            let slot = present.iter().position(|q| q.feed == p.feed).and_then(|i| placed.iter().find(|(t, _)| *t == i)).map(|(_, r)| *r);
            let video = p.video.as_ref().map(|b| (&b.mixer_pad, p.video_live));
            for (pad, shown) in std::iter::once((&p.placeholder, true)).chain(video) {
                super::place(pad, slot, shown);
            }
        }
    }
}

/// A buffer's running time on `pad` in milliseconds (its timestamp through the pad's segment,
/// offsets included), where the mix will place it.
fn running_ms(pad: &gst::Pad, buf: &gst::BufferRef) -> Option<u64> {
    let pts = buf.pts()?;
    let seg = pad.sticky_event::<gst::event::Segment>(0)?;
    let seg = seg.segment().downcast_ref::<gst::ClockTime>()?;
    seg.to_running_time(pts).map(|t| t.mseconds())
}

/// Links `last`'s src pad to a new request pad of `mixer`.
fn link_to(last: &gst::Element, mixer: &gst::Element) -> Result<gst::Pad, ComposeError> {
    let pad = mixer.request_pad_simple("sink_%u").ok_or_else(|| ComposeError::Pipeline("mixer refused a pad".into()))?;
    last.static_pad("src").ok_or_else(|| ComposeError::Pipeline("element without src pad".into()))?.link(&pad).map_err(|e| pipe_err(format!("{e:?}")))?;
    Ok(pad)
}
