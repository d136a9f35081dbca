//! The compositor: builds and runs the GStreamer pipeline that turns a session into one muxed
//! stream handed, buffer by buffer, to a byte sink (the encrypted spill).
//!
//! ```text
//! videotestsrc (background, session length) ──────────────┐
//! per peer: videotestsrc (placeholder) ! textoverlay ──────┤
//! per track: filesrc ! decodebin ─┬─ video: convert ! scale ! textoverlay ─► compositor ─► profile.video ─┐
//!                                 └─ audio: convert ! resample ──────────► audiomixer ─► limiter ─► profile.audio ─► mux ─► appsink
//! audiotestsrc (silence, session length) ───────────────────────────────────┘              │
//! chat: videotestsrc (panel) ! textoverlay ◄─ appsrc (timestamped pango text) ─► compositor ─┘
//! ```
//!
//! Timing: every input is placed on the session clock with `pad.set_offset(start)`; a gate
//! probe on each branch drops media outside the peer's presence. The layout is applied in the
//! compositor's `samples-selected` signal, which fires for every output frame with that
//! frame's time, so layout changes land on exact frames even when the pipeline runs many times
//! faster than real time.
//!
//! Threads and locks: GStreamer streaming threads call the gate probes (which update the
//! `Shared` state under its mutex) and the `samples-selected` handler (which reads it). The
//! appsink callback owns the byte sink alone. The caller's thread runs the bus loop. No
//! callback holds the mutex while calling into GStreamer except to set pad properties, which
//! takes only the pad's object lock.
//!
//! Invariant: no element here writes a file. Media leaves only through the appsink.

pub mod chat;
pub mod layout;
pub mod live;
pub mod limiter;
pub mod profile;
pub mod speaker;

use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::session::{Session, Source};
use layout::{LayoutMode, Rect, Scene, Span, Tile, TileKind};
use profile::Profile;

pub const WIDTH: i32 = 1280;
pub const HEIGHT: i32 = 720;
pub const FPS: i32 = 30;
pub const AUDIO_RATE: i32 = 48_000;
pub const AUDIO_CHANNELS: i32 = 2;
const PANEL_W: i32 = 320;
/// Size every camera branch is scaled to before the compositor fits it into its tile.
const CAM_W: i32 = 640;
const CAM_H: i32 = 360;
const PLACEHOLDER_COLOURS: [u32; 4] = [0xff3a3f58, 0xff4a3a58, 0xff3a5850, 0xff58503a];

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("GStreamer is not usable: {0}")]
    Init(String),
    #[error("a GStreamer element is missing or failed to build: {0} (is the GStreamer plugin package installed?)")]
    Element(String),
    #[error("profile `{profile}`: {message}")]
    Profile { profile: String, message: String },
    #[error("pipeline: {0}")]
    Pipeline(String),
    #[error("the output sink failed: {0}")]
    Sink(String),
    #[error("cancelled")]
    Cancelled,
}

