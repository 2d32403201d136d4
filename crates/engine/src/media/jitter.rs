//! The adaptive jitter buffer for received audio. Sans-IO: packets and `now` go in, a
//! decision for each 20 ms of playout comes out.
//!
//! Written here because no crate does this for Opus: `rtc`'s jitter-buffer interceptor only
//! reorders packets, it does not choose a playout delay, conceal losses or use Opus FEC.
//!
//! How it works, in the manner of libwebrtc's NetEq, much simplified:
//! - each packet's *relative delay* is its arrival time minus its RTP time, against the
//!   fastest packet of the last few seconds; the target delay is the 95th percentile of those
//!   delays plus one frame, between 40 and 400 ms;
//! - playout starts once the target's worth is buffered, then takes one 20 ms frame per tick;
//! - a missing frame is recovered from the next packet's in-band FEC when that packet is
//!   here, and concealed (Opus PLC) when not;
//! - when the sender stops sending (DTX silence) playout pauses instead of concealing for ever,
//!   and restarts with the next talkspurt;
//! - a buffer grown well past its target (three frames over) drops its oldest frames, down to
//!   one frame over the target, to catch up.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Samples per 20 ms frame at 48 kHz.
const FRAME: u64 = 960;
const FRAME_MS: f64 = 20.0;
const MIN_TARGET_MS: f64 = 40.0;
const MAX_TARGET_MS: f64 = 400.0;
/// How far back arrivals count for the delay estimate.
const WINDOW: Duration = Duration::from_secs(5);
/// Missing frames concealed before playout pauses (the sender went quiet).
const MAX_CONCEAL_RUN: u32 = 5;

/// What to play for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Playout {
    /// Decode this packet.
    Packet(Bytes),
    /// The packet is lost but the next one is here: decode its in-band FEC.
    Fec(Bytes),
    /// Lost: let the decoder conceal it.
    Conceal,
    /// Nothing to play (not started, or the sender is silent).
    Silence,
}

/// Counters for statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    pub recovered_by_fec: u64,
    pub late: u64,
    pub dropped_to_catch_up: u64,
    pub target_ms: f64,
    pub buffered_ms: f64,
}

