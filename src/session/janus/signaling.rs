//! Janus gateway signaling over its HTTP API: a session with keepalives, plugin handles,
//! requests matched to their transactions, and events from a long-poll thread.
//!
//! This is the signaling half of the live source. The worker joins a VideoRoom as a hidden
//! participant: it joins with the fixed display name [`HIDDEN_DISPLAY`] and never publishes, so
//! with the room's `notify_joining` off no participant is told about it, and applications can
//! filter it from `listparticipants` by that name.
//!
//! Display names and room pins are never logged; errors quote Janus's error codes and
//! messages only for requests that carry no names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::privacy::{mask_url, Redacted};

/// The display name the worker joins rooms with (documented for applications to filter).
pub const HIDDEN_DISPLAY: &str = "veil-recorder";

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("janus {url}: {message}")]
    Transport { url: String, message: String },
    #[error("janus {url}: {request} refused: error {code}: {reason}")]
    Refused { url: String, request: String, code: i64, reason: String },
    #[error("janus {url}: no answer to {request} within {timeout_s} s")]
    Timeout { url: String, request: String, timeout_s: u64 },
    #[error("janus {url}: unexpected answer to {request}")]
    Protocol { url: String, request: String },
    #[error("janus {url}: the session is gone (timed out or destroyed)")]
    SessionGone { url: String },
}

/// Something Janus sent that was not the answer to a request.
#[derive(Debug, Clone)]
pub struct Event {
    pub handle: Option<u64>,
    /// The plugin's data (`plugindata.data`), if any.
    pub data: Option<Value>,
    pub jsep: Option<Value>,
    /// `janus` field: `event`, `webrtcup`, `media`, `hangup`, `detached`, `slowlink`, …
    pub kind: String,
}

type Waiters = Arc<Mutex<HashMap<String, Sender<Value>>>>;

/// A Janus session over HTTP. Dropping it destroys the session.
pub struct Client {
    base: String,
    session: u64,
    agent: ureq::Agent,
    waiters: Waiters,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    keepalive: Option<JoinHandle<()>>,
    gone: Arc<AtomicBool>,
}

fn transaction() -> String {
    crate::webhook::random_id("tx")
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).max_redirects(0).proxy(None).build().new_agent()
}

