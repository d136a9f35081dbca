//! `veil-publisher`: a synthetic Janus VideoRoom publisher for tests and demos.
//!
//! Publishes a test pattern with a visible running clock (VP8), a sine tone at a chosen
//! frequency (Opus) and a data channel on which it sends chat messages at chosen times, then
//! leaves after `--duration`. It can stop sending video for a while (`--mute-video`), publish
//! as a screen share (`--screen`: the video stream's description says so), and send a white
//! flash with a beep at the start of every second instead (`--flash`, for lip-sync
//! measurement). WebRTC by GStreamer's webrtcbin; signaling by veil's Janus client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use serde_json::json;
use veil::session::janus::Client;

#[derive(Parser)]
#[command(name = "veil-publisher", about = "Synthetic VideoRoom publisher: test pattern with a clock, a tone, chat")]
struct Args {
    /// Janus HTTP API, e.g. http://10.201.7.2:8088/janus
    #[arg(long)]
    janus: String,
    #[arg(long, default_value_t = 1234)]
    room: u64,
    #[arg(long)]
    display: String,
    /// Tone frequency in Hz (0: no audio).
    #[arg(long, default_value_t = 440.0)]
    freq: f64,
    /// videotestsrc pattern (a name such as `red` or `ball`, or a number); `none`: no video.
    #[arg(long, default_value = "ball")]
    pattern: String,
    /// Seconds to publish before leaving.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// A chat message `SECONDS:TEXT`, sent on the data channel that many seconds after the
    /// connection is up (repeatable).
    #[arg(long = "chat")]
    chat: Vec<String>,
    /// Append the display name of every participant the room announces to this file, one per
    /// line (tests check that the hidden worker is never announced).
    #[arg(long)]
    seen_log: Option<std::path::PathBuf>,
    /// Append `published UNIX_MS` when the room accepted the stream and `left UNIX_MS` when
    /// leaving to this file (tests compare them with the recording's timeline).
    #[arg(long)]
    events_log: Option<std::path::PathBuf>,
    /// Stop sending video from FROM to TO seconds after the connection is up (as a muted
    /// camera does); repeatable.
    #[arg(long = "mute-video", value_name = "FROM:TO")]
    mute_video: Vec<String>,
    /// Stop sending audio from FROM to TO seconds after the connection is up; repeatable.
    #[arg(long = "mute-audio", value_name = "FROM:TO")]
    mute_audio: Vec<String>,
    /// Publish the video as a screen share (stream description "screen").
    #[arg(long)]
    screen: bool,
    /// Black video with a white flash, and silence with a 1 kHz beep, both during the first
    /// 100 ms of every second of the pipeline clock (overrides --pattern and --freq).
    #[arg(long)]
    flash: bool,
}

/// Length of the flash and of the beep in `--flash` mode.
const FLASH: gst::ClockTime = gst::ClockTime::from_mseconds(100);

enum Signal {
    Offer(String),
    Candidate(u32, String),
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    gst::init()?;
    let mut chats: Vec<(f64, String)> = a
        .chat
        .iter()
        .map(|c| {
            let (t, m) = c.split_once(':').ok_or_else(|| anyhow!("--chat takes SECONDS:TEXT"))?;
            Ok((t.parse::<f64>().context("--chat seconds")?, m.to_owned()))
        })
        .collect::<anyhow::Result<_>>()?;
    chats.sort_by(|x, y| x.0.total_cmp(&y.0));
    let spans = |list: &[String], flag: &str| -> anyhow::Result<Vec<(f64, f64)>> {
        list.iter()
            .map(|m| {
                let (f, t) = m.split_once(':').ok_or_else(|| anyhow!("{flag} takes FROM:TO"))?;
                Ok((f.parse::<f64>().with_context(|| format!("{flag} FROM"))?, t.parse::<f64>().with_context(|| format!("{flag} TO"))?))
            })
            .collect()
    };
    let mutes = [(spans(&a.mute_video, "--mute-video")?, "vmute"), (spans(&a.mute_audio, "--mute-audio")?, "amute")];

