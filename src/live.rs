//! One live recording: a Janus VideoRoom joined as a hidden participant → live compositor →
//! the same encrypted spill, streaming upload and webhooks as re-compositing.
//!
//! The loop below reads as the whole live flow: take the source's events (peers joining and
//! leaving, their media pads, their messages; `session::source`), turn them into tiles and
//! mixer inputs and chat, watch cameras that stop, and stop on a stop request, the session's
//! end, no peer for `empty_timeout`, or `max_duration`. The source here is a Janus VideoRoom
//! (`session::janus::JanusSource`); nothing below depends on that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::compose::layout::TileKind;
use crate::compose::{self, chat, live::LiveCompositor, profile::Profile};
use crate::notify::Notifier;
use crate::privacy::Redacted;
use crate::recording::{classify, OutputObject, RecordingError, RecordingResult, ReprocessOptions};
use crate::session::janus::JanusSource;
use crate::session::replay::FilesReplay;
use crate::session::source::{LiveSource, SourceEvent};
use crate::session::{ChatMessage, Peer, Session};
use crate::spill::SpillKey;
use crate::upload::object_key;
use crate::upload::stream::{ObjectStream, StreamError};
use crate::webhook::random_id;

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub source: LiveSourceSpec,
    pub max_duration: Duration,
    pub empty_timeout: Duration,
    /// Set to stop the recording and deliver it (SIGINT/SIGTERM for `veil record`).
    pub stop: Arc<AtomicBool>,
}

/// What is recorded live.
#[derive(Debug, Clone)]
pub enum LiveSourceSpec {
    /// A Janus VideoRoom (HTTP API URL, room, optional pin).
    Janus { url: String, room: u64, pin: Option<Redacted<String>> },
    /// A session folder played in real time (`session::replay`).
    Replay { dir: std::path::PathBuf },
}

/// Why the recording ended (in the result's warnings).
fn ended(reason: &str) -> String {
    format!("recording ended: {reason}")
}

struct PeerLog {
    feed: u64,
    name: Redacted<String>,
    joined_ms: u64,
    left_ms: Option<u64>,
}

/// Records a live room into the destination, with webhooks for start, success and failure.
pub fn record(live: &LiveOptions, opts: &ReprocessOptions) -> Result<RecordingResult, RecordingError> {
    let recording_id = random_id("rec");
    let notifier = Notifier::start(opts.webhooks.clone(), &recording_id);
    let started_at = Utc::now();
    let (mut session, replayed) = match &live.source {
        LiveSourceSpec::Janus { room, .. } => {
            let s = Session {
                session_id: format!("janus-{room}-{}", started_at.timestamp()),
                room_id: room.to_string(),
                room_name: Redacted::new(room.to_string()),
                started_at,
                duration_ms: 0,
                peers: Vec::new(),
                chat: None,
            };
            (s, None)
        }
        LiveSourceSpec::Replay { dir } => match crate::session::files::load(dir) {
            Ok(folder) => {
                let s = Session { started_at, duration_ms: 0, peers: Vec::new(), chat: None, ..folder.clone() };
                (s, Some(folder))
            }
            Err(e) => {
                let e = RecordingError::from(e);
                notifier.failed(None, &classify(&e));
                notifier.finish();
                return Err(e);
            }
        },
    };
    notifier.started(&session);
    let outcome = run(live, replayed, opts, &recording_id, &mut session);
    match &outcome {
        Ok(result) => notifier.success(&session, result, &opts.destination),
        Err(e) => notifier.failed(Some(&session), &classify(e)),
    }
    let report = notifier.finish();
    outcome.map(|mut r| {
        r.webhooks = report;
        r
    })
}

