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

/// Video may go out at this multiple of the estimate, so a keyframe's burst drains quickly
/// while retransmissions cannot push the average far past what the link carries.
const PACING_FACTOR: f64 = 1.5;
/// Most video packets held; beyond it new ones are refused.
const QUEUE_LIMIT: usize = 2000;
/// Video older than this in the queue is dropped: it would arrive too late to be shown, and
/// sending it would only delay what comes after (audio included, in the network's queues).
/// The receiver asks for a keyframe and the picture recovers.
const MAX_VIDEO_AGE: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) struct PriorityPacer {
    bucket: Pacer,
    /// Retransmissions also need budget of their own, a quarter of the estimate, so that a
    /// burst of losses cannot turn into a burst of resends that fills the link.
    rtx_bucket: Pacer,
    audio: HashSet<u32>,
    queue: VecDeque<TaggedPacket>,
    released: VecDeque<TaggedPacket>,
    immediate: VecDeque<TaggedPacket>,
    read: VecDeque<TaggedPacket>,
    /// Recently sent video (ssrc, sequence number), to tell retransmissions from new packets.
    sent: HashSet<(u32, u16)>,
    sent_order: VecDeque<(u32, u16)>,
    dropped_stale: u64,
    dropped_retransmissions: u64,
    /// Bits sent since `window_start`, audio and video, for the debug log.
    window: (Option<Instant>, f64, f64),
}

impl PriorityPacer {
    pub fn new(initial_bps: f64) -> Self {
        Self {
            bucket: Pacer::new(initial_bps * PACING_FACTOR),
            rtx_bucket: Pacer::new(initial_bps * RTX_SHARE),
            audio: HashSet::new(),
            queue: VecDeque::new(),
            released: VecDeque::new(),
            immediate: VecDeque::new(),
            read: VecDeque::new(),
            sent: HashSet::new(),
            sent_order: VecDeque::new(),
            dropped_stale: 0,
            dropped_retransmissions: 0,
            window: (None, 0.0, 0.0),
        }
    }

    fn bits_of(packet: &TaggedPacket) -> f64 {
        match &packet.message.packet {
            Packet::Rtp(rtp) => (rtp.payload.len() * 8 + 12 * 8) as f64,
            _ => 0.0,
        }
    }
}

impl PriorityPacer {
    fn key(packet: &TaggedPacket) -> Option<(u32, u16)> {
        match &packet.message.packet {
            Packet::Rtp(rtp) => Some((rtp.header.ssrc, rtp.header.sequence_number)),
            _ => None,
        }
    }

    fn is_retransmission(&self, packet: &TaggedPacket) -> bool {
        Self::key(packet).is_some_and(|k| self.sent.contains(&k))
    }

    fn remember(&mut self, packet: &TaggedPacket) {
        let Some(key) = Self::key(packet) else { return };
        if self.sent.insert(key) {
            self.sent_order.push_back(key);
            if self.sent_order.len() > RETRANSMIT_MEMORY
                && let Some(old) = self.sent_order.pop_front()
            {
                self.sent.remove(&old);
            }
        }
    }
}

/// The part of the estimate retransmissions may use.
const RTX_SHARE: f64 = 0.25;

