//! What `--stats-json` writes: per peer, what was decoded and how late, checked against the
//! frame numbers and capture times the test pattern carries, plus the engine's statistics.

use std::collections::BTreeMap;
use std::time::Instant;

use hearth_engine::media::pattern;
use hearth_engine::{CallStats, PeerId, RemoteVideoFrame};
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct PeerReport {
    /// Pictures decoded.
    pub frames_decoded: u64,
    /// Pictures that carried a readable test-pattern stamp.
    pub stamped_frames: u64,
    /// Frame numbers skipped between consecutive stamped pictures.
    pub missing_frames: u64,
    /// Stamped pictures whose number was not above the previous one.
    pub out_of_order: u64,
    /// Capture-to-decoded latency from the stamps, milliseconds.
    pub latency_ms: Option<Percentiles>,
    /// From the call being placed or answered to the first decoded picture, milliseconds.
    pub first_frame_ms: Option<f64>,
    /// Audio level reports received.
    pub audio_intervals: u64,
    /// Loudest audio interval, 0 to 1.
    pub audio_max_level: f32,
    /// Last decoded size.
    pub width: u32,
    /// Last decoded size.
    pub height: u32,
    /// Codec of the last picture.
    pub codec: Option<String>,
    #[serde(skip)]
    last_frame: Option<u32>,
    #[serde(skip)]
    latencies_us: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    pub samples: usize,
}

#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub peers: &'a BTreeMap<String, PeerReport>,
    pub stats: &'a Option<CallStats>,
}

pub struct Report {
    started: Option<Instant>,
    peers: BTreeMap<String, PeerReport>,
    stats: Option<CallStats>,
}

impl Report {
    pub fn new() -> Self {
        Self {
            started: None,
            peers: BTreeMap::new(),
            stats: None,
        }
    }

    pub fn started(&mut self, at: Instant) {
        self.started = Some(at);
    }

    fn peer(&mut self, peer: &PeerId) -> &mut PeerReport {
        self.peers.entry(peer.to_string()).or_default()
    }

    pub fn connected(&mut self, peer: &PeerId) {
        self.peer(peer);
    }

    pub fn video(&mut self, f: &RemoteVideoFrame) {
        let now_us = pattern::clock_us();
        let since_decode = f.decoded_at.elapsed().as_micros() as u32;
        let started = self.started;
        let p = self.peer(&f.peer);
        p.frames_decoded += 1;
        p.width = f.frame.width();
        p.height = f.frame.height();
        p.codec = Some(f.codec.name().to_owned());
        if p.first_frame_ms.is_none() {
            p.first_frame_ms =
                started.map(|s| f.decoded_at.duration_since(s).as_secs_f64() * 1000.0);
        }
        if let Some(stamp) = pattern::read(&f.frame) {
            p.stamped_frames += 1;
            p.latencies_us
                .push(stamp.age_us(now_us).saturating_sub(since_decode));
            match p.last_frame {
                Some(last) if stamp.frame > last => {
                    p.missing_frames += u64::from(stamp.frame - last - 1);
                }
                Some(_) => p.out_of_order += 1,
                None => {}
            }
            p.last_frame = Some(stamp.frame);
        }
    }

    pub fn audio(&mut self, peer: &PeerId, level: f32) {
        let p = self.peer(peer);
        p.audio_intervals += 1;
        p.audio_max_level = p.audio_max_level.max(level);
    }

    pub fn stats(&mut self, stats: &CallStats) {
        self.stats = Some(stats.clone());
    }

    pub fn final_stats(&mut self, stats: Option<CallStats>) {
        if stats.is_some() {
            self.stats = stats;
        }
    }

    pub fn summary(&mut self) -> Summary<'_> {
        for p in self.peers.values_mut() {
            let mut l = p.latencies_us.clone();
            if l.is_empty() {
                continue;
            }
            l.sort_unstable();
            let at = |q: f64| f64::from(l[((l.len() - 1) as f64 * q).round() as usize]) / 1000.0;
            p.latency_ms = Some(Percentiles {
                p50: at(0.5),
                p95: at(0.95),
                max: at(1.0),
                samples: l.len(),
            });
        }
        Summary {
            peers: &self.peers,
            stats: &self.stats,
        }
    }

    /// Whether video and audio arrived from everyone we were in a call with.
    pub fn check_media(&self) -> Result<(), String> {
        if self.peers.is_empty() {
            return Err("no call took place".into());
        }
        for (peer, p) in &self.peers {
            if p.frames_decoded == 0 {
                return Err(format!("no video was decoded from {peer}"));
            }
            if p.audio_intervals == 0 {
                return Err(format!("no audio arrived from {peer}"));
            }
        }
        Ok(())
    }
}
