//! The binary message that carries one picture to the page (the answer to its `next_picture`
//! command): a 20-byte header, the sender's id, then the I420 planes as they are. The page
//! converts to RGB and draws (`ui/src/video/`).
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

use hearth_engine::I420Frame;

/// A remote peer's picture.
pub const KIND_REMOTE: u8 = 1;
/// Our self-view.
pub const KIND_LOCAL: u8 = 2;
/// Header bytes before the id.
pub const HEADER: usize = 20;

/// Builds the message: one allocation, one copy of the planes.
pub fn encode(kind: u8, peer: &str, frame: &I420Frame) -> Vec<u8> {
    let id = &peer.as_bytes()[..peer.len().min(255)];
    let padded = id.len().div_ceil(4) * 4;
    let planes = frame.as_bytes();
    let mut out = Vec::with_capacity(HEADER + padded + planes.len());
    out.push(kind);
    out.push(id.len() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&frame.width().to_le_bytes());
    out.extend_from_slice(&frame.height().to_le_bytes());
    let sent_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    out.extend_from_slice(&sent_ms.to_le_bytes());
    out.extend_from_slice(id);
    out.resize(HEADER + padded, 0);
    out.extend_from_slice(planes);
    out
}

/// A message read back (for tests and tools).
#[derive(Debug, PartialEq)]
pub struct Decoded<'a> {
    /// [`KIND_REMOTE`] or [`KIND_LOCAL`].
    pub kind: u8,
    /// The sender's id.
    pub peer: &'a str,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// When it was sent, ms since the Unix epoch.
    pub sent_ms: f64,
    /// The I420 planes.
    pub planes: &'a [u8],
}

/// Reads a message; `None` when it is malformed.
pub fn decode(buf: &[u8]) -> Option<Decoded<'_>> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips() {
        let mut f = I420Frame::black(64, 48);
        f.planes_mut().0[5] = 200;
        let msg = encode(KIND_REMOTE, "3f2a-peer", &f);
        assert_eq!(msg.len(), HEADER + 12 + 64 * 48 * 3 / 2);
        let d = decode(&msg).unwrap();
        assert_eq!(
            (d.kind, d.peer, d.width, d.height),
            (KIND_REMOTE, "3f2a-peer", 64, 48)
        );
        assert_eq!(d.planes, f.as_bytes());
        assert!(decode(&msg[..msg.len() - 1]).is_none());
        let local = encode(KIND_LOCAL, "", &f);
        assert_eq!(decode(&local).unwrap().peer, "");
    }
}
