//! RTP framing for video: cutting encoded frames into packets, and putting received packets
//! back together into frames.
//!
//! The assembler is written here rather than taken from `rtc::media`'s sample builder because
//! that one releases a frame only when the next frame's first packet arrives — one frame
//! behind. This one releases a frame the moment its marker-bit packet completes it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hearth_codec::VideoCodec;
use rtc::rtp;
use rtc::rtp::codec::h264::{H264Packet, H264Payloader};
use rtc::rtp::codec::vp8::{Vp8Packet, Vp8Payloader};
use rtc::rtp::packetizer::{Depacketizer, Payloader};

/// Largest RTP payload we send: leaves room for SRTP, the RTP header, extensions and
/// IPv6/UDP/TURN overheads inside a 1280-byte path MTU.
pub(crate) const MAX_PAYLOAD: usize = 1100;

/// Cuts encoded frames of one codec into RTP packets for one stream.
pub(crate) struct VideoPacketizer {
    payloader: Box<dyn Payloader>,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
}

impl VideoPacketizer {
    pub fn new(codec: VideoCodec, payload_type: u8, ssrc: u32) -> Self {
        let payloader: Box<dyn Payloader> = match codec {
            VideoCodec::H264 => Box::new(H264Payloader::default()),
            VideoCodec::Vp8 => {
                let mut p = Vp8Payloader::default();
                p.enable_picture_id = true;
                Box::new(p)
            }
        };
        Self {
            payloader,
            payload_type,
            ssrc,
            sequence: rand::random(),
        }
    }

    /// Packets for one frame; the last one carries the marker bit.
    pub fn packetize(&mut self, frame: &Bytes, timestamp: u32) -> Vec<rtp::Packet> {
        let payloads = match self.payloader.payload(MAX_PAYLOAD, frame) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not packetize a video frame");
                return Vec::new();
            }
        };
        let last = payloads.len().saturating_sub(1);
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let sequence_number = self.sequence;
                self.sequence = self.sequence.wrapping_add(1);
                rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: i == last,
                        payload_type: self.payload_type,
                        sequence_number,
                        timestamp,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
                    payload,
                }
            })
            .collect()
    }
}

/// A whole received frame, depacketized.
#[derive(Debug)]
pub(crate) struct AssembledFrame {
    pub data: Bytes,
    pub timestamp: u32,
    pub keyframe: bool,
}

/// What the assembler found.
#[derive(Debug, Default)]
pub(crate) struct Assembly {
    pub frames: Vec<AssembledFrame>,
    /// Packets were lost for good; the decoder needs a keyframe to recover.
    pub request_keyframe: bool,
}

/// How long a gap may stay open, waiting for a retransmission, before the frames around it
/// are given up.
const MAX_GAP_WAIT: Duration = Duration::from_millis(200);
/// Most packets held while waiting.
const MAX_HELD: usize = 2000;

/// Puts received RTP packets of one video stream back into frames.
pub(crate) struct FrameAssembler {
    codec: VideoCodec,
    /// Held packets by unwrapped sequence number.
    held: BTreeMap<u64, rtp::Packet>,
    /// The next sequence number expected to start or continue a frame.
    next: Option<u64>,
    /// Highest unwrapped sequence number seen.
    highest: Option<u64>,
    /// Since when the packet at `next` has been missing while later ones are here.
    gap_since: Option<Instant>,
    /// After a loss, frames are dropped until a keyframe arrives.
    need_keyframe: bool,
}

impl FrameAssembler {
    pub fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            held: BTreeMap::new(),
            next: None,
            highest: None,
            gap_since: None,
            need_keyframe: true,
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The decoder failed: drop frames until the next keyframe.
    pub fn want_keyframe(&mut self) {
        self.need_keyframe = true;
    }