    let (client, events) = Client::connect(&a.janus)?;
    let handle = client.attach("janus.plugin.videoroom")?;
    let (joined, _) = client.request(handle, "join", json!({"request": "join", "ptype": "publisher", "room": a.room, "display": a.display}), None, Duration::from_secs(10))?;
    if joined["videoroom"] != "joined" {
        bail!("join: unexpected answer");
    }
    let note_seen = |data: &serde_json::Value| {
        if let Some(path) = &a.seen_log {
            let mut names = String::new();
            for list in ["publishers", "attendees"] {
                for p in data[list].as_array().into_iter().flatten() {
                    names.push_str(p["display"].as_str().unwrap_or("?"));
                    names.push('\n');
                }
            }
            if data["joining"].is_object() {
                names.push_str(data["joining"]["display"].as_str().unwrap_or("?"));
                names.push('\n');
            }
            if !names.is_empty() {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    let _ = f.write_all(names.as_bytes());
                }
            }
        }
    };
    note_seen(&joined);

    let mut desc = String::from("webrtcbin name=webrtc bundle-policy=max-bundle ");
    if a.flash {
        desc.push_str("videotestsrc name=vsrc is-live=true pattern=black ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! valve name=vmute ! vp8enc deadline=1 target-bitrate=600000 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! webrtc. ");
        desc.push_str("audiotestsrc name=asrc is-live=true wave=sine freq=1000 volume=0.5 samplesperbuffer=480 ! audio/x-raw,format=F32LE,rate=48000,channels=1,layout=interleaved ! audioconvert ! opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc. ");
    } else if a.pattern != "none" {
        desc.push_str(&format!(
            "videotestsrc is-live=true pattern={} ! video/x-raw,width=640,height=360,framerate=30/1 ! timeoverlay halignment=center valignment=center font-desc=\"Sans 36\" ! valve name=vmute ! videoconvert ! vp8enc deadline=1 target-bitrate=600000 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! webrtc. ",
            a.pattern
        ));
    }
    if a.freq > 0.0 && !a.flash {
        desc.push_str(&format!(
            "audiotestsrc is-live=true wave=sine freq={} volume=0.4 ! valve name=amute ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc. ",
            a.freq
        ));
    }
    let pipeline = gst::parse::launch(&desc)?.downcast::<gst::Pipeline>().map_err(|_| anyhow!("not a pipeline"))?;
    let webrtc = pipeline.by_name("webrtc").ok_or_else(|| anyhow!("no webrtcbin"))?;
    if a.flash {
        add_flash_and_beep(&pipeline)?;
    }
    let valves: Vec<(Vec<(f64, f64)>, gst::Element)> = mutes.into_iter().filter_map(|(m, name)| pipeline.by_name(name).map(|v| (m, v))).collect();
    let (tx, rx) = channel::<Signal>();

    pipeline.set_state(gst::State::Ready)?;
    let data = webrtc.emit_by_name::<Option<gst_webrtc::WebRTCDataChannel>>("create-data-channel", &[&"chat", &None::<gst::Structure>]);
    {
        let tx = tx.clone();
        webrtc.connect("on-negotiation-needed", false, move |values| {
            let w = values[0].get::<gst::Element>().expect("webrtcbin");
            offer(&w, tx.clone());
            None
        });
    }
    {
        let tx = tx.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values[1].get::<u32>().unwrap_or(0);
            let cand = values[2].get::<String>().unwrap_or_default();
            let _ = tx.send(Signal::Candidate(mline, cand));
            None
        });
    }
    pipeline.set_state(gst::State::Playing)?;

    let bus = pipeline.bus().ok_or_else(|| anyhow!("no bus"))?;
    let start = Instant::now();
    let mut up: Option<Instant> = None;
    let mut next_chat = 0;
    loop {
        if start.elapsed() > Duration::from_secs_f64(a.duration + 30.0) && up.is_none() {
            bail!("the connection never came up");
        }
        if let Some(t) = up {
            if t.elapsed() >= Duration::from_secs_f64(a.duration) {
                break;
            }
            for (spans, valve) in &valves {
                let muted = spans.iter().any(|&(f, to)| (f..to).contains(&t.elapsed().as_secs_f64()));
                if valve.property::<bool>("drop") != muted {
                    valve.set_property("drop", muted);
                }
            }
            while next_chat < chats.len() && t.elapsed() >= Duration::from_secs_f64(chats[next_chat].0) {
                let msg = json!({"type": "chat", "id": format!("m{next_chat}"), "to": null, "message": chats[next_chat].1});
                if let Some(d) = &data {
                    if let Err(e) = d.send_string_full(Some(&msg.to_string())) {
                        eprintln!("veil-publisher: chat not sent: {e}");
                    }
                }
                next_chat += 1;
            }
        }
        while let Ok(ev) = events.try_recv() {
            if let Some(d) = &ev.data {
                note_seen(d);
            }
        }
        while let Ok(s) = rx.try_recv() {
            match s {
                Signal::Offer(sdp) => {
                    let mut body = json!({"request": "publish"});
                    if a.screen {
                        if let Some(mid) = video_mid(&sdp) {
                            body["descriptions"] = json!([{"mid": mid, "description": "screen"}]);
                        }
                    }
                    let (_, jsep) = client.request(handle, "publish", body, Some(json!({"type": "offer", "sdp": sdp})), Duration::from_secs(10))?;
                    log_event(&a.events_log, "published");
                    let answer = jsep.and_then(|j| j["sdp"].as_str().map(str::to_owned)).ok_or_else(|| anyhow!("publish: no answer SDP"))?;
                    let msg = gst_sdp::SDPMessage::parse_buffer(answer.as_bytes()).map_err(|_| anyhow!("publish: bad answer SDP"))?;
                    let desc = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
                    webrtc.emit_by_name::<()>("set-remote-description", &[&desc, &None::<gst::Promise>]);
                }
                Signal::Candidate(mline, c) => {
                    let _ = client.trickle(handle, json!({"candidate": c, "sdpMLineIndex": mline}));
                }
            }
        }
        if up.is_none() {
            let state = webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state");
            if state == gst_webrtc::WebRTCPeerConnectionState::Connected {
                up = Some(Instant::now());
                eprintln!("veil-publisher: connected");
            }
        }
        if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(20), &[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                bail!("pipeline: {}", e.error());
            }
        }
    }
    log_event(&a.events_log, "left");
    let _ = client.request(handle, "leave", json!({"request": "leave"}), None, Duration::from_secs(5));
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}