fn run(live: &LiveOptions, replayed: Option<Session>, opts: &ReprocessOptions, recording_id: &str, session: &mut Session) -> Result<RecordingResult, RecordingError> {
    compose::init()?;
    let profile = Profile::load(&opts.profile)?;
    crate::recording::prepare_spill_dir(&opts.spill_dir)?;
    let dest = &opts.destination;
    let key = SpillKey::generate()?;
    let upload_err = |key: &str| {
        let key = key.to_owned();
        move |cause: StreamError| RecordingError::Upload { key, cause }
    };
    // Stopping a live recording delivers it; only a failure aborts the upload.
    let never = Arc::new(AtomicBool::new(false));
    let stream = |object_key: &str, content_type: &str| {
        let (d, k, ct) = (dest.clone(), object_key.to_owned(), content_type.to_owned());
        ObjectStream::start(Box::new(move || d.begin(&k, &ct)), (dest.first_part_size(), dest.part_size()), &opts.spill_dir, &key, opts.retry, never.clone())
    };

    let video_key = object_key(dest.prefix(), "composite", &session.room_id, session.started_at, &profile.extension);
    let out: Arc<Mutex<Option<ObjectStream>>> = Arc::new(Mutex::new(Some(stream(&video_key, &profile.content_type))));
    let sink_out = out.clone();
    let mut last_seal = Instant::now();
    let sink = move |bytes: &[u8]| -> Result<(), String> {
        let mut guard = sink_out.lock().map_err(|_| "output lock poisoned".to_string())?;
        let s = guard.as_mut().ok_or("the upload was not started")?;
        s.write(bytes).map_err(|e| e.to_string())?;
        if s.buffered() >= 256 * 1024 || last_seal.elapsed() >= Duration::from_secs(1) {
            s.flush().map_err(|e| e.to_string())?;
            last_seal = Instant::now();
        }
        Ok(())
    };
    let comp = LiveCompositor::start(&profile, opts.layout, Box::new(sink))?;
    // The recording's time zero is the pipeline's: chat times and `started_at` count from it.
    session.started_at = Utc::now() - chrono::Duration::milliseconds(comp.now_ms() as i64);
    let mut source: Box<dyn LiveSource> = match (&live.source, replayed) {
        (LiveSourceSpec::Replay { .. }, Some(folder)) => Box::new(FilesReplay::new(folder, comp.pipeline())),
        (LiveSourceSpec::Janus { url, room, pin }, _) => Box::new(
            JanusSource::join(url, *room, pin.clone(), comp.pipeline(), live.stop.clone(), Instant::now() + live.max_duration)
                .map_err(|e| RecordingError::Live(e.to_string()))?,
        ),
        (LiveSourceSpec::Replay { .. }, None) => return Err(RecordingError::Live("the replayed session was not loaded".into())),
    };
    let mut peers: Vec<PeerLog> = Vec::new();
    let mut chat: Vec<ChatMessage> = Vec::new();
    let mut ignored = 0usize;
    let mut warnings = Vec::new();
    let mut reconnects = 0u32;
    let begun = Instant::now();
    let mut empty_since = Some(Instant::now());

    let reason = loop {
        if live.stop.load(Ordering::SeqCst) {
            break ended("stop requested");
        }
        if begun.elapsed() >= live.max_duration {
            break ended("maximum duration reached");
        }
        if source.present() == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= live.empty_timeout {
                break ended("no publisher left");
            }
        } else {
            empty_since = None;
        }
        if let Some(e) = comp.poll_error() {
            return Err(RecordingError::Compose(compose::ComposeError::Pipeline(e)));
        }
        for (feed, live) in comp.watch_video() {
            tracing::info!(feed, "camera {}", if live { "sending" } else { "stopped: placeholder shown" });
        }
        let event = source.next_event(Duration::from_millis(100)).map_err(|e| RecordingError::Live(e.to_string()))?;
        match event {
            Some(SourceEvent::PeerJoined { peer, name, screen }) => {
                let now = comp.now_ms();
                if let Some(old) = comp.take_over(peer, &name) {
                    tracing::info!(feed = peer, previous = old, "publisher reconnected");
                    if let Some(p) = peers.iter_mut().rev().find(|p| p.feed == old && p.left_ms.is_none()) {
                        p.left_ms = Some(now);
                    }
                } else {
                    comp.add_peer(peer, &name, if screen { TileKind::Screen } else { TileKind::Camera })?;
                }
                peers.push(PeerLog { feed: peer, name, joined_ms: now, left_ms: None });
            }
            Some(SourceEvent::PeerLeft { peer }) => {
                comp.remove_peer(peer);
                let now = comp.now_ms();
                if let Some(p) = peers.iter_mut().rev().find(|p| p.feed == peer && p.left_ms.is_none()) {
                    p.left_ms = Some(now);
                }
            }
            Some(SourceEvent::MediaLost { peer }) => comp.drop_media(peer),
            Some(SourceEvent::Track { peer, kind, pad, hold }) => {
                if let Err(e) = comp.add_media(peer, &kind, &pad) {
                    warnings.push(e.to_string());
                }
                drop(hold);
            }
            Some(SourceEvent::Message { peer, text, .. }) => {
                let sent_ms = comp.now_ms();
                let name = peers.iter().rev().find(|p| p.feed == peer).map(|p| p.name.clone()).unwrap_or_default();
                match parse_chat(text.expose()) {
                    Some((id, to, message)) => chat.push(ChatMessage {
                        id,
                        sent_ms,
                        sender_peer_id: peer.to_string(),
                        sender_name: name,
                        sender_user_id: String::new(),
                        roles: Vec::new(),
                        kind: "chat".into(),
                        to,
                        message,
                    }),
                    None => ignored += 1,
                }
            }
            Some(SourceEvent::Reconnected) => reconnects += 1,
            Some(SourceEvent::Closed { reason }) => break ended(&reason),
            None => {}
        }
    };
    tracing::info!(reason = %reason, "live recording stopping");
    warnings.insert(0, reason);
    if reconnects > 0 {
        warnings.push(format!("the signaling connection was lost and rejoined {reconnects} time(s); media of that time is missing"));
    }
    if ignored > 0 {
        warnings.push(format!("{ignored} data-channel message(s) that were not chat were ignored"));
    }
    let duration_ms = comp.stop(Duration::from_secs(20))?;
    drop(source);

    let video = out.lock().ok().and_then(|mut o| o.take()).ok_or(RecordingError::Upload { key: video_key.clone(), cause: StreamError::Stopped })?;
    let video_obj = video.finish().map_err(upload_err(&video_key))?;
    let mut objects = vec![OutputObject { kind: "composite", object: video_obj }];

    session.duration_ms = duration_ms;
    session.peers = peers
        .iter()
        .map(|p| Peer {
            peer_id: p.feed.to_string(),
            name: p.name.clone(),
            user_id: String::new(),
            role: "publisher".into(),
            joined_ms: p.joined_ms,
            left_ms: p.left_ms.unwrap_or(duration_ms),
            tracks: Vec::new(),
        })
        .collect();
    session.chat = Some(chat);
    if opts.chat {
        let messages = session.chat.as_deref().unwrap_or_default();
        let chat_key = object_key(dest.prefix(), "chat", &session.room_id, session.started_at, "csv");
        let csv = zeroize::Zeroizing::new(chat::csv(&chat::recorded(messages, opts.include_direct), session.started_at));
        let mut s = stream(&chat_key, "text/csv; charset=utf-8");
        s.write(csv.as_bytes()).map_err(upload_err(&chat_key))?;
        objects.push(OutputObject { kind: "chat", object: s.finish().map_err(upload_err(&chat_key))? });
    }
    drop(key);
    Ok(RecordingResult {
        status: "success",
        recording_id: recording_id.to_owned(),
        session_id: session.session_id.clone(),
        room_id: session.room_id.clone(),
        started_at: session.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms,
        width: compose::WIDTH,
        height: compose::HEIGHT,
        fps: compose::FPS,
        profile: profile.name.clone(),
        objects,
        warnings,
        webhooks: None,
    })
}

/// `{"type": "chat", "id": …, "to": null | [peer ids], "message": …}`; anything else is None.
fn parse_chat(text: &str) -> Option<(String, Option<Vec<String>>, Redacted<String>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["type"] != "chat" {
        return None;
    }
    let message = v["message"].as_str()?.to_owned();
    let id = v["id"].as_str().map(str::to_owned).unwrap_or_else(|| random_id("msg"));
    let to = v["to"].as_array().map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned).or_else(|| p.as_u64().map(|n| n.to_string()))).collect());
    Some((id, to, Redacted::new(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_messages_are_parsed_and_others_ignored() {
        let (id, to, m) = parse_chat(r#"{"type": "chat", "id": "m1", "to": null, "message": "hi"}"#).unwrap();
        assert_eq!((id.as_str(), to, m.expose().as_str()), ("m1", None, "hi"));
        let (_, to, _) = parse_chat(r#"{"type": "chat", "id": "m2", "to": ["7", 8], "message": "psst"}"#).unwrap();
        assert_eq!(to, Some(vec!["7".to_string(), "8".to_string()]));
        assert!(parse_chat(r#"{"type": "typing"}"#).is_none());
        assert!(parse_chat("not json").is_none());
    }
}