impl Client {
    /// Creates a session at `url` (e.g. `http://10.0.0.2:8088/janus`); events go to the
    /// returned receiver.
    pub fn connect(url: &str) -> Result<(Self, Receiver<Event>), JanusError> {
        let base = url.trim_end_matches('/').to_owned();
        let agent = agent(Duration::from_secs(10));
        let shown = mask_url(&base);
        let answer = post(&agent, &base, &json!({"janus": "create", "transaction": transaction()}), &shown, "create")?;
        let session = answer["data"]["id"].as_u64().ok_or(JanusError::Protocol { url: shown.clone(), request: "create".into() })?;
        let waiters: Waiters = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel();
        let poller = {
            let (url, waiters, stop, gone, masked) = (format!("{base}/{session}"), waiters.clone(), stop.clone(), gone.clone(), shown.clone());
            std::thread::Builder::new()
                .name("veil-janus-poll".into())
                .spawn(move || poll(&url, &masked, &waiters, &tx, &stop, &gone))
                .map_err(|e| JanusError::Transport { url: shown.clone(), message: e.to_string() })?
        };
        let keepalive = {
            let (url, stop, gone, masked) = (format!("{base}/{session}"), stop.clone(), gone.clone(), shown.clone());
            let agent = agent.clone();
            std::thread::Builder::new()
                .name("veil-janus-keepalive".into())
                .spawn(move || {
                    let mut last = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(100));
                        // Also how a destroyed session is noticed soonest: a pending long
                        // poll on it is not answered.
                        if last.elapsed() >= Duration::from_secs(5) {
                            last = Instant::now();
                            match post(&agent, &url, &json!({"janus": "keepalive", "transaction": transaction()}), &masked, "keepalive") {
                                Err(JanusError::SessionGone { .. }) => {
                                    gone.store(true, Ordering::SeqCst);
                                    return;
                                }
                                Err(e) => tracing::warn!(error = %e, "janus keepalive failed"),
                                Ok(_) => {}
                            }
                        }
                    }
                })
                .map_err(|e| JanusError::Transport { url: shown.clone(), message: e.to_string() })?
        };
        Ok((Self { base, session, agent, waiters, stop, poller: Some(poller), keepalive: Some(keepalive), gone }, rx))
    }

    pub fn session_id(&self) -> u64 {
        self.session
    }

    /// True once the session is known to be lost: Janus said it does not exist, or the event
    /// long-poll kept failing. Such a client cannot be used again: connect anew.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    fn shown(&self) -> String {
        mask_url(&self.base)
    }

    /// Attaches to a plugin, e.g. `janus.plugin.videoroom`.
    pub fn attach(&self, plugin: &str) -> Result<u64, JanusError> {
        let url = format!("{}/{}", self.base, self.session);
        let a = post(&self.agent, &url, &json!({"janus": "attach", "plugin": plugin, "transaction": transaction()}), &self.shown(), "attach")?;
        a["data"]["id"].as_u64().ok_or(JanusError::Protocol { url: self.shown(), request: "attach".into() })
    }

    /// Sends a plugin message and waits for the plugin's answer (synchronous `success` or the
    /// asynchronous `event` with the same transaction). `what` names the request in errors.
    pub fn request(&self, handle: u64, what: &str, body: Value, jsep: Option<Value>, timeout: Duration) -> Result<(Value, Option<Value>), JanusError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(JanusError::SessionGone { url: self.shown() });
        }
        let tx_id = transaction();
        let (wtx, wrx) = channel();
        self.waiters.lock().map_err(|_| self.protocol(what))?.insert(tx_id.clone(), wtx);
        let mut msg = json!({"janus": "message", "transaction": tx_id, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let url = format!("{}/{}/{handle}", self.base, self.session);
        let first = post(&self.agent, &url, &msg, &self.shown(), what);
        let answer = match first {
            Err(e) => {
                self.forget(&tx_id);
                return Err(e);
            }
            Ok(a) if a["janus"] == "success" => a,
            Ok(a) if a["janus"] == "ack" => match wrx.recv_timeout(timeout) {
                Ok(v) => v,
                Err(RecvTimeoutError::Timeout) => {
                    self.forget(&tx_id);
                    return Err(JanusError::Timeout { url: self.shown(), request: what.into(), timeout_s: timeout.as_secs() });
                }
                Err(RecvTimeoutError::Disconnected) => return Err(JanusError::SessionGone { url: self.shown() }),
            },
            Ok(_) => {
                self.forget(&tx_id);
                return Err(self.protocol(what));
            }
        };
        self.forget(&tx_id);
        let data = answer["plugindata"]["data"].clone();
        if let Some(code) = data["error_code"].as_i64() {
            return Err(JanusError::Refused { url: self.shown(), request: what.into(), code, reason: data["error"].as_str().unwrap_or("").chars().take(200).collect() });
        }
        Ok((data, answer.get("jsep").cloned()))
    }

    /// Sends a trickle candidate (or the end of candidates when `candidate` is null).
    pub fn trickle(&self, handle: u64, candidate: Value) -> Result<(), JanusError> {
        let url = format!("{}/{}/{handle}", self.base, self.session);
        post(&self.agent, &url, &json!({"janus": "trickle", "transaction": transaction(), "candidate": candidate}), &self.shown(), "trickle").map(|_| ())
    }

    /// A detached sender of trickle candidates, for threads that must not hold the client.
    pub fn trickler(&self) -> impl Fn(u64, Value) -> Result<(), JanusError> + Send + 'static {
        let (agent, base, session, shown) = (self.agent.clone(), self.base.clone(), self.session, self.shown());
        move |handle, candidate| {
            let url = format!("{base}/{session}/{handle}");
            post(&agent, &url, &json!({"janus": "trickle", "transaction": transaction(), "candidate": candidate}), &shown, "trickle").map(|_| ())
        }
    }

    pub fn detach(&self, handle: u64) -> Result<(), JanusError> {
        let url = format!("{}/{}/{handle}", self.base, self.session);
        post(&self.agent, &url, &json!({"janus": "detach", "transaction": transaction()}), &self.shown(), "detach").map(|_| ())
    }

    fn forget(&self, tx_id: &str) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(tx_id);
        }
    }

    fn protocol(&self, what: &str) -> JanusError {
        JanusError::Protocol { url: self.shown(), request: what.into() }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if !self.is_gone() {
            let url = format!("{}/{}", self.base, self.session);
            let _ = post(&self.agent, &url, &json!({"janus": "destroy", "transaction": transaction()}), &self.shown(), "destroy");
        }
        if let Some(t) = self.keepalive.take() {
            let _ = t.join();
        }
        // The poller may sit in a long poll for up to 30 s; it sees the stop flag when that
        // returns and ends on its own, so it is not waited for.
        drop(self.poller.take());
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value, shown: &str, what: &str) -> Result<Value, JanusError> {
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .map_err(|e| JanusError::Transport { url: shown.into(), message: format!("{what}: {}", transport_kind(&e)) })?;
    let text = r.body_mut().read_to_string().map_err(|_| JanusError::Protocol { url: shown.into(), request: what.into() })?;
    let v: Value = serde_json::from_str(&text).map_err(|_| JanusError::Protocol { url: shown.into(), request: what.into() })?;
    if v["janus"] == "error" {
        let code = v["error"]["code"].as_i64().unwrap_or(0);
        if code == 458 {
            return Err(JanusError::SessionGone { url: shown.into() });
        }
        return Err(JanusError::Refused { url: shown.into(), request: what.into(), code, reason: v["error"]["reason"].as_str().unwrap_or("").chars().take(200).collect() });
    }
    Ok(v)
}

fn transport_kind(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timed out",
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => "cannot connect",
        _ => "request failed",
    }
}

