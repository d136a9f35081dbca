//! A peak limiter for the mixed audio: instant attack, smooth release, so the sum of many
//! voices never clips. Operates on interleaved f32 samples in place.

/// Peak ceiling (about -0.9 dBFS).
pub const CEILING: f32 = 0.9;

pub struct Limiter {
    gain: f32,
    /// Per-frame multiplicative recovery toward unity gain.
    release: f32,
}

impl Limiter {
    /// `release_ms`: time to recover about 63 % of the gain reduction.
    pub fn new(rate: u32, release_ms: f32) -> Self {
        let frames = (rate as f32 * release_ms / 1000.0).max(1.0);
        Self { gain: 1.0, release: (-1.0 / frames).exp() }
    }

    pub fn process(&mut self, samples: &mut [f32], channels: usize) {
        let channels = channels.max(1);
        for frame in samples.chunks_mut(channels) {
            let peak = frame.iter().fold(0f32, |m, s| m.max(s.abs()));
            // Recover toward 1.0, then clamp down at once if this frame would exceed the ceiling.
            self.gain = 1.0 - (1.0 - self.gain) * self.release;
            if peak * self.gain > CEILING {
                self.gain = CEILING / peak;
            }
            for s in frame.iter_mut() {
                *s = if s.is_finite() { *s * self.gain } else { 0.0 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_mix_never_exceeds_ceiling() {
        let mut l = Limiter::new(48_000, 50.0);
        let mut buf: Vec<f32> = (0..48_000)
            .flat_map(|i| {
                let t = i as f32 / 48_000.0;
                let s = 2.5 * (t * 440.0 * std::f32::consts::TAU).sin() + 1.5 * (t * 660.0 * std::f32::consts::TAU).sin();
                [s, -s]
            })
            .collect();
        l.process(&mut buf, 2);
        assert!(buf.iter().all(|s| s.abs() <= CEILING + 1e-6));
        assert!(buf.iter().any(|s| s.abs() > 0.5), "signal kept");
    }

    #[test]
    fn quiet_audio_passes_unchanged() {
        let mut l = Limiter::new(48_000, 50.0);
        let orig: Vec<f32> = (0..4_800).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        let mut buf = orig.clone();
        l.process(&mut buf, 1);
        assert_eq!(buf, orig);
    }

    #[test]
    fn gain_recovers_after_a_peak() {
        let mut l = Limiter::new(1_000, 10.0);
        let mut buf = vec![3.0f32];
        buf.extend(std::iter::repeat_n(0.5f32, 200));
        l.process(&mut buf, 1);
        assert!((buf[0] - CEILING).abs() < 1e-6);
        assert!((buf[200] - 0.5).abs() < 1e-3, "{}", buf[200]);
    }
}
