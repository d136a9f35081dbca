//! The live source's signaling against a real Janus (Debian `janus`, private config, in a
//! network namespace the test creates): the worker joins as a hidden participant.

mod common;
#[path = "common/janus.rs"]
mod janus;

use std::time::{Duration, Instant};

use serde_json::json;
use veil::session::janus::{join_hidden, Client, HIDDEN_DISPLAY};

const ROOM: u64 = 1234;

#[test]
fn the_worker_joins_hidden_and_participants_are_not_told() {
    let j = janus::Janus::start();
    // An ordinary participant is in the room first.
    let (alice, alice_events) = Client::connect(&j.url).unwrap();
    let ah = alice.attach("janus.plugin.videoroom").unwrap();
    let (joined, _) = alice.request(ah, "join", json!({"request": "join", "ptype": "publisher", "room": ROOM, "display": "Alice"}), None, Duration::from_secs(5)).unwrap();
    assert_eq!(joined["videoroom"], "joined");

    let (worker, _worker_events) = Client::connect(&j.url).unwrap();
    let me = join_hidden(&worker, ROOM, None).unwrap();
    assert!(me.initial.is_empty(), "nobody publishes media yet");

    // Alice hears nothing about the worker (the room runs with notify_joining off).
    let end = Instant::now() + Duration::from_millis(1500);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Ok(ev) = alice_events.recv_timeout(left) {
            let text = format!("{:?}", ev.data);
            assert!(!text.contains(HIDDEN_DISPLAY) && !text.contains(&me.feed.to_string()), "a participant was told about the worker: {text}");
        }
    }

    // Applications can find (and filter) it by its fixed display name.
    let (list, _) = alice.request(ah, "listparticipants", json!({"request": "listparticipants", "room": ROOM}), None, Duration::from_secs(5)).unwrap();
    let names: Vec<&str> = list["participants"].as_array().unwrap().iter().filter_map(|p| p["display"].as_str()).collect();
    assert!(names.contains(&HIDDEN_DISPLAY), "{names:?}");
    assert!(names.contains(&"Alice"));

    // Leaving destroys the session; the worker is gone from the list.
    drop(worker);
    let t = Instant::now();
    loop {
        let (list, _) = alice.request(ah, "listparticipants", json!({"request": "listparticipants", "room": ROOM}), None, Duration::from_secs(5)).unwrap();
        let still = list["participants"].as_array().unwrap().iter().any(|p| p["display"] == HIDDEN_DISPLAY);
        if !still {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "the worker stayed listed after leaving");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn errors_name_the_request_and_a_wrong_room_is_refused() {
    let j = janus::Janus::start();
    let (worker, _ev) = Client::connect(&j.url).unwrap();
    let e = match join_hidden(&worker, 999_999, None) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("joined a room that does not exist"),
    };
    assert!(e.contains("join refused: error 426"), "{e}");
    let e = Client::connect("http://127.0.0.1:9/janus").err().unwrap().to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn the_hidden_worker_learns_of_publishers_joining_and_leaving() {
    let j = janus::Janus::start();
    let (worker, events) = Client::connect(&j.url).unwrap();
    let me = join_hidden(&worker, ROOM, None).unwrap();
    // A synthetic publisher (webrtcbin) inside the namespace publishes for 3 s, then leaves.
    let mut publisher = std::process::Command::new("ip")
        .args(["netns", "exec", &j.netns])
        .arg(env!("CARGO_BIN_EXE_veil-publisher"))
        .args(["--janus", &j.url, "--display", "Zoë \"the patient\"", "--freq", "660", "--duration", "3"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = None;
    let mut left = false;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end && !left {
        let Ok(ev) = events.recv_timeout(Duration::from_millis(200)) else { continue };
        if ev.handle != Some(me.handle) {
            continue;
        }
        let Some(data) = ev.data else { continue };
        let pubs = veil::session::janus::publishers(&data);
        if let Some(p) = pubs.first() {
            let mut kinds: Vec<&str> = p.streams.iter().map(|(_, k)| k.as_str()).collect();
            kinds.sort();
            assert_eq!(kinds, ["audio", "data", "video"], "the publisher's streams");
            assert_eq!(p.display.expose(), "Zoë \"the patient\"");
            seen = Some(p.feed);
        }
        if let Some(feed) = seen {
            if data["unpublished"].as_u64() == Some(feed) || data["leaving"].as_u64() == Some(feed) {
                left = true;
            }
        }
    }
    let status = publisher.wait().unwrap();
    assert!(status.success(), "publisher failed: {}", janus_log_tail(&j));
    assert!(seen.is_some(), "no publishers event: {}", janus_log_tail(&j));
    assert!(left, "no unpublished/leaving event");
}

fn janus_log_tail(j: &janus::Janus) -> String {
    let log = j.log();
    log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
}

/// Moves the calling thread (and the threads it starts afterwards) into `netns`.
fn enter_netns(netns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{netns}")).unwrap();
    // SAFETY: setns on a descriptor we own; affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn a_subscription_receives_audio_video_and_chat_inside_the_namespace() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use veil::session::janus::subscriber::{MediaEvent, Subscription};

    let j = janus::Janus::start();
    let netns = j.netns.clone();
    let url = j.url.clone();
    // Everything WebRTC runs on a thread inside the namespace, as the worker will.
    let outcome = std::thread::spawn(move || {
        enter_netns(&netns);
        gst::init().unwrap();
        let (worker, events) = Client::connect(&url).unwrap();
        let me = join_hidden(&worker, ROOM, None).unwrap();
        let mut publisher = std::process::Command::new("ip")
            .args(["netns", "exec", &netns])
            .arg(env!("CARGO_BIN_EXE_veil-publisher"))
            .args(["--janus", &url, "--display", "Ana", "--freq", "440", "--duration", "9", "--chat", "5:{\"hello\": 1}", "--chat", "6:second"])
            .spawn()
            .unwrap();
        // Wait for the publisher to be announced.
        let end = Instant::now() + Duration::from_secs(20);
        let feed = loop {
            assert!(Instant::now() < end, "no publisher announced");
            let Ok(ev) = events.recv_timeout(Duration::from_millis(200)) else { continue };
            if let Some(p) = ev.data.as_ref().map(veil::session::janus::publishers).and_then(|p| p.into_iter().next()) {
                break p.feed;
            }
        };
        let pipeline = gst::Pipeline::new();
        pipeline.set_state(gst::State::Playing).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sub = Subscription::start(&worker, ROOM, me.private_id, feed, &pipeline, tx).unwrap();
        let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, u64>::new()));
        let mut chats = Vec::new();
        let end = Instant::now() + Duration::from_secs(12);
        while Instant::now() < end {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(MediaEvent::Pad { kind, pad, feed: f, hold }) => {
                    assert_eq!(f, feed);
                    // Decode to prove the media is real: count decoded buffers per kind.
                    let chain = if kind == "video" { "rtpvp8depay ! vp8dec ! fakesink name=s async=false sync=false" } else { "rtpopusdepay ! opusdec ! fakesink name=s async=false sync=false" };
                    let bin = gst::parse::bin_from_description(chain, true).unwrap();
                    pipeline.add(&bin).unwrap();
                    bin.sync_state_with_parent().unwrap();
                    pad.link(&bin.static_pad("sink").unwrap()).unwrap();
                    drop(hold);
                    let sink = bin.by_name("s").unwrap();
                    let counts = counts.clone();
                    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                        *counts.lock().unwrap().entry(kind.clone()).or_default() += 1;
                        gst::PadProbeReturn::Ok
                    });
                }
                Ok(MediaEvent::Chat { feed: f, text, .. }) => {
                    assert_eq!(f, feed);
                    chats.push(text.expose().clone());
                }
                Err(_) => {}
            }
            if chats.len() >= 2 && counts.lock().unwrap().values().filter(|n| **n > 20).count() == 2 {
                break;
            }
        }
        drop(sub);
        pipeline.set_state(gst::State::Null).unwrap();
        let _ = publisher.wait();
        let counts = counts.lock().unwrap().clone();
        (counts, chats)
    })
    .join()
    .unwrap();
    let (counts, chats) = outcome;
    assert!(counts.get("video").copied().unwrap_or(0) > 20, "decoded video frames: {counts:?}; janus: {}", janus_log_tail(&j));
    assert!(counts.get("audio").copied().unwrap_or(0) > 20, "decoded audio buffers: {counts:?}");
    assert!(chats.iter().any(|c| c.contains("\"message\":\"second\"")), "chat received on our data channel: {chats:?}");
}
