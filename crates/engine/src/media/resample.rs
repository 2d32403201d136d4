//! Sample-rate conversion between audio devices and the engine's 48 kHz.

/// Linear-interpolation resampler (device rate to 48 kHz and back). Written here because it is
/// a dozen lines; a device already at 48 kHz passes through untouched.
pub(crate) struct Resampler {
    /// Input samples per output sample.
    step: f64,
    /// Next output position, in input samples, relative to the start of the next input block;
    /// -1.0 is the last sample of the previous block.
    pos: f64,
    last: f32,
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Self {
        Self {
            step: f64::from(from) / f64::from(to),
            pos: 0.0,
            last: 0.0,
        }
    }

    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        if (self.step - 1.0).abs() < f64::EPSILON {
            return input.to_vec();
        }
        let at = |i: isize, last: f32| if i < 0 { last } else { input[i as usize] };
        let mut out = Vec::with_capacity((input.len() as f64 / self.step) as usize + 1);
        while self.pos <= input.len() as f64 - 1.0 {
            let i = self.pos.floor() as isize;
            let frac = (self.pos - i as f64) as f32;
            let a = at(i, self.last);
            let b = at(i + 1, self.last);
            out.push(a + (b - a) * frac);
            self.pos += self.step;
        }
        self.pos -= input.len() as f64;
        if let Some(&l) = input.last() {
            self.last = l;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Resampler;

    #[test]
    fn resampling_44k1_to_48k_keeps_the_rate_and_the_shape() {
        let mut r = Resampler::new(44_100, 48_000);
        let mut out = Vec::new();
        // One second of a 1 kHz sine in 10 ms blocks.
        let input: Vec<f32> = (0..44_100)
            .map(|n| (n as f32 * 1000.0 * std::f32::consts::TAU / 44_100.0).sin())
            .collect();
        for block in input.chunks(441) {
            out.extend(r.process(block));
        }
        assert!((47_990..=48_010).contains(&out.len()), "{}", out.len());
        // The same sine, now at 48 kHz.
        for (n, s) in out.iter().enumerate().skip(10).take(1000) {
            let want = (n as f32 * 1000.0 * std::f32::consts::TAU / 48_000.0).sin();
            assert!((s - want).abs() < 0.02, "sample {n}: {s} vs {want}");
        }
    }
}