/// The long-poll loop: answers go to their waiting request, everything else to `events`.
fn poll(url: &str, shown: &str, waiters: &Waiters, events: &Sender<Event>, stop: &AtomicBool, gone: &AtomicBool) {
    let agent = agent(Duration::from_secs(40));
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let got = agent.get(&format!("{url}?maxev=10")).call();
        // Janus answers a long poll on a session it does not know with 404 and no body.
        if got.as_ref().is_ok_and(|r| r.status() == 404) {
            tracing::warn!(url = %shown, "janus session gone");
            gone.store(true, Ordering::SeqCst);
            return;
        }
        let parsed = got.ok().and_then(|mut r| r.body_mut().read_to_string().ok()).and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let batch: Value = match parsed {
            Some(v) => v,
            _ => {
                failures += 1;
                if failures > 50 {
                    gone.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        failures = 0;
        let items = match batch {
            Value::Array(a) => a,
            v => vec![v],
        };
        for v in items {
            if v["janus"] == "keepalive" {
                continue;
            }
            if v["janus"] == "error" && v["error"]["code"] == 458 {
                tracing::warn!(url = %shown, "janus session gone");
                gone.store(true, Ordering::SeqCst);
                return;
            }
            if let Some(tx_id) = v["transaction"].as_str() {
                if let Some(w) = waiters.lock().ok().and_then(|mut w| w.remove(tx_id)) {
                    let _ = w.send(v);
                    continue;
                }
            }
            let event = Event {
                handle: v["sender"].as_u64(),
                data: v.get("plugindata").map(|p| p["data"].clone()),
                jsep: v.get("jsep").cloned(),
                kind: v["janus"].as_str().unwrap_or("").to_owned(),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

/// A publisher as the VideoRoom announces it.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub feed: u64,
    /// Display name: PHI, never logged.
    pub display: Redacted<String>,
    /// `(mid, type)` of each stream (`audio`, `video`, `data`).
    pub streams: Vec<(String, String)>,
    /// A screen share: a video stream whose description (Janus `descriptions` at publish
    /// time) mentions "screen".
    pub screen: bool,
}

/// Parses the `publishers` array of a VideoRoom event, skipping the worker itself.
pub fn publishers(data: &Value) -> Vec<Publisher> {
    data["publishers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["display"].as_str() != Some(HIDDEN_DISPLAY))
                .filter_map(|p| {
                    Some(Publisher {
                        feed: p["id"].as_u64()?,
                        display: Redacted::new(p["display"].as_str().unwrap_or("").to_owned()),
                        streams: p["streams"]
                            .as_array()
                            .map(|s| {
                                s.iter()
                                    .filter(|s| s["disabled"] != true)
                                    .filter_map(|s| Some((s["mid"].as_str()?.to_owned(), s["type"].as_str()?.to_owned())))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        screen: p["streams"].as_array().is_some_and(|s| {
                            s.iter().any(|s| s["type"] == "video" && s["description"].as_str().is_some_and(|d| d.to_ascii_lowercase().contains("screen")))
                        }),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The worker's view of a room: a hidden participant that learns who publishes.
pub struct HiddenParticipant {
    pub handle: u64,
    pub private_id: Option<u64>,
    pub feed: u64,
    /// Publishers present when the worker joined.
    pub initial: Vec<Publisher>,
}

/// Joins `room` without publishing, under [`HIDDEN_DISPLAY`].
pub fn join_hidden(client: &Client, room: u64, pin: Option<&Redacted<String>>) -> Result<HiddenParticipant, JanusError> {
    let handle = client.attach("janus.plugin.videoroom")?;
    let mut body = json!({"request": "join", "ptype": "publisher", "room": room, "display": HIDDEN_DISPLAY});
    if let Some(p) = pin {
        body["pin"] = p.expose().clone().into();
    }
    let (data, _) = client.request(handle, "join", body, None, Duration::from_secs(10))?;
    if data["videoroom"] != "joined" {
        return Err(JanusError::Protocol { url: client.shown(), request: "join".into() });
    }
    Ok(HiddenParticipant { handle, private_id: data["private_id"].as_u64(), feed: data["id"].as_u64().unwrap_or(0), initial: publishers(&data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishers_skip_the_worker_and_disabled_streams() {
        let data = json!({"videoroom": "event", "publishers": [
            {"id": 1, "display": "Dr. Who", "streams": [{"mid": "0", "type": "audio"}, {"mid": "1", "type": "video", "disabled": true}]},
            {"id": 2, "display": HIDDEN_DISPLAY, "streams": []},
            {"id": 3, "display": "Dr. Who", "streams": [{"mid": "0", "type": "video", "description": "Screen share"}]}
        ]});
        let p = publishers(&data);
        assert_eq!(p.len(), 2);
        assert!(!p[0].screen && p[1].screen);
        assert_eq!(p[0].feed, 1);
        assert_eq!(p[0].streams, [("0".to_string(), "audio".to_string())]);
        assert!(!format!("{:?}", p[0]).contains("Dr. Who"));
    }
}