    fn unwrap_seq(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            return (1u64 << 32) + u64::from(seq);
        };
        let base = highest & !0xFFFF;
        let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000];
        candidates
            .into_iter()
            .map(|c| c + u64::from(seq))
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(base + u64::from(seq))
    }

    /// Takes one packet in; returns any frames it completed.
    pub fn push(&mut self, packet: rtp::Packet, now: Instant) -> Assembly {
        let seq = self.unwrap_seq(packet.header.sequence_number);
        if self.next.is_some_and(|next| seq < next) {
            // A late duplicate or a retransmission of something already given up.
            return Assembly::default();
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        self.held.insert(seq, packet);
        let mut out = Assembly::default();
        self.drain(now, &mut out);
        if self.held.len() > MAX_HELD {
            self.skip_gap(&mut out);
            self.drain(now, &mut out);
        }
        out
    }

    /// Call periodically: gives up on gaps that waited too long.
    pub fn poll(&mut self, now: Instant) -> Assembly {
        let mut out = Assembly::default();
        if self
            .gap_since
            .is_some_and(|since| now.duration_since(since) > MAX_GAP_WAIT)
        {
            self.skip_gap(&mut out);
            self.drain(now, &mut out);
        }
        out
    }

    fn is_head(&self, packet: &rtp::Packet) -> bool {
        match self.codec {
            VideoCodec::H264 => H264Packet::default().is_partition_head(&packet.payload),
            VideoCodec::Vp8 => Vp8Packet::default().is_partition_head(&packet.payload),
        }
    }

    /// Moves `next` past the missing packets to the next frame start that is held.
    fn skip_gap(&mut self, out: &mut Assembly) {
        let from = self.next.unwrap_or(0);
        let start = self
            .held
            .range(from + 1..)
            .find(|(_, p)| self.is_head(p))
            .map(|(s, _)| *s);
        match start {
            Some(s) => {
                self.held = self.held.split_off(&s);
                self.next = Some(s);
            }
            None => {
                self.held.clear();
                self.next = self.highest.map(|h| h + 1);
            }
        }
        self.gap_since = None;
        self.need_keyframe = true;
        out.request_keyframe = true;
    }

    fn drain(&mut self, now: Instant, out: &mut Assembly) {
        loop {
            let next = match self.next {
                Some(n) => n,
                None => {
                    // The first frame start we have decides where the stream begins.
                    let Some(first) = self
                        .held
                        .iter()
                        .find(|(_, p)| self.is_head(p))
                        .map(|(s, _)| *s)
                    else {
                        return;
                    };
                    self.held = self.held.split_off(&first);
                    self.next = Some(first);
                    first
                }
            };
            // Walk the contiguous run from `next` to a marker.
            let mut end = None;
            let mut seq = next;
            while let Some(p) = self.held.get(&seq) {
                if p.header.marker {
                    end = Some(seq);
                    break;
                }
                seq += 1;
            }
            let Some(end) = end else {
                let missing =
                    !self.held.contains_key(&seq) && self.highest.is_some_and(|h| h > seq);
                if missing {
                    self.gap_since.get_or_insert(now);
                } else {
                    self.gap_since = None;
                }
                return;
            };
            self.gap_since = None;
            let packets: Vec<rtp::Packet> =
                (next..=end).filter_map(|s| self.held.remove(&s)).collect();
            self.next = Some(end + 1);
            let timestamp = packets.first().map_or(0, |p| p.header.timestamp);
            if packets.iter().any(|p| p.header.timestamp != timestamp) {
                // The run spans two frames: a frame's tail and the next one's head were lost.
                self.need_keyframe = true;
                out.request_keyframe = true;
                continue;
            }
            match self.depacketize(&packets) {
                Some(data) => {
                    let keyframe = is_keyframe(self.codec, &data, &packets);
                    if self.need_keyframe && !keyframe {
                        out.request_keyframe = true;
                        continue;
                    }
                    self.need_keyframe = false;
                    out.frames.push(AssembledFrame {
                        data,
                        timestamp,
                        keyframe,
                    });
                }
                None => {
                    self.need_keyframe = true;
                    out.request_keyframe = true;
                }
            }
        }
    }

    fn depacketize(&self, packets: &[rtp::Packet]) -> Option<Bytes> {
        let mut data = BytesMut::new();
        match self.codec {
            VideoCodec::H264 => {
                let mut d = H264Packet::default();
                for p in packets {
                    data.extend_from_slice(&d.depacketize(&p.payload).ok()?);
                }
            }
            VideoCodec::Vp8 => {
                let mut d = Vp8Packet::default();
                for p in packets {
                    data.extend_from_slice(&d.depacketize(&p.payload).ok()?);
                }
            }
        }
        (!data.is_empty()).then(|| data.freeze())
    }
}

