//! Active-speaker detection from audio levels, with hysteresis so the focus does not flicker.
//!
//! Audio branches report `(session time, RMS)` as their buffers pass; branches of a non-live
//! pipeline run at different speeds, so levels are kept per 100 ms window on the session clock
//! and decisions are made window by window, in order, only once every peer who is present and
//! has audio has reported that window. The result is the same however fast each branch runs.

use std::collections::{BTreeMap, HashMap};

use super::layout::Span;

const WINDOW_MS: u64 = 100;
/// Level below which a peer counts as silent (about -45 dBFS RMS).
const SILENCE: f32 = 0.005;
/// A challenger must be this much louder than the current speaker (about 3.5 dB).
const MARGIN: f32 = 1.5;
/// A challenger must lead for this long before the focus moves.
const HOLD_MS: u64 = 1_000;
/// A lagging branch is waited for at most this far behind the frame being composed.
const MAX_LAG_MS: u64 = 3_000;
/// The same for live sessions, where every branch runs in real time.
const LIVE_MAX_LAG_MS: u64 = 400;

/// Window index -> (sum of RMS, count).
type Windows = BTreeMap<u64, (f32, u32)>;

#[derive(Debug, Default)]
pub struct SpeakerTracker {
    /// How far behind a lagging branch is waited for.
    max_lag_ms: u64,
    /// Peers with audio and when they are present.
    audio_peers: HashMap<usize, Span>,
    /// Per peer: window index -> (sum of RMS, count); and the latest window reported.
    levels: HashMap<usize, (Windows, u64)>,
    next_window: u64,
    current: Option<usize>,
    candidate: Option<(usize, u64)>,
}

impl SpeakerTracker {
    pub fn new(audio_peers: impl IntoIterator<Item = (usize, Span)>) -> Self {
        Self { audio_peers: audio_peers.into_iter().collect(), max_lag_ms: MAX_LAG_MS, ..Self::default() }
    }

    /// For a live session: peers are announced as their audio comes and goes, and a branch
    /// that stopped sending (a muted microphone) is waited for only briefly.
    pub fn live() -> Self {
        Self { max_lag_ms: LIVE_MAX_LAG_MS, ..Self::default() }
    }

    /// Says when `peer` has audio (a live peer's span ends when their audio goes).
    pub fn set_audio_peer(&mut self, peer: usize, span: Span) {
        self.audio_peers.insert(peer, span);
    }

    pub fn update(&mut self, peer: usize, t_ms: u64, rms: f32) {
        let w = t_ms / WINDOW_MS;
        let (map, latest) = self.levels.entry(peer).or_default();
        let e = map.entry(w).or_insert((0.0, 0));
        e.0 += rms;
        e.1 += 1;
        *latest = (*latest).max(w);
    }

    /// The active speaker at session time `t_ms`.
    pub fn current_at(&mut self, t_ms: u64) -> Option<usize> {
        let target = t_ms / WINDOW_MS;
        while self.next_window < target {
            let w = self.next_window;
            let start = w * WINDOW_MS;
            let lagging = self.audio_peers.iter().any(|(p, span)| {
                span.contains(start) && self.levels.get(p).is_none_or(|(_, latest)| *latest <= w)
            });
            if lagging && t_ms.saturating_sub(start) < self.max_lag_ms {
                break;
            }
            self.decide(w);
            self.next_window += 1;
        }
        self.current
    }

    fn level(&self, peer: usize, w: u64) -> f32 {
        self.levels.get(&peer).and_then(|(m, _)| m.get(&w)).map_or(0.0, |(s, n)| s / *n as f32)
    }