/// How many recent video packets are remembered to recognise retransmissions.
const RETRANSMIT_MEMORY: usize = 4096;

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
            self.rtx_bucket
                .set_target_bitrate(*bits_per_second * RTX_SHARE);
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
            self.window.1 += Self::bits_of(&msg);
            self.bucket.consume(Self::bits_of(&msg));
            self.immediate.push_back(msg);
        } else if self.is_retransmission(&msg) {
            // A retransmission is only worth sending if it can go now: on a link that is
            // already full, resending what it dropped is how a congestion collapse starts.
            let bits = Self::bits_of(&msg);
            self.rtx_bucket.refill(msg.now);
            if self.queue.is_empty()
                && self.bucket.can_release(bits)
                && self.rtx_bucket.can_release(bits)
            {
                self.bucket.consume(bits);
                self.rtx_bucket.consume(bits);
                self.window.2 += bits;
                self.immediate.push_back(msg);
            } else {
                self.dropped_retransmissions += 1;
            }
        } else if self.queue.len() < QUEUE_LIMIT {
            self.remember(&msg);
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
        let start = *self.window.0.get_or_insert(now);
        let secs = now.saturating_duration_since(start).as_secs_f64();
        if secs >= 2.0 {
            tracing::debug!(
                rate_bps = self.bucket.target_bitrate() as u64,
                audio_bps = (self.window.1 / secs) as u64,
                video_bps = (self.window.2 / secs) as u64,
                queued = self.queue.len(),
                dropped_stale = self.dropped_stale,
                dropped_retransmissions = self.dropped_retransmissions,
                "pacer"
            );
            self.window = (Some(now), 0.0, 0.0);
        }
        while self
            .queue
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.now) > MAX_VIDEO_AGE)
        {
            self.queue.pop_front();
            self.dropped_stale += 1;
        }
        while let Some(head) = self.queue.front() {
            let bits = Self::bits_of(head);
            if !self.bucket.can_release(bits) {
                break;
            }
            if let Some(mut packet) = self.queue.pop_front() {
                self.bucket.consume(bits);
                self.window.2 += bits;
                // Leaves now: what records departures must see this instant.
                packet.now = now;
                self.released.push_back(packet);
            }
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let head = self.queue.front()?;
        let expires = head.now + MAX_VIDEO_AGE;
        Some(
            self.bucket
                .releasable_at(Self::bits_of(head))
                .map_or(expires, |t| t.min(expires)),
        )
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

    fn rtp(ssrc: u32, seq: u16, bytes: usize, now: Instant) -> TaggedPacket {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                ssrc,
                sequence_number: seq,
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
        for seq in 0..60 {
            p.handle_write(rtp(2, seq, 1100, t0)).unwrap();
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
        p.handle_write(rtp(1, 0, 100, t0)).unwrap();
        let out = p.poll_write().expect("audio leaves at once");
        let Packet::Rtp(r) = &out.message.packet else {
            panic!()
        };
        assert_eq!(r.header.ssrc, 1);
        // The backlog leaves at the paced rate (150 kbit/s here: about 17 of these packets a
        // second); what is still queued after half a second is too old to show and is dropped.
        let mut now = t0;
        let mut sent = first_video;
        while !p.queue.is_empty() {
            now += Duration::from_millis(10);
            assert!(
                now - t0 < Duration::from_secs(1),
                "stale video never dropped"
            );
            p.handle_timeout(now).unwrap();
            while p.poll_write().is_some() {
                sent += 1;
            }
        }
        assert!(
            (5..30).contains(&sent),
            "{sent} of 60 sent in the first half second"
        );
        assert_eq!(p.dropped_stale, 60 - sent as u64);
    }

    #[test]
    fn a_retransmission_goes_only_when_there_is_room() {
        let t0 = Instant::now();
        let mut p = PriorityPacer::new(100_000.0);
        p.handle_write(rtp(2, 7, 1100, t0)).unwrap();
        p.handle_timeout(t0).unwrap();
        assert!(p.poll_write().is_some(), "the original leaves");
        // Asked for again at once: the budget is spent, so the resend is dropped, not queued.
        p.handle_write(rtp(2, 7, 1100, t0)).unwrap();
        assert!(p.poll_write().is_none());
        assert!(p.queue.is_empty());
        assert_eq!(p.dropped_retransmissions, 1);
        // A second later there is room again, and a resend goes straight out.
        let later = t0 + Duration::from_secs(1);
        p.handle_timeout(later).unwrap();
        let mut again = rtp(2, 7, 1100, later);
        again.now = later;
        p.handle_write(again).unwrap();
        assert!(p.poll_write().is_some());
    }
}