/// Initialises GStreamer once. Also makes sure the registry does not fork a scanner that
/// could inherit our descriptors.
pub fn init() -> Result<(), ComposeError> {
    gst::init().map_err(|e| ComposeError::Init(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub layout: LayoutMode,
    pub profile: Profile,
    pub chat_panel: bool,
    pub include_direct: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub duration_ms: u64,
    pub width: i32,
    pub height: i32,
    pub fps: i32,
    /// Human-readable, free of names and chat text.
    pub warnings: Vec<String>,
}

/// Receives the muxed output in order. Errors stop the pipeline.
pub type ByteSink = Box<dyn FnMut(&[u8]) -> Result<(), String> + Send>;

/// The shared end of every composite pipeline: compositor and audio mixer, the peak limiter,
/// the profile's encoders and muxer, and the appsink that hands muxed bytes to `sink`.
pub(crate) struct Output {
    pub comp: gst::Element,
    pub amix: gst::Element,
    /// The compositor's output caps filter (its src pad carries the raw composite).
    pub vcaps: gst::Element,
    pub sink_error: Arc<Mutex<Option<String>>>,
    pub appsink: gst_app::AppSink,
}

pub(crate) fn output(pipeline: &gst::Pipeline, profile: &Profile, sink: ByteSink) -> Result<Output, ComposeError> {
    let comp = make("compositor")?;
    comp.set_property_from_str("background", "black");
    comp.set_property("emit-signals", true);
    let amix = make("audiomixer")?;
    pipeline.add_many([&comp, &amix]).map_err(|e| ComposeError::Pipeline(e.to_string()))?;

    let profile_err = |message: String| ComposeError::Profile { profile: profile.name.clone(), message };
    let venc = profile.build_video().map_err(|e| profile_err(format!("video: {e}")))?;
    let aenc = profile.build_audio().map_err(|e| profile_err(format!("audio: {e}")))?;
    let mux = profile.build_mux().map_err(|e| profile_err(format!("mux: {e}")))?;
    let appsink = gst_app::AppSink::builder().sync(false).max_buffers(64).build();

    let vcaps = capsfilter(
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", WIDTH)
            .field("height", HEIGHT)
            .field("framerate", gst::Fraction::new(FPS, 1))
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    )?;
    let vq = make("queue")?;
    let vq2 = make("queue")?;
    let acaps = capsfilter(raw_audio_caps())?;
    let aq = make("queue")?;
    let aq2 = make("queue")?;
    pipeline
        .add_many([&vcaps, &vq, venc.upcast_ref(), &vq2, &acaps, &aq, aenc.upcast_ref(), &aq2, &mux, appsink.upcast_ref()])
        .map_err(|e| ComposeError::Pipeline(e.to_string()))?;
    gst::Element::link_many([&comp, &vcaps, &vq, venc.upcast_ref(), &vq2]).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
    gst::Element::link_many([&amix, &acaps, &aq, aenc.upcast_ref(), &aq2]).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
    vq2.link(&mux).map_err(|e| profile_err(format!("video does not link to the muxer: {e}")))?;
    aq2.link(&mux).map_err(|e| profile_err(format!("audio does not link to the muxer: {e}")))?;
    for (q, track) in [(&vq2, "video"), (&aq2, "audio")] {
        keep_in_order(&q.static_pad("src").expect("queue src"), track);
    }
    mux.link(&appsink).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
    // The encoder's priming plays first in the file: that much of the mix is left out at the
    // start so what follows keeps its place against the video (the muxer starts each track
    // at its first buffer, so moving timestamps would not do).
    if profile.audio_priming_ms > 0.0 {
        let frame_bytes = 4 * AUDIO_CHANNELS as usize;
        let skip = Mutex::new((profile.audio_priming_ms * AUDIO_RATE as f64 / 1000.0).round() as usize * frame_bytes);
        aq.static_pad("sink").expect("queue sink").add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Ok(mut skip) = skip.lock() else { return gst::PadProbeReturn::Remove };
            if *skip == 0 {
                return gst::PadProbeReturn::Remove;
            }
            let Some(gst::PadProbeData::Buffer(buf)) = &mut info.data else { return gst::PadProbeReturn::Ok };
            if buf.size() <= *skip {
                *skip -= buf.size();
                info.data = None; // consumed here (dropping it unrefs it)
                return gst::PadProbeReturn::Handled;
            }
            let Ok(map) = buf.map_readable() else { return gst::PadProbeReturn::Ok };
            let cut = gst::ClockTime::from_nseconds((*skip / frame_bytes) as u64 * 1_000_000_000 / AUDIO_RATE as u64);
            let mut rest = gst::Buffer::from_mut_slice(map[*skip..].to_vec());
            let (pts, duration) = (buf.pts(), buf.duration());
            drop(map);
            let r = rest.get_mut().expect("a new buffer");
            r.set_pts(pts.map(|p| p + cut));
            r.set_duration(duration.map(|d| d.saturating_sub(cut)));
            *buf = rest;
            *skip = 0;
            gst::PadProbeReturn::Ok
        });
    }

    // Peak limiter on the mixed audio.
    let limiter = Mutex::new(limiter::Limiter::new(AUDIO_RATE as u32, 80.0));
    acaps.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = &mut info.data {
            let buf = buf.make_mut();
            if let Ok(mut map) = buf.map_writable() {
                // SAFETY: any bit pattern is a valid f32; align_to_mut only hands out the
                // correctly aligned middle part. F32LE on a little-endian host is native.
                let (head, samples, tail) = unsafe { map.as_mut_slice().align_to_mut::<f32>() };
                if head.is_empty() && tail.is_empty() && cfg!(target_endian = "little") {
                    limiter.lock().unwrap().process(samples, 2);
                } else {
                    let bytes = map.as_mut_slice();
                    let mut copy: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                    limiter.lock().unwrap().process(&mut copy, 2);
                    for (b, s) in bytes.chunks_exact_mut(4).zip(copy) {
                        b.copy_from_slice(&s.to_le_bytes());
                    }
                }
            }
        }
        gst::PadProbeReturn::Ok
    });

    // Byte sink: every muxed buffer goes to the spill, in order.
    let sink_error = Arc::new(Mutex::new(None));
    let sink = Mutex::new(sink);
    let err_slot = sink_error.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buf) = sample.buffer() else { return Ok(gst::FlowSuccess::Ok) };
                let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut sink = sink.lock().map_err(|_| gst::FlowError::Error)?;
                if let Err(e) = sink(map.as_slice()) {
                    *err_slot.lock().unwrap() = Some(e);
                    return Err(gst::FlowError::Error);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    Ok(Output { comp, amix, vcaps, sink_error, appsink })
}

