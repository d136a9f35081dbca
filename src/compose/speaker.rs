//! Active-speaker detection from audio levels, with hysteresis so the focus does not flicker.
//! Fed from the audio branches (session time, RMS level); read by the layout for each frame.

use std::collections::HashMap;

/// Level below which a peer counts as silent (about -45 dBFS RMS).
const SILENCE: f32 = 0.005;
/// A challenger must be the loudest for this long before the focus moves.
const HOLD_MS: u64 = 1_000;
/// A challenger must be this much louder than the current speaker (about 3.5 dB).
const MARGIN: f32 = 1.5;
/// Smoothing of the level: weight of the newest measurement.
const ALPHA: f32 = 0.3;

#[derive(Default, Debug)]
pub struct SpeakerTracker {
    level: HashMap<usize, (u64, f32)>,
    current: Option<usize>,
    candidate: Option<(usize, u64)>,
}

impl SpeakerTracker {
    pub fn update(&mut self, peer: usize, t_ms: u64, rms: f32) {
        let e = self.level.entry(peer).or_insert((t_ms, rms));
        e.1 = e.1 * (1.0 - ALPHA) + rms * ALPHA;
        e.0 = t_ms;
        self.decide(t_ms);
    }

    fn decide(&mut self, t_ms: u64) {
        let loudest = self
            .level
            .iter()
            .filter(|(_, (at, lvl))| *lvl > SILENCE && t_ms.saturating_sub(*at) < 500)
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map(|(p, _)| *p);
        let level_of = |p: usize| self.level.get(&p).filter(|(at, _)| t_ms.saturating_sub(*at) < 500).map_or(0.0, |l| l.1);
        match (loudest, self.current) {
            (Some(p), None) => self.current = Some(p),
            (Some(p), Some(c)) if p != c && level_of(p) > MARGIN * level_of(c) => match self.candidate {
                Some((cand, since)) if cand == p => {
                    if t_ms.saturating_sub(since) >= HOLD_MS {
                        self.current = Some(p);
                        self.candidate = None;
                    }
                }
                _ => self.candidate = Some((p, t_ms)),
            },
            _ => self.candidate = None,
        }
    }

    pub fn current(&self) -> Option<usize> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_after_hold() {
        let mut s = SpeakerTracker::default();
        for t in (0..2_000).step_by(20) {
            s.update(0, t, 0.2);
            s.update(1, t, 0.01);
        }
        assert_eq!(s.current(), Some(0));
        // peer 1 becomes louder; a short burst does not move the focus
        for t in (2_000..2_400).step_by(20) {
            s.update(0, t, 0.0);
            s.update(1, t, 0.3);
        }
        assert_eq!(s.current(), Some(0));
        for t in (2_400..3_600).step_by(20) {
            s.update(0, t, 0.0);
            s.update(1, t, 0.3);
        }
        assert_eq!(s.current(), Some(1));
    }

    #[test]
    fn equal_voices_keep_the_first_speaker() {
        let mut s = SpeakerTracker::default();
        for t in (0..1_000).step_by(20) {
            s.update(0, t, 0.2);
        }
        for t in (1_000..10_000).step_by(20) {
            s.update(1, t, 0.2);
            s.update(2, t, 0.21);
            s.update(0, t, 0.2);
        }
        assert_eq!(s.current(), Some(0));
    }

    #[test]
    fn silence_elects_nobody() {
        let mut s = SpeakerTracker::default();
        s.update(0, 0, 0.0001);
        assert_eq!(s.current(), None);
    }
}
