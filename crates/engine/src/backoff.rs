//! When to try the server again: exponential backoff with full jitter, so a care home's
//! tablets do not all reconnect in the same instant after a router reboot. Plain arithmetic:
//! the caller passes the randomness in.

use std::time::Duration;

/// Delays between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starts at `base`, doubles per attempt, never more than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// Attempts since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt; `random` in `[0, 1)` picks where in the window.
    /// The window's lower half is kept, so a retry never comes immediately.
    pub fn next(&mut self, random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    /// Connected: start again from `base` next time.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next(0.0), Duration::from_millis(250));
        assert_eq!(b.next(1.0), Duration::from_millis(1000));
        assert_eq!(b.next(0.5), Duration::from_millis(1500));
        for _ in 0..20 {
            assert!(b.next(1.0) <= Duration::from_secs(30));
        }
        assert_eq!(b.next(1.0), Duration::from_secs(30));
        assert_eq!(b.next(0.0), Duration::from_secs(15));
        assert_eq!(b.attempt(), 25);
        b.reset();
        assert_eq!(b.next(1.0), Duration::from_millis(500));
    }
}
