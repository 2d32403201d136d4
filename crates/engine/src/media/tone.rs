//! The synthetic microphone: a 440 Hz tone, on for 200 ms of every second.

/// Sample rate of everything audio in the engine.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;

/// Generates the tone frame by frame.
#[derive(Debug, Default)]
pub struct Tone {
    position: u64,
}

impl Tone {
    /// Starts at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills the next 20 ms (mono, 48 kHz).
    pub fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        for s in out.iter_mut() {
            let t = self.position % u64::from(SAMPLE_RATE);
            *s = if t < u64::from(SAMPLE_RATE) / 5 {
                let phase = self.position as f64 * 440.0 / f64::from(SAMPLE_RATE);
                ((phase * std::f64::consts::TAU).sin() * 8000.0) as i16
            } else {
                0
            };
            self.position += 1;
        }
    }
}

/// Root-mean-square level of samples, 0.0 to 1.0 of full scale.
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((sum / samples.len() as f64).sqrt() / 32768.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_then_is_silent() {
        let mut tone = Tone::new();
        let mut frame = [0i16; FRAME_SAMPLES];
        tone.next_frame(&mut frame);
        let on = rms(&frame);
        assert!((0.15..0.2).contains(&on), "{on}");
        for _ in 0..10 {
            tone.next_frame(&mut frame);
        }
        assert_eq!(rms(&frame), 0.0);
    }
}
