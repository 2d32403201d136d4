//! The binary message that carries one picture to the page (the answer to its `next_picture`
//! command): a 20-byte header, the sender's id, then either the I420 planes as they are (the
//! page converts to RGB and draws) or one encoded frame (the page decodes it with WebCodecs
//! and draws). See `ui/src/video/`.
//!
//! Decoded pictures:
//!
//! ```text
//! 0      u8   kind: 1 = a remote peer's picture, 2 = our self-view
//! 1      u8   n, the id's length in bytes (at most 255)
//! 2..4   u16  reserved, 0
//! 4..8   u32  width, little-endian (even)
//! 8..12  u32  height, little-endian (even)
//! 12..20 f64  when it was sent, ms since the Unix epoch, little-endian (the page measures
//!             the delay from sending to drawing with it)
//! 20..   n bytes of peer id (UTF-8), then zero padding to a multiple of 4
//! ...    Y (width*height), U (width/2*height/2), V (width/2*height/2)
//! ```
//!
//! Encoded frames:
//!
//! ```text
//! 0      u8   kind: 3 = a remote peer's encoded frame
//! 1      u8   n, the id's length in bytes
//! 2      u8   codec: 1 = VP8, 2 = H.264 (Annex B)
//! 3      u8   flags: bit 0 = keyframe
//! 4..8   u32  seq, little-endian: one more than the previous frame from this peer (a gap
//!             means frames were dropped on the way; the page then asks for a keyframe)
//! 8..12  u32  RTP timestamp (90 kHz), little-endian
//! 12..20 f64  when it was sent, as above
//! 20..   n bytes of peer id, zero padding to a multiple of 4, then the frame
//! ```

use hearth_engine::{EncodedVideoFrame, I420Frame, VideoCodec};

/// A remote peer's picture.
pub const KIND_REMOTE: u8 = 1;
/// Our self-view.
pub const KIND_LOCAL: u8 = 2;
/// A remote peer's encoded frame.
const KIND_ENCODED: u8 = 3;
/// Codec byte of an encoded frame: VP8.
const CODEC_VP8: u8 = 1;
/// Codec byte of an encoded frame: H.264.
const CODEC_H264: u8 = 2;
/// Header bytes before the id.
const HEADER: usize = 20;

/// The header's first 12 bytes, then the time, the id and its padding: the caller appends
/// the body. One allocation.
fn start(head: [u8; 12], peer: &str, body: usize) -> Vec<u8> {
    let id = &peer.as_bytes()[..peer.len().min(255)];
    let padded = id.len().div_ceil(4) * 4;
    let mut out = Vec::with_capacity(HEADER + padded + body);
    out.extend_from_slice(&head);
    out[1] = id.len() as u8;
    out.extend_from_slice(&crate::session::now_ms().to_le_bytes());
    out.extend_from_slice(id);
    out.resize(HEADER + padded, 0);
    out
}

/// A decoded picture's message ([`KIND_REMOTE`] or [`KIND_LOCAL`]): one allocation, one copy
/// of the planes.
pub fn picture_message(kind: u8, peer: &str, frame: &I420Frame) -> Vec<u8> {
    let planes = frame.as_bytes();
    let mut head = [0u8; 12];
    head[0] = kind;
    head[4..8].copy_from_slice(&frame.width().to_le_bytes());
    head[8..12].copy_from_slice(&frame.height().to_le_bytes());
    let mut out = start(head, peer, planes.len());
    out.extend_from_slice(planes);
    out
}

/// An encoded frame's message (`seq` wraps at 2^32; the page compares modulo that).
pub fn frame_message(frame: &EncodedVideoFrame) -> Vec<u8> {
    let mut head = [0u8; 12];
    head[0] = KIND_ENCODED;
    head[2] = match frame.codec {
        VideoCodec::Vp8 => CODEC_VP8,
        VideoCodec::H264 => CODEC_H264,
    };
    head[3] = u8::from(frame.keyframe);
    head[4..8].copy_from_slice(&(frame.seq as u32).to_le_bytes());
    head[8..12].copy_from_slice(&frame.rtp_timestamp.to_le_bytes());
    let mut out = start(head, frame.peer.as_str(), frame.data.len());
    out.extend_from_slice(&frame.data);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A decoded picture's message read back.
    #[derive(Debug, PartialEq)]
    struct Decoded<'a> {
        /// [`KIND_REMOTE`] or [`KIND_LOCAL`].
        kind: u8,
        /// The sender's id.
        peer: &'a str,
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
        /// When it was sent, ms since the Unix epoch.
        sent_ms: f64,
        /// The I420 planes.
        planes: &'a [u8],
    }

    /// Reads a message; `None` when it is malformed.
    fn decode(buf: &[u8]) -> Option<Decoded<'_>> {
        let header = buf.get(..HEADER)?;
        let n = usize::from(header[1]);
        let width = u32::from_le_bytes(header[4..8].try_into().ok()?);
        let height = u32::from_le_bytes(header[8..12].try_into().ok()?);
        let sent_ms = f64::from_le_bytes(header[12..20].try_into().ok()?);
        let start = HEADER + n.div_ceil(4) * 4;
        let peer = std::str::from_utf8(buf.get(HEADER..HEADER + n)?).ok()?;
        let planes = buf.get(start..)?;
        let luma = (width as usize).checked_mul(height as usize)?;
        (planes.len() == luma + luma / 2).then_some(Decoded {
            kind: header[0],
            peer,
            width,
            height,
            sent_ms,
            planes,
        })
    }

    #[test]
    fn encoded_frames_carry_their_header() {
        let frame = EncodedVideoFrame {
            peer: hearth_engine::PeerId::from("ab"),
            codec: VideoCodec::Vp8,
            data: bytes::Bytes::from_static(&[1, 2, 3, 4, 5]),
            keyframe: true,
            seq: (1 << 32) + 7,
            rtp_timestamp: 90_000,
            present_at: std::time::Instant::now(),
        };
        let msg = frame_message(&frame);
        assert_eq!(msg.len(), HEADER + 4 + 5);
        assert_eq!(&msg[..4], &[KIND_ENCODED, 2, CODEC_VP8, 1]);
        assert_eq!(u32::from_le_bytes(msg[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(msg[8..12].try_into().unwrap()), 90_000);
        assert_eq!(&msg[HEADER..HEADER + 2], b"ab");
        assert_eq!(&msg[HEADER + 4..], &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn round_trips() {
        let mut f = I420Frame::black(64, 48);
        f.planes_mut().0[5] = 200;
        let msg = picture_message(KIND_REMOTE, "3f2a-peer", &f);
        assert_eq!(msg.len(), HEADER + 12 + 64 * 48 * 3 / 2);
        let d = decode(&msg).unwrap();
        assert_eq!(
            (d.kind, d.peer, d.width, d.height),
            (KIND_REMOTE, "3f2a-peer", 64, 48)
        );
        assert_eq!(d.planes, f.as_bytes());
        assert!(decode(&msg[..msg.len() - 1]).is_none());
        let local = picture_message(KIND_LOCAL, "", &f);
        assert_eq!(decode(&local).unwrap().peer, "");
    }
}