#[derive(Debug)]
pub(crate) struct JitterBuffer {
    packets: BTreeMap<u64, Bytes>,
    highest_ts: Option<u64>,
    /// RTP time of the next frame to play, while playing.
    play_ts: Option<u64>,
    /// (arrival, rtp ms) of recent packets, for the delay estimate.
    arrivals: VecDeque<(Instant, f64)>,
    first: Option<(Instant, f64)>,
    target_ms: f64,
    conceal_run: u32,
    /// Frames concealed in the current run with an empty buffer. If the run ends in a pause,
    /// the sender simply went quiet (DTX) and these were the fade-out, not losses.
    tail_concealed: u64,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self {
            packets: BTreeMap::new(),
            highest_ts: None,
            play_ts: None,
            arrivals: VecDeque::new(),
            first: None,
            target_ms: MIN_TARGET_MS,
            conceal_run: 0,
            tail_concealed: 0,
            stats: JitterStats {
                target_ms: MIN_TARGET_MS,
                ..JitterStats::default()
            },
        }
    }

    fn unwrap_ts(&self, ts: u32) -> u64 {
        let Some(h) = self.highest_ts else {
            return (1u64 << 33) + u64::from(ts);
        };
        let base = h & !0xFFFF_FFFF;
        [base.wrapping_sub(1 << 32), base, base + (1 << 32)]
            .into_iter()
            .map(|b| b + u64::from(ts))
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(base + u64::from(ts))
    }

    /// A packet arrived.
    pub fn push(&mut self, ts: u32, payload: Bytes, now: Instant) {
        let ts = self.unwrap_ts(ts);
        self.highest_ts = Some(self.highest_ts.map_or(ts, |h| h.max(ts)));
        // Late packets count most for the delay estimate: they are why it must grow.
        self.learn(ts, now);
        if self.play_ts.is_some_and(|p| ts < p) {
            self.stats.late += 1;
            return;
        }
        self.packets.insert(ts, payload);
    }

    fn learn(&mut self, ts: u64, now: Instant) {
        let rtp_ms = ts as f64 / 48.0;
        let (t0, r0) = *self.first.get_or_insert((now, rtp_ms));
        self.arrivals.push_back((now, rtp_ms));
        while self
            .arrivals
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            self.arrivals.pop_front();
        }
        // Relative delays against the fastest packet in the window.
        let mut delays: Vec<f64> = self
            .arrivals
            .iter()
            .map(|(t, r)| t.duration_since(t0).as_secs_f64() * 1000.0 - (r - r0))
            .collect();
        let fastest = delays.iter().copied().fold(f64::INFINITY, f64::min);
        for d in &mut delays {
            *d -= fastest;
        }
        delays.sort_by(|a, b| a.total_cmp(b));
        let p95 = delays[((delays.len() - 1) as f64 * 0.95) as usize];
        self.target_ms = (p95 + FRAME_MS).clamp(MIN_TARGET_MS, MAX_TARGET_MS);
        self.stats.target_ms = self.target_ms;
    }

    fn buffered_ms(&self) -> f64 {
        match (self.packets.keys().next(), self.packets.keys().next_back()) {
            (Some(a), Some(b)) => (b - a + FRAME) as f64 / 48.0,
            _ => 0.0,
        }
    }

    /// The next 20 ms of playout. Call every 20 ms.
    pub fn pop(&mut self) -> Playout {
        self.stats.buffered_ms = self.buffered_ms();
        let Some(mut play) = self.play_ts else {
            // Start once the target's worth is buffered.
            if self.buffered_ms() + FRAME_MS / 2.0 >= self.target_ms
                && let Some(&first) = self.packets.keys().next()
            {
                self.play_ts = Some(first);
                self.conceal_run = 0;
                return self.pop();
            }
            return Playout::Silence;
        };
        // Far behind the target (playout stalled, or the target fell): drop the oldest frames,
        // down to one frame over the target, to catch up. Dropping only back under the
        // threshold would keep the extra delay for the rest of the talkspurt.
        if self.buffered_ms() > self.target_ms + 3.0 * FRAME_MS {
            while self.buffered_ms() > self.target_ms + FRAME_MS
                && let Some(&oldest) = self.packets.keys().next()
                && oldest <= play
            {
                self.packets.remove(&oldest);
                self.stats.dropped_to_catch_up += 1;
                play += FRAME;
            }
        }
        self.play_ts = Some(play + FRAME);
        if let Some(p) = self.packets.remove(&play) {
            self.conceal_run = 0;
            self.tail_concealed = 0;
            self.stats.played += 1;
            return Playout::Packet(p);
        }
        if self.packets.is_empty() {
            self.conceal_run += 1;
            if self.conceal_run > MAX_CONCEAL_RUN {
                // The sender is silent (DTX) or gone: pause until packets come again.
                self.play_ts = None;
                self.stats.concealed -= self.tail_concealed;
                self.tail_concealed = 0;
                return Playout::Silence;
            }
            self.stats.concealed += 1;
            self.tail_concealed += 1;
            return Playout::Conceal;
        }
        self.conceal_run = 0;
        self.tail_concealed = 0;
        if let Some(next) = self.packets.get(&(play + FRAME)) {
            self.stats.recovered_by_fec += 1;
            return Playout::Fec(next.clone());
        }
        // A talkspurt after DTX starts later than `play`: jump to it rather than conceal
        // the silence between.
        if let Some(&next) = self.packets.keys().next()
            && next > play + FRAME
            && self.stats.played > 0
            && next - play > (self.target_ms as u64 * 48).max(FRAME * 3)
        {
            self.play_ts = Some(next);
            return self.pop();
        }
        self.stats.concealed += 1;
        Playout::Conceal
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(n: u32) -> Bytes {
        Bytes::from(vec![n as u8; 10])
    }

    /// Packets every 20 ms with `jitter(n)` ms of extra delay; returns what was played while
    /// packets were coming, and the statistics at the end.
    fn run(count: u32, jitter: impl Fn(u32) -> u64, lost: &[u32]) -> (Vec<Playout>, JitterStats) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let mut arrivals: Vec<(u64, u32)> = (0..count)
            .filter(|n| !lost.contains(n))
            .map(|n| (u64::from(n) * 20 + jitter(n), n))
            .collect();
        arrivals.sort();
        let mut out = Vec::new();
        let mut next = arrivals.into_iter().peekable();
        for tick in 0..u64::from(count) {
            let now_ms = tick * 20;
            while let Some(&(at, n)) = next.peek() {
                if at > now_ms {
                    break;
                }
                jb.push(1000 + n * 960, pkt(n), t0 + Duration::from_millis(at));
                next.next();
            }
            out.push(jb.pop());
        }
        (out, jb.stats())
    }

    #[test]
    fn plays_every_packet_in_order_on_a_clean_path() {
        let (out, stats) = run(100, |_| 5, &[]);
        let played: Vec<u8> = out
            .iter()
            .filter_map(|p| match p {
                Playout::Packet(b) => Some(b[0]),
                _ => None,
            })
            .collect();
        // In order with none skipped; the last two are still in the 40 ms buffer at the end.
        assert_eq!(played, (0..98u32).map(|n| n as u8).collect::<Vec<_>>());
        assert_eq!(stats.concealed, 0);
        assert!(stats.target_ms <= 45.0, "{stats:?}");
    }

    #[test]
    fn grows_its_target_with_jitter_and_then_plays_through_it() {
        // Every fifth packet is 60 ms late.
        let (out, stats) = run(200, |n| if n % 5 == 0 { 60 } else { 0 }, &[]);
        assert!(stats.target_ms >= 70.0, "{stats:?}");
        // After the target has adapted (first 2 s), nothing more is concealed.
        let late_conceals = out[100..]
            .iter()
            .filter(|p| matches!(p, Playout::Conceal))
            .count();
        assert_eq!(late_conceals, 0, "{stats:?}");
    }

    #[test]
    fn a_lost_packet_is_recovered_from_the_next_ones_fec() {
        let (out, stats) = run(50, |_| 0, &[20]);
        assert!(out.contains(&Playout::Fec(pkt(21))), "{out:?}");
        assert_eq!(stats.recovered_by_fec, 1);
        assert_eq!(stats.concealed, 0);
    }

    #[test]
    fn a_burst_loss_is_concealed() {
        let (_, stats) = run(60, |_| 0, &[20, 21, 22]);
        assert_eq!(stats.concealed, 2, "{stats:?}");
        assert_eq!(
            stats.recovered_by_fec, 1,
            "the last of the three comes from FEC"
        );
    }

    #[test]
    fn silence_after_the_last_packet_pauses_playout_then_a_new_talkspurt_plays() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut out = Vec::new();
        for tick in 0..200u64 {
            // Talk for 1 s, DTX silence for 2 s, talk again.
            let n = tick as u32;
            if tick < 50 || (150..200).contains(&tick) {
                jb.push(n * 960, pkt(n), at(tick * 20));
            }
            out.push(jb.pop());
        }
        let concealed = out.iter().filter(|p| matches!(p, Playout::Conceal)).count();
        assert!(
            concealed <= 5,
            "silence must not be concealed for 2 s: {concealed}"
        );
        let resumed = out[150..]
            .iter()
            .filter(|p| matches!(p, Playout::Packet(_)))
            .count();
        assert!(resumed >= 45, "{resumed}");
    }

    /// Packets every 20 ms; every second the whole process stalls for 100 ms (the machine
    /// was busy), and when it runs again playout comes first, then the packets that waited are
    /// taken in. `burst` runs the missed pops at once (a clock that keeps its old schedule);
    /// otherwise playout pops once and goes on from then (`playout::Clock`'s way).
    /// Gives the statistics at the end, and 100 ms after the last stall.
    fn stalled_process(burst: bool) -> (JitterStats, JitterStats) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let mut waiting = Vec::new();
        let mut after_last = JitterStats::default();
        for tick in 0..250u64 {
            let n = tick as u32;
            let now = t0 + Duration::from_millis(tick * 20);
            if tick >= 50 && tick % 50 < 5 {
                waiting.push(n);
                continue;
            }
            let pops = if burst && tick >= 50 && tick % 50 == 5 {
                6
            } else {
                1
            };
            for _ in 0..pops {
                jb.pop();
            }
            for w in waiting.drain(..) {
                jb.push(w * 960, pkt(w), now);
            }
            jb.push(n * 960, pkt(n), now);
            if tick == 210 {
                after_last = jb.stats();
            }
        }
        (jb.stats(), after_last)
    }

    #[test]
    fn playout_that_goes_on_after_a_stall_conceals_little_and_sheds_the_delay() {
        let (burst, _) = stalled_process(true);
        assert!(
            burst.concealed >= 5 && burst.late >= 5,
            "the old way conceals on-time packets and then throws them away: {burst:?}"
        );
        let (resumed, after_last) = stalled_process(false);
        assert!(resumed.concealed <= 1, "{resumed:?}");
        assert_eq!(resumed.late, 0, "{resumed:?}");
        assert!(resumed.dropped_to_catch_up > 0, "{resumed:?}");
        assert!(
            after_last.buffered_ms <= after_last.target_ms + FRAME_MS,
            "the extra delay is shed: {after_last:?}"
        );
    }
}