struct TrackBranch {
    /// For messages: `peers[i].tracks[j]`, never a name.
    field: String,
    decodebin: gst::Element,
    /// Heads of the pre-built branches (queue sink pads) by kind.
    video_in: Option<gst::Pad>,
    audio_in: Option<gst::Pad>,
    expected_end_ms: u64,
    last_ms: Arc<Mutex<u64>>,
}

struct Shared {
    speaker: speaker::SpeakerTracker,
}

/// A built pipeline, ready to run.
pub struct Compositor {
    pipeline: gst::Pipeline,
    tracks: Vec<TrackBranch>,
    duration_ms: u64,
    sink_error: Arc<Mutex<Option<String>>>,
}

fn make(factory: &str) -> Result<gst::Element, ComposeError> {
    gst::ElementFactory::make(factory).build().map_err(|_| ComposeError::Element(factory.to_owned()))
}

fn ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

fn frames_for(ms: u64) -> i32 {
    ((ms * FPS as u64 + 500) / 1000).max(1) as i32
}

/// Opaque I420 (no alpha channel), so the compositor can skip tiles hidden under others.
fn raw_video_caps(w: i32, h: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", w)
        .field("height", h)
        .field("framerate", gst::Fraction::new(FPS, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

fn raw_audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("rate", AUDIO_RATE)
        .field("channels", AUDIO_CHANNELS)
        .field("layout", "interleaved")
        .build()
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, ComposeError> {
    let f = make("capsfilter")?;
    f.set_property("caps", caps);
    Ok(f)
}

/// A solid-colour video source of `frames` frames at `w`x`h`.
fn solid_source(colour: u32, frames: i32, w: i32, h: i32) -> Result<Vec<gst::Element>, ComposeError> {
    let src = make("videotestsrc")?;
    src.set_property_from_str("pattern", "solid-color");
    src.set_property("foreground-color", colour);
    src.set_property("num-buffers", frames);
    Ok(vec![src, capsfilter(raw_video_caps(w, h))?])
}

/// A label drawn at the bottom-left of a tile.
fn label(text: &str, big: bool) -> Result<gst::Element, ComposeError> {
    let t = make("textoverlay")?;
    t.set_property("text", chat::markup_escape(text));
    t.set_property("font-desc", if big { "Sans Bold 28" } else { "Sans Bold 18" });
    t.set_property("shaded-background", true);
    if big {
        t.set_property_from_str("valignment", "center");
        t.set_property_from_str("halignment", "center");
    } else {
        t.set_property_from_str("valignment", "bottom");
        t.set_property_from_str("halignment", "left");
    }
    t.set_property_from_str("wrap-mode", "wordchar");
    Ok(t)
}

fn add_chain(pipeline: &gst::Pipeline, chain: &[gst::Element]) -> Result<(), ComposeError> {
    pipeline.add_many(chain).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
    gst::Element::link_many(chain).map_err(|e| ComposeError::Pipeline(e.to_string()))
}

/// Links `chain`'s last element to a new request pad of `mixer`, placed at `offset_ms`.
fn to_mixer(last: &gst::Element, mixer: &gst::Element, offset_ms: u64) -> Result<gst::Pad, ComposeError> {
    let pad = mixer.request_pad_simple("sink_%u").ok_or_else(|| ComposeError::Pipeline("mixer refused a pad".into()))?;
    let src = last.static_pad("src").ok_or_else(|| ComposeError::Pipeline("element without src pad".into()))?;
    src.link(&pad).map_err(|e| ComposeError::Pipeline(format!("link to mixer: {e:?}")))?;
    pad.set_offset(ns(offset_ms) as i64);
    Ok(pad)
}

/// Session time (ms) of a buffer leaving `pad`, given the offset the mixer pad will add.
fn session_ms(pad: &gst::Pad, pts: gst::ClockTime, offset_ms: u64) -> Option<u64> {
    let ev = pad.sticky_event::<gst::event::Segment>(0)?;
    let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
    let rt = seg.to_running_time(pts)?;
    Some(rt.mseconds() + offset_ms)
}

/// Drops buffers outside `span` (session time) and records the latest time seen.
/// `level` receives the RMS of audio buffers (for the active-speaker layout).
fn gate(pad: &gst::Pad, offset_ms: u64, span: Span, last_ms: Arc<Mutex<u64>>, level: Option<Box<dyn Fn(u64, f32) + Send + Sync>>) {
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else { return gst::PadProbeReturn::Ok };
        let Some(pts) = buf.pts() else { return gst::PadProbeReturn::Ok };
        let Some(t) = session_ms(pad, pts, offset_ms) else { return gst::PadProbeReturn::Ok };
        let end = t + buf.duration().map(|d| d.mseconds()).unwrap_or(0);
        if let Ok(mut l) = last_ms.lock() {
            *l = (*l).max(end);
        }
        if !span.contains(t) {
            return gst::PadProbeReturn::Drop;
        }
        if let (Some(level), Some(rms)) = (&level, rms_f32(buf)) {
            level(t, rms);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Drops an encoded buffer that would take its track back in time (or has no timestamp)
/// before the muxer sees it: the muxer would fail the whole recording for it, and one
/// frame less is the lesser harm (live inputs come and go under the mixers).
fn keep_in_order(pad: &gst::Pad, track: &'static str) {
    let last = Mutex::new(None::<gst::ClockTime>);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(buf) = info.buffer() else { return gst::PadProbeReturn::Ok };
        // The muxer needs a presentation time on every buffer (seen: a buffer without one, in
        // about one full test run of three with live inputs coming and going, failed it).
        let (Some(pts), ts) = (buf.pts(), buf.dts().or(buf.pts())) else {
            tracing::warn!(track, "an encoded buffer without a timestamp was dropped");
            return gst::PadProbeReturn::Drop;
        };
        let ts = ts.unwrap_or(pts);
        let Ok(mut last) = last.lock() else { return gst::PadProbeReturn::Ok };
        if last.is_some_and(|l| ts < l) {
            tracing::warn!(track, "an encoded buffer that went back in time was dropped");
            return gst::PadProbeReturn::Drop;
        }
        *last = Some(ts);
        gst::PadProbeReturn::Ok
    });
}

/// Puts a mixer pad's picture at `rect`, shown or hidden; without a rect it is hidden.
pub(crate) fn place(pad: &gst::Pad, rect: Option<Rect>, shown: bool) {
    if let Some(r) = rect {
        pad.set_property("xpos", r.x);
        pad.set_property("ypos", r.y);
        pad.set_property("width", r.w);
        pad.set_property("height", r.h);
    }
    pad.set_property("alpha", if rect.is_some() && shown { 1f64 } else { 0f64 });
}

/// RMS of a buffer of F32LE samples (None when empty or unreadable).
pub(crate) fn rms_f32(buf: &gst::BufferRef) -> Option<f32> {
    let map = buf.map_readable().ok()?;
    let n = map.len() / 4;
    (n > 0).then(|| {
        let sum: f32 = map.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).powi(2)).sum();
        (sum / n as f32).sqrt()
    })
}

impl Compositor {
    pub fn build(session: &Session, opts: &Options, sink: ByteSink) -> Result<Self, ComposeError> {
        init()?;
        let pipeline = gst::Pipeline::with_name("veil-compose");
        let dur = session.duration_ms;
        let total_frames = frames_for(dur);
        let recorded = session.chat.as_deref().map(|m| chat::recorded(m, opts.include_direct));
        let panel = opts.chat_panel && recorded.is_some();
        let area = if panel { Rect::new(0, 0, WIDTH - PANEL_W, HEIGHT) } else { Rect::new(0, 0, WIDTH, HEIGHT) };

        // --- mixers and output ------------------------------------------------------------
        let Output { comp, amix, vcaps, sink_error, .. } = output(&pipeline, &opts.profile, sink)?;

        // The output is exactly as long as the session: nothing at or after its end.
        let end = gst::ClockTime::from_mseconds(dur);
        vcaps.static_pad("src").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) if b.pts().is_some_and(|p| p >= end) => gst::PadProbeReturn::Drop,
                _ => gst::PadProbeReturn::Ok,
            }
        });

        // --- background and silence define the session length ----------------------------
        // A tiny invisible source: it only makes the compositor produce every frame from 0 to
        // the end; the compositor's own black background is what shows.
        let bg = solid_source(0xff000000, total_frames, 16, 16)?;
        add_chain(&pipeline, &bg)?;
        let bg_pad = to_mixer(bg.last().unwrap(), &comp, 0)?;
        bg_pad.set_property("zorder", 0u32);
        bg_pad.set_property("alpha", 0f64);

        let silence = make("audiotestsrc")?;
        silence.set_property_from_str("wave", "silence");
        silence.set_property("samplesperbuffer", AUDIO_RATE / 100);
        silence.set_property("num-buffers", dur.div_ceil(10) as i32);
        let silence_caps = capsfilter(raw_audio_caps())?;
        add_chain(&pipeline, &[silence, silence_caps.clone()])?;
        to_mixer(&silence_caps, &amix, 0)?;

        // --- tiles ---------------------------------------------------------------------------
        let audio_peers = session.peers.iter().enumerate().filter(|(_, p)| p.tracks.iter().any(|t| t.has_audio)).map(|(i, p)| {
            (i, Span { start_ms: p.joined_ms.min(dur), end_ms: p.left_ms.min(dur) })
        });
        let shared = Arc::new(Mutex::new(Shared { speaker: speaker::SpeakerTracker::new(audio_peers) }));
        let mut tiles = Vec::new();
        let mut tile_pads: Vec<Vec<gst::Pad>> = Vec::new();
        let mut tracks = Vec::new();
        for (pi, peer) in session.peers.iter().enumerate() {
            let presence = Span { start_ms: peer.joined_ms.min(dur), end_ms: peer.left_ms.min(dur) };
            if presence.start_ms >= presence.end_ms {
                continue;
            }
            // Placeholder under the camera: shows the name whenever there is no camera video.
            let mut ph = solid_source(PLACEHOLDER_COLOURS[pi % PLACEHOLDER_COLOURS.len()], frames_for(presence.end_ms - presence.start_ms), CAM_W, CAM_H)?;
            ph.push(label(peer.name.expose(), true)?);
            add_chain(&pipeline, &ph)?;
            let ph_pad = to_mixer(ph.last().unwrap(), &comp, presence.start_ms)?;
            ph_pad.set_property("zorder", 1u32);
            let cam_tile = tiles.len();
            tiles.push(Tile { kind: TileKind::Camera, peer: pi, visible: presence });
            tile_pads.push(vec![ph_pad]);

            for (ti, track) in peer.tracks.iter().enumerate() {
                let field = format!("peers[{pi}].tracks[{ti}]");
                let span = Span {
                    start_ms: track.start_ms.max(presence.start_ms),
                    end_ms: track.end_ms(presence.end_ms).max(track.start_ms.max(presence.start_ms)),
                };
                let src = make("filesrc")?;
                src.set_property("location", &track.path);
                let decodebin = make("decodebin")?;
                pipeline.add_many([&src, &decodebin]).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
                src.link(&decodebin).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
                let last_ms = Arc::new(Mutex::new(0u64));

                let mut video_in = None;
                if track.has_video {
                    let screen = track.source == Source::Screen;
                    let (w, h) = if screen { (WIDTH, HEIGHT) } else { (CAM_W, CAM_H) };
                    let q = make("queue")?;
                    let conv = make("videoconvert")?;
                    let scale = make("videoscale")?;
                    scale.set_property("add-borders", true);
                    let caps = capsfilter(raw_video_caps(w, h))?;
                    let lab = label(peer.name.expose(), false)?;
                    let chain = [q.clone(), conv, scale, caps, lab.clone()];
                    add_chain(&pipeline, &chain)?;
                    let pad = to_mixer(&lab, &comp, track.start_ms)?;
                    gate(&lab.static_pad("src").unwrap(), track.start_ms, presence, last_ms.clone(), None);
                    if screen {
                        pad.set_property("zorder", 3u32);
                        tiles.push(Tile { kind: TileKind::Screen, peer: pi, visible: span });
                        tile_pads.push(vec![pad]);
                    } else {
                        pad.set_property("zorder", 2u32);
                        tile_pads[cam_tile].push(pad);
                    }
                    video_in = q.static_pad("sink");
                }
                let mut audio_in = None;
                if track.has_audio {
                    let q = make("queue")?;
                    let conv = make("audioconvert")?;
                    let res = make("audioresample")?;
                    let caps = capsfilter(raw_audio_caps())?;
                    add_chain(&pipeline, &[q.clone(), conv, res, caps.clone()])?;
                    to_mixer(&caps, &amix, track.start_ms)?;
                    // Audio levels are measured only when the layout uses them.
                    let level = (opts.layout == LayoutMode::Speaker).then(|| {
                        let sh = shared.clone();
                        Box::new(move |t, rms| {
                            if let Ok(mut s) = sh.lock() {
                                s.speaker.update(pi, t, rms);
                            }
                        }) as Box<dyn Fn(u64, f32) + Send + Sync>
                    });
                    gate(&caps.static_pad("src").unwrap(), track.start_ms, presence, last_ms.clone(), level);
                    audio_in = q.static_pad("sink");
                }
                connect_decodebin(&decodebin, video_in.clone(), audio_in.clone());
                tracks.push(TrackBranch {
                    field,
                    decodebin,
                    video_in,
                    audio_in,
                    expected_end_ms: track.end_ms(dur),
                    last_ms,
                });
            }
        }

        // --- chat panel ----------------------------------------------------------------------
        if let (true, Some(messages)) = (panel, recorded.as_ref()) {
            let mut chain = solid_source(0xff1c1c24, total_frames, PANEL_W, HEIGHT)?;
            let overlay = make("textoverlay")?;
            overlay.set_property("font-desc", "Sans 12");
            overlay.set_property_from_str("valignment", "top");
            overlay.set_property_from_str("halignment", "left");
            overlay.set_property_from_str("line-alignment", "left");
            overlay.set_property_from_str("wrap-mode", "wordchar");
            overlay.set_property("shaded-background", false);
            overlay.set_property("xpad", 12i32);
            overlay.set_property("ypad", 12i32);
            chain.push(overlay.clone());
            add_chain(&pipeline, &chain)?;
            let pad = to_mixer(&overlay, &comp, 0)?;
            pad.set_property("xpos", WIDTH - PANEL_W);
            pad.set_property("zorder", 5u32);

            let text_caps = gst::Caps::builder("text/x-raw").field("format", "pango-markup").build();
            let appsrc = gst_app::AppSrc::builder().caps(&text_caps).format(gst::Format::Time).max_bytes(0).build();
            pipeline.add(&appsrc).map_err(|e| ComposeError::Pipeline(e.to_string()))?;
            appsrc
                .static_pad("src")
                .unwrap()
                .link(&overlay.static_pad("text_sink").unwrap())
                .map_err(|e| ComposeError::Pipeline(format!("chat text: {e:?}")))?;
            for frame in chat::panel_frames(messages, session.started_at, dur) {
                let mut buf = gst::Buffer::from_mut_slice(frame.markup.into_bytes());
                {
                    let b = buf.get_mut().unwrap();
                    b.set_pts(gst::ClockTime::from_mseconds(frame.start_ms));
                    b.set_duration(gst::ClockTime::from_mseconds(frame.end_ms - frame.start_ms));
                }
                appsrc.push_buffer(buf).map_err(|e| ComposeError::Pipeline(format!("chat text: {e:?}")))?;
            }
            appsrc.end_of_stream().map_err(|e| ComposeError::Pipeline(format!("chat text: {e:?}")))?;
        }

        // --- layout, applied per output frame -------------------------------------------------
        for pads in &tile_pads {
            for p in pads {
                p.set_property_from_str("sizing-policy", "keep-aspect-ratio");
                p.set_property("alpha", 0f64);
            }
        }
        let scene = Scene { tiles, area, mode: opts.layout };
        let applied: Mutex<Vec<Option<Option<Rect>>>> = Mutex::new(vec![None; tile_pads.len()]);
        comp.connect("samples-selected", false, move |args| {
            let seg = args.get(1).and_then(|v| v.get::<gst::Segment>().ok());
            let pts = args.get(2).and_then(|v| v.get::<u64>().ok());
            if let (Some(seg), Some(pts)) = (seg, pts) {
                let t = seg
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.to_running_time(gst::ClockTime::from_nseconds(pts)))
                    .map(|rt| rt.mseconds())
                    .unwrap_or(0);
                let speaker = match scene.mode {
                    LayoutMode::Speaker => shared.lock().ok().and_then(|mut s| s.speaker.current_at(t)),
                    _ => None,
                };
                let mut shown = vec![None; tile_pads.len()];
                for (i, r) in scene.at(t, speaker) {
                    shown[i] = Some(r);
                }
                // Pad properties are set only for tiles whose placement changed since the last frame.
                let Ok(mut applied) = applied.lock() else { return None };
                for ((pads, rect), last) in tile_pads.iter().zip(shown).zip(applied.iter_mut()) {
                    if *last == Some(rect) {
                        continue;
                    }
                    *last = Some(rect);
                    for p in pads {
                        place(p, rect, true);
                    }
                }
            }
            None
        });

        Ok(Self { pipeline, tracks, duration_ms: dur, sink_error })
    }

    /// Runs the pipeline to the end. `progress(position_ms, duration_ms)` is called a few
    /// times a second. A track that fails to decode ends that track; anything else is fatal.
    /// Plays the pipeline to its end. `cancel` stops it early with [`ComposeError::Cancelled`].
    pub fn run(self, cancel: &std::sync::atomic::AtomicBool, mut progress: impl FnMut(u64, u64)) -> Result<Report, ComposeError> {
        let mut warnings = Vec::new();
        let bus = self.pipeline.bus().expect("pipeline has a bus");
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| ComposeError::Pipeline(self.first_error(&bus).unwrap_or_else(|| "failed to start".into())))?;
        let result = loop {
            if cancel.load(std::sync::atomic::Ordering::SeqCst) {
                break Err(ComposeError::Cancelled);
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
                if let Some(pos) = self.pipeline.query_position::<gst::ClockTime>() {
                    progress(pos.mseconds().min(self.duration_ms), self.duration_ms);
                }
                continue;
            };
            use gst::MessageView;
            match msg.view() {
                MessageView::Eos(_) => break Ok(()),
                MessageView::Error(err) => {
                    let src = msg.src();
                    if let Some(t) = src.and_then(|s| self.tracks.iter().find(|t| s.has_as_ancestor(&t.decodebin) || *s == *t.decodebin.upcast_ref::<gst::Object>())) {
                        warnings.push(format!("{}: decoding stopped early ({}); the track ends there", t.field, err.error()));
                        for pad in [&t.video_in, &t.audio_in].into_iter().flatten() {
                            pad.send_event(gst::event::Eos::new());
                        }
                        continue;
                    }
                    if let Some(e) = self.sink_error.lock().unwrap().take() {
                        break Err(ComposeError::Sink(e));
                    }
                    let from = src.map(|s| s.name().to_string()).unwrap_or_default();
                    break Err(ComposeError::Pipeline(format!("{from}: {}", err.error())));
                }
                _ => {}
            }
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        progress(self.duration_ms, self.duration_ms);
        for t in &self.tracks {
            let last = *t.last_ms.lock().unwrap();
            if last + 500 < t.expected_end_ms && !warnings.iter().any(|w| w.starts_with(&t.field)) {
                warnings.push(format!(
                    "{}: media ends at {:.1} s, {:.1} s before its announced end (truncated file?); the tile ends there",
                    t.field,
                    last as f64 / 1000.0,
                    (t.expected_end_ms - last) as f64 / 1000.0
                ));
            }
        }
        Ok(Report { duration_ms: self.duration_ms, width: WIDTH, height: HEIGHT, fps: FPS, warnings })
    }

    fn first_error(&self, bus: &gst::Bus) -> Option<String> {
        let msg = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(100), &[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        }
    }
}

/// Links decodebin's dynamic pads to the pre-built branches; branches that get no stream
/// receive EOS when decodebin has exposed all its pads, so the mixers never wait for them.
fn connect_decodebin(decodebin: &gst::Element, video_in: Option<gst::Pad>, audio_in: Option<gst::Pad>) {
    let (v, a) = (video_in.clone(), audio_in.clone());
    decodebin.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
        let name = caps.as_ref().and_then(|c| c.structure(0)).map(|s| s.name().to_string()).unwrap_or_default();
        let target = if name.starts_with("video/") { &v } else if name.starts_with("audio/") { &a } else { &None };
        if let Some(sink) = target {
            if !sink.is_linked() {
                let _ = pad.link(sink);
            }
        }
    });
    decodebin.connect_no_more_pads(move |_| {
        for sink in [&video_in, &audio_in].into_iter().flatten() {
            if !sink.is_linked() {
                sink.send_event(gst::event::Eos::new());
            }
        }
    });
}
