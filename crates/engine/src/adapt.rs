//! How outgoing video follows the bandwidth estimate: first the bitrate, then the picture size,
//! then the frame rate, and at the bottom audio only, with periodic tries to come back up.
//! Sans-IO: the budget and `now` go in, the settings to encode with come out.

use std::time::{Duration, Instant};

/// One rung of the ladder: a fraction of the source's width and height, a divisor of its frame
/// rate, and the least bitrate (for a 640x480 source at 30 fps) it is worth sending at.
struct Rung {
    scale: f32,
    fps_divisor: u32,
    min_bps_vga: u64,
}

const LADDER: [Rung; 5] = [
    Rung {
        scale: 1.0,
        fps_divisor: 1,
        min_bps_vga: 450_000,
    },
    Rung {
        scale: 0.75,
        fps_divisor: 1,
        min_bps_vga: 250_000,
    },
    Rung {
        scale: 0.5,
        fps_divisor: 1,
        min_bps_vga: 150_000,
    },
    Rung {
        scale: 0.5,
        fps_divisor: 2,
        min_bps_vga: 90_000,
    },
    Rung {
        scale: 0.25,
        fps_divisor: 2,
        min_bps_vga: 50_000,
    },
];
/// Below the lowest rung for this long: pause video.
const PAUSE_AFTER: Duration = Duration::from_secs(2);
/// Above the next rung (with margin) for this long: step up.
const STEP_UP_AFTER: Duration = Duration::from_secs(2);
const STEP_UP_MARGIN: f64 = 1.25;
/// First wait before trying video again after a pause; doubles up to the maximum.
const FIRST_RETRY: Duration = Duration::from_secs(4);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What to encode with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Send no video at all (audio only).
    pub paused: bool,
    pub width: u32,
    pub height: u32,
    /// Encode every n-th captured frame.
    pub fps_divisor: u32,
    pub bitrate_bps: u32,
}

pub(crate) struct Adapter {
    width: u32,
    height: u32,
    /// Source pixels relative to 640x480, for scaling the rungs' minimums.
    size_factor: f64,
    rung: usize,
    paused: bool,
    below_since: Option<Instant>,
    above_since: Option<Instant>,
    retry_at: Option<Instant>,
    retry_wait: Duration,
}

impl Adapter {
    pub fn new(width: u32, height: u32) -> Self {
        let size_factor = (f64::from(width) * f64::from(height) / (640.0 * 480.0)).clamp(0.25, 4.0);
        Self {
            width,
            height,
            size_factor,
            rung: 0,
            paused: false,
            below_since: None,
            above_since: None,
            retry_at: None,
            retry_wait: FIRST_RETRY,
        }
    }

    fn min_bps(&self, rung: usize) -> u64 {
        (LADDER[rung].min_bps_vga as f64 * self.size_factor) as u64
    }

    /// The settings for a video budget of `budget_bps` at `now`.
    pub fn update(&mut self, budget_bps: u64, now: Instant) -> Settings {
        if self.paused {
            // Try the lowest rung again when the wait is over; the estimate only grows while
            // there is traffic to measure, so coming back up needs a try.
            if self.retry_at.is_some_and(|t| now >= t) {
                self.paused = false;
                self.retry_at = None;
                self.rung = LADDER.len() - 1;
                self.below_since = None;
            }
        } else if budget_bps < self.min_bps(self.rung) {
            self.above_since = None;
            if self.rung + 1 < LADDER.len() {
                // Down a rung at once: a picture too big for the link freezes.
                self.rung += 1;
                self.below_since = None;
            } else {
                let since = *self.below_since.get_or_insert(now);
                if now.duration_since(since) >= PAUSE_AFTER {
                    self.paused = true;
                    self.retry_at = Some(now + self.retry_wait);
                    self.retry_wait = (self.retry_wait * 2).min(MAX_RETRY);
                    self.below_since = None;
                }
            }
        } else {
            self.below_since = None;
            if self.rung > 0
                && budget_bps as f64 >= self.min_bps(self.rung - 1) as f64 * STEP_UP_MARGIN
            {
                let since = *self.above_since.get_or_insert(now);
                if now.duration_since(since) >= STEP_UP_AFTER {
                    self.rung -= 1;
                    self.above_since = None;
                }
            } else {
                self.above_since = None;
            }
            if self.rung < LADDER.len() - 1 {
                // Video is holding up well above the bottom: the next pause waits the least.
                self.retry_wait = FIRST_RETRY;
            }
        }
        let r = &LADDER[self.rung];
        Settings {
            paused: self.paused,
            width: ((self.width as f32 * r.scale) as u32 & !1).max(2),
            height: ((self.height as f32 * r.scale) as u32 & !1).max(2),
            fps_divisor: r.fps_divisor,
            bitrate_bps: budget_bps.max(30_000) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &mut Adapter, budget: u64, from: Instant, secs: u64) -> Settings {
        let mut s = a.update(budget, from);
        for ms in (100..=secs * 1000).step_by(100) {
            s = a.update(budget, from + Duration::from_millis(ms));
        }
        s
    }

    #[test]
    fn full_quality_with_plenty_of_bandwidth() {
        let mut a = Adapter::new(640, 480);
        let s = run(&mut a, 1_000_000, Instant::now(), 3);
        assert_eq!(
            (s.paused, s.width, s.height, s.fps_divisor),
            (false, 640, 480, 1)
        );
    }

    #[test]
    fn resolution_drops_before_frame_rate_and_video_pauses_last() {
        let t0 = Instant::now();
        let mut a = Adapter::new(640, 480);
        let s = run(&mut a, 200_000, t0, 1);
        assert_eq!((s.width, s.height, s.fps_divisor), (320, 240, 1), "{s:?}");
        let s = run(&mut a, 100_000, t0 + Duration::from_secs(2), 1);
        assert_eq!((s.width, s.fps_divisor), (320, 2), "{s:?}");
        let s = run(&mut a, 20_000, t0 + Duration::from_secs(4), 3);
        assert!(s.paused, "{s:?}");
    }

    #[test]
    fn paused_video_tries_again_and_comes_back_up() {
        let t0 = Instant::now();
        let mut a = Adapter::new(640, 480);
        assert!(run(&mut a, 20_000, t0, 4).paused);
        // The link recovers: after the retry wait, video comes back at the bottom rung...
        let s = run(&mut a, 800_000, t0 + Duration::from_secs(4), 5);
        assert!(!s.paused, "{s:?}");
        // ...and climbs back to full size.
        let s = run(&mut a, 800_000, t0 + Duration::from_secs(9), 12);
        assert_eq!((s.width, s.height, s.fps_divisor), (640, 480, 1), "{s:?}");
    }

    #[test]
    fn a_failed_retry_waits_longer_next_time() {
        let t0 = Instant::now();
        let mut a = Adapter::new(640, 480);
        assert!(run(&mut a, 20_000, t0, 3).paused);
        // Paused at 2.5 s; the retry at 6.5 s fails (still 20 kbit/s) and pauses again at
        // 8.5 s, now for 8 s instead of 4.
        let s = run(&mut a, 20_000, t0 + Duration::from_secs(3), 8);
        assert!(s.paused);
        let waits: Vec<bool> = (0..50)
            .map(|i| {
                a.update(
                    20_000,
                    t0 + Duration::from_secs(11) + Duration::from_millis(i * 100),
                )
                .paused
            })
            .collect();
        assert!(
            waits.iter().all(|p| *p),
            "the second wait is longer than the first"
        );
    }
}