    fn decide(&mut self, w: u64) {
        let t = w * WINDOW_MS;
        let mut loudest: Option<(usize, f32)> = None;
        let mut peers: Vec<usize> = self.levels.keys().copied().collect();
        peers.sort_unstable();
        for p in peers {
            let l = self.level(p, w);
            if l > SILENCE && loudest.is_none_or(|(_, best)| l > best) {
                loudest = Some((p, l));
            }
        }
        match (loudest, self.current) {
            (Some((p, _)), None) => self.current = Some(p),
            (Some((p, l)), Some(c)) if p != c && l > MARGIN * self.level(c, w) => match self.candidate {
                Some((cand, since)) if cand == p => {
                    if t.saturating_sub(since) >= HOLD_MS {
                        self.current = Some(p);
                        self.candidate = None;
                    }
                }
                _ => self.candidate = Some((p, t)),
            },
            _ => self.candidate = None,
        }
        for (map, _) in self.levels.values_mut() {
            map.remove(&w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALWAYS: Span = Span { start_ms: 0, end_ms: u64::MAX };

    fn feed(s: &mut SpeakerTracker, peer: usize, from: u64, to: u64, rms: f32) {
        for t in (from..to).step_by(20) {
            s.update(peer, t, rms);
        }
    }

    #[test]
    fn switches_only_after_hold() {
        let mut s = SpeakerTracker::new([(0, ALWAYS), (1, ALWAYS)]);
        feed(&mut s, 0, 0, 2_000, 0.2);
        feed(&mut s, 1, 0, 2_000, 0.01);
        assert_eq!(s.current_at(1_900), Some(0));
        feed(&mut s, 0, 2_000, 4_000, 0.0);
        feed(&mut s, 1, 2_000, 4_000, 0.3);
        assert_eq!(s.current_at(2_400), Some(0), "a short lead does not move the focus");
        assert_eq!(s.current_at(3_600), Some(1));
    }

    #[test]
    fn equal_voices_keep_the_first_speaker() {
        let mut s = SpeakerTracker::new([(0, ALWAYS), (1, Span { start_ms: 1_000, end_ms: u64::MAX }), (2, Span { start_ms: 1_000, end_ms: u64::MAX })]);
        feed(&mut s, 0, 0, 10_000, 0.2);
        feed(&mut s, 1, 1_000, 10_000, 0.2);
        feed(&mut s, 2, 1_000, 10_000, 0.21);
        assert_eq!(s.current_at(9_900), Some(0));
    }

    #[test]
    fn waits_for_lagging_branches() {
        let mut s = SpeakerTracker::new([(0, ALWAYS), (1, ALWAYS)]);
        feed(&mut s, 0, 0, 3_000, 0.01);
        // peer 1 (the loud one) has only reported up to 500 ms so far
        feed(&mut s, 1, 0, 500, 0.3);
        assert_eq!(s.current_at(400), Some(1));
        let mut s2 = SpeakerTracker::new([(0, ALWAYS), (1, ALWAYS)]);
        feed(&mut s2, 0, 0, 2_000, 0.2);
        // Decisions stop at the lagging peer's last window instead of electing peer 0 alone.
        assert_eq!(s2.current_at(1_500), None);
        feed(&mut s2, 1, 0, 2_000, 0.3);
        assert_eq!(s2.current_at(1_500), Some(1));
    }

    #[test]
    fn live_peers_come_and_go_and_a_silent_branch_is_not_waited_for_long() {
        let mut s = SpeakerTracker::live();
        s.set_audio_peer(0, ALWAYS);
        feed(&mut s, 0, 0, 2_000, 0.2);
        assert_eq!(s.current_at(1_500), Some(0));
        s.set_audio_peer(1, Span { start_ms: 2_000, end_ms: u64::MAX });
        // Peer 0's microphone stops (no more buffers); peer 1 talks.
        feed(&mut s, 1, 2_000, 5_000, 0.3);
        assert_eq!(s.current_at(4_500), Some(1), "not held up by the silent branch");
    }

    #[test]
    fn silence_elects_nobody() {
        let mut s = SpeakerTracker::new([(0, ALWAYS)]);
        feed(&mut s, 0, 0, 1_000, 0.0001);
        assert_eq!(s.current_at(900), None);
    }
}