/// Whether a depacketized frame can be decoded on its own.
fn is_keyframe(codec: VideoCodec, data: &[u8], packets: &[rtp::Packet]) -> bool {
    match codec {
        // Any IDR slice (type 5) or SPS (type 7) in the Annex B stream.
        VideoCodec::H264 => data
            .windows(4)
            .filter(|w| w[..3] == [0, 0, 1])
            .any(|w| matches!(w[3] & 0x1F, 5 | 7)),
        // The VP8 payload header's P bit (inverted key frame flag) in the first packet.
        VideoCodec::Vp8 => {
            let _ = packets;
            data.first().is_some_and(|b| b & 0x01 == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_for(codec: VideoCodec, count: u32, size: usize) -> Vec<rtp::Packet> {
        let mut p = VideoPacketizer::new(codec, 96, 1);
        let mut out = Vec::new();
        for n in 0..count {
            // A fake H.264 frame: one IDR NAL unit first, then non-IDR slices.
            let nal = if n == 0 { 0x65 } else { 0x41 };
            let mut frame = vec![0, 0, 0, 1, nal];
            frame.extend((0..size).map(|i| (i % 200 + 1) as u8));
            out.extend(p.packetize(&Bytes::from(frame), n * 3000));
        }
        out
    }

    #[test]
    fn releases_each_frame_on_its_marker() {
        let packets = frames_for(VideoCodec::H264, 3, 3000);
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let now = Instant::now();
        let mut released = Vec::new();
        for p in packets {
            let marker = p.header.marker;
            let got = a.push(p, now);
            // A frame comes out exactly with its last packet, never later.
            assert_eq!(got.frames.len(), usize::from(marker));
            released.extend(got.frames.into_iter().map(|f| f.timestamp));
        }
        assert_eq!(released, vec![0, 3000, 6000]);
    }

    #[test]
    fn reorders_within_a_frame() {
        let mut packets = frames_for(VideoCodec::H264, 1, 3000);
        packets.swap(0, 1);
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let now = Instant::now();
        let frames: Vec<_> = packets
            .into_iter()
            .flat_map(|p| a.push(p, now).frames)
            .collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].keyframe);
    }

    #[test]
    fn a_lost_packet_waits_then_asks_for_a_keyframe() {
        let mut packets = frames_for(VideoCodec::H264, 3, 3000);
        let per_frame = packets.len() / 3;
        packets.remove(per_frame + 1); // inside frame 1
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let t0 = Instant::now();
        let mut frames = Vec::new();
        for p in packets {
            frames.extend(a.push(p, t0).frames);
        }
        assert_eq!(
            frames.len(),
            1,
            "frame 0 only; 1 is incomplete and 2 waits behind it"
        );
        assert!(a.poll(t0 + Duration::from_millis(50)).frames.is_empty());
        let late = a.poll(t0 + Duration::from_millis(300));
        assert!(late.request_keyframe);
        assert!(
            late.frames.is_empty(),
            "delta frame 2 must not be decoded without a keyframe"
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut a = FrameAssembler::new(VideoCodec::H264);
        let mut p = VideoPacketizer::new(VideoCodec::H264, 96, 1);
        p.sequence = 65_530;
        let now = Instant::now();
        let mut count = 0;
        for n in 0..4u32 {
            let nal = if n == 0 { 0x65 } else { 0x41 };
            let mut frame = vec![0, 0, 0, 1, nal];
            frame.extend(std::iter::repeat_n(7u8, 2500));
            for pkt in p.packetize(&Bytes::from(frame), n * 3000) {
                count += a.push(pkt, now).frames.len();
            }
        }
        assert_eq!(count, 4);
    }
}
