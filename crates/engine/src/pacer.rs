//! A pacer that never makes audio wait. Video packets leave at a multiple of the congestion
//! controller's estimate, so a keyframe's burst is spread out instead of overflowing a
//! router's queue; audio and RTCP go straight through, charged to the same budget so video
//! yields to them.
//!
//! It takes the place of `rtc`'s pacer (one FIFO queue for everything, at exactly the
//! estimate), which holds audio behind queued video on a slow link.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Pacer, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;

/// Video may burst to this multiple of the estimate (libwebrtc uses 2.5).
const PACING_FACTOR: f64 = 2.5;
/// Most video packets held; beyond it new ones are refused.
const QUEUE_LIMIT: usize = 2000;

pub(crate) struct PriorityPacer {
    bucket: Pacer,
    audio: HashSet<u32>,
    queue: VecDeque<TaggedPacket>,
    released: VecDeque<TaggedPacket>,
    immediate: VecDeque<TaggedPacket>,
    read: VecDeque<TaggedPacket>,
}

impl PriorityPacer {
    pub fn new(initial_bps: f64) -> Self {
        Self {
            bucket: Pacer::new(initial_bps * PACING_FACTOR),
            audio: HashSet::new(),
            queue: VecDeque::new(),
            released: VecDeque::new(),
            immediate: VecDeque::new(),
            read: VecDeque::new(),
        }
    }

    fn bits_of(packet: &TaggedPacket) -> f64 {
        match &packet.message.packet {
            Packet::Rtp(rtp) => (rtp.payload.len() * 8 + 12 * 8) as f64,
            _ => 0.0,
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for PriorityPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        // The estimate travels on the read leg, attached to the feedback that produced it.
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.bucket
                .set_target_bitrate(*bits_per_second * PACING_FACTOR);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let audio = match &msg.message.packet {
            Packet::Rtp(rtp) => self.audio.contains(&rtp.header.ssrc),
            // RTCP (and anything else) is control traffic: never paced.
            _ => {
                self.immediate.push_back(msg);
                return Ok(());
            }
        };
        self.bucket.refill(msg.now);
        if audio {
            // Audio never waits; video pays for it.
            self.bucket.consume(Self::bits_of(&msg));
            self.immediate.push_back(msg);
        } else if self.queue.len() < QUEUE_LIMIT {
            self.queue.push_back(msg);
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.immediate
            .pop_front()
            .or_else(|| self.released.pop_front())
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.bucket.refill(now);
        while let Some(head) = self.queue.front() {
            let bits = Self::bits_of(head);
            if !self.bucket.can_release(bits) {
                break;
            }
            if let Some(mut packet) = self.queue.pop_front() {
                self.bucket.consume(bits);
                // Leaves now: what records departures must see this instant.
                packet.now = now;
                self.released.push_back(packet);
            }
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let head = self.queue.front()?;
        self.bucket.releasable_at(Self::bits_of(head))
    }
}

impl Interceptor for PriorityPacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("audio/") {
            self.audio.insert(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::TaggedPacket;
    use std::time::Duration;

    fn rtp(ssrc: u32, bytes: usize, now: Instant) -> TaggedPacket {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from(vec![0u8; bytes]),
        };
        TaggedPacket {
            now,
            transport: Default::default(),
            message: Packet::Rtp(packet).into(),
        }
    }

    #[test]
    fn audio_goes_straight_through_a_video_backlog() {
        let t0 = Instant::now();
        let mut p = PriorityPacer::new(100_000.0);
        p.bind_local_stream(&StreamInfo {
            ssrc: 1,
            mime_type: "audio/opus".into(),
            ..Default::default()
        });
        // A keyframe: 60 video packets, far more than the budget allows at once.
        for _ in 0..60 {
            p.handle_write(rtp(2, 1100, t0)).unwrap();
        }
        let mut first_video = 0;
        while let Some(out) = p.poll_write() {
            let _ = out;
            first_video += 1;
        }
        assert!(
            first_video < 60,
            "video must be paced, {first_video} left at once"
        );
        p.handle_write(rtp(1, 100, t0)).unwrap();
        let out = p.poll_write().expect("audio leaves at once");
        let Packet::Rtp(r) = &out.message.packet else {
            panic!()
        };
        assert_eq!(r.header.ssrc, 1);
        // The video backlog drains over time at the paced rate.
        let mut now = t0;
        let mut sent = first_video;
        while sent < 60 {
            now += Duration::from_millis(10);
            assert!(now - t0 < Duration::from_secs(3), "backlog never drained");
            p.handle_timeout(now).unwrap();
            while p.poll_write().is_some() {
                sent += 1;
            }
        }
    }
}