fn log_event(path: &Option<std::path::PathBuf>, what: &str) {
    use std::io::Write;
    let Some(path) = path else { return };
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{what} {ms}");
    }
}

/// The `a=mid` of the offer's video section.
fn video_mid(sdp: &str) -> Option<String> {
    let section = sdp.split("\r\nm=").find(|m| m.starts_with("video"))?;
    section.lines().find_map(|l| l.strip_prefix("a=mid:")).map(|m| m.trim().to_owned())
}

/// First video timestamp of `--flash` mode (`u64::MAX` until the first frame).
static VIDEO_BASE: AtomicU64 = AtomicU64::new(u64::MAX);
const FPS: u64 = 30;

/// Whitens the video frames of the first [`FLASH`] of every second of running time, and
/// keeps the tone only from the first such frame's timestamp for as long: the beep starts at
/// the source exactly when the flash does (frames fall on a 1/30 s grid, the audio does not).
fn add_flash_and_beep(pipeline: &gst::Pipeline) -> anyhow::Result<()> {
    let vsrc = pipeline.by_name("vsrc").and_then(|e| e.static_pad("src")).ok_or_else(|| anyhow!("no video source"))?;
    vsrc.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = &mut info.data {
            let Some(pts) = buf.pts() else { return gst::PadProbeReturn::Ok };
            let _ = VIDEO_BASE.compare_exchange(u64::MAX, pts.nseconds(), Ordering::SeqCst, Ordering::SeqCst);
            if pts.nseconds() % 1_000_000_000 < FLASH.nseconds() {
                let b = buf.make_mut();
                if let Ok(mut map) = b.map_writable() {
                    let luma = 640 * 360;
                    map[..luma].fill(235);
                    map[luma..].fill(128);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    let asrc = pipeline.by_name("asrc").and_then(|e| e.static_pad("src")).ok_or_else(|| anyhow!("no audio source"))?;
    asrc.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buf)) = &mut info.data {
            let Some(pts) = buf.pts() else { return gst::PadProbeReturn::Ok };
            let base = VIDEO_BASE.load(Ordering::SeqCst);
            let b = buf.make_mut();
            if let Ok(mut map) = b.map_writable() {
                for (i, s) in map.chunks_exact_mut(4).enumerate() {
                    let t = pts.nseconds() + i as u64 * 1_000_000_000 / 48_000;
                    if !beeping(t, base) {
                        s.copy_from_slice(&0f32.to_le_bytes());
                    }
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Whether the beep sounds at `t` (ns): from the first video frame at or after the start of
/// `t`'s second, for [`FLASH`].
fn beeping(t: u64, base: u64) -> bool {
    if base == u64::MAX {
        return false;
    }
    let second = t / 1_000_000_000 * 1_000_000_000;
    if second < base {
        return false;
    }
    // Frame n has timestamp base + n/FPS s (rounded down, as videotestsrc computes it).
    let n = ((second - base) * FPS).div_ceil(1_000_000_000);
    let mut first = base + n * 1_000_000_000 / FPS;
    if first < second {
        first = base + (n + 1) * 1_000_000_000 / FPS;
    }
    (first..first + FLASH.nseconds()).contains(&t)
}

fn offer(webrtc: &gst::Element, tx: Sender<Signal>) {
    let w = webrtc.clone();
    let promise = gst::Promise::with_change_func(move |reply| {
        let Ok(Some(reply)) = reply else { return };
        let Ok(offer) = reply.value("offer").map(|v| v.get::<gst_webrtc::WebRTCSessionDescription>()) else { return };
        let Ok(offer) = offer else { return };
        w.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        if let Ok(text) = offer.sdp().as_text() {
            let _ = tx.send(Signal::Offer(text));
        }
    });
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
}
