//! The moving test pattern. Each picture carries its frame number and capture time in a strip
//! of black and white blocks along its top edge, so a receiver can prove that frames arrive in
//! order with none missing and measure capture-to-display latency from the pixels alone.
//!
//! Strip layout: 40 blocks per row, 2 rows, square blocks `width / 40` pixels wide; 80 bits,
//! most significant first: `0xA5`, the frame number (32 bits), the capture time (low 32 bits
//! of microseconds since the Unix epoch) and a check byte. White (235) is 1, black (16) is 0.

use std::time::{SystemTime, UNIX_EPOCH};

use hearth_codec::I420Frame;

const COLUMNS: usize = 40;
const BYTES: usize = 10;
const MAGIC: u8 = 0xA5;
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// What a picture's strip says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The frame's number, from 0.
    pub frame: u32,
    /// Capture time: low 32 bits of microseconds since the Unix epoch.
    pub capture_us: u32,
}

impl Stamp {
    /// Microseconds from capture to `now_us` (same clock, wrapping every 71 minutes).
    pub fn age_us(&self, now_us: u32) -> u32 {
        now_us.wrapping_sub(self.capture_us)
    }
}

/// The low 32 bits of the wall clock in microseconds, the clock stamps use.
pub fn clock_us() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u32)
        .unwrap_or(0)
}

fn encode(stamp: Stamp) -> [u8; BYTES] {
    let mut b = [0u8; BYTES];
    b[0] = MAGIC;
    b[1..5].copy_from_slice(&stamp.frame.to_be_bytes());
    b[5..9].copy_from_slice(&stamp.capture_us.to_be_bytes());
    b[9] = b[..9].iter().fold(0x5A, |acc, x| acc ^ x);
    b
}

fn block_size(width: u32) -> f32 {
    width as f32 / COLUMNS as f32
}

/// Bar colours (Y, U, V): white, yellow, cyan, green, magenta, red, blue, black.
const BARS: [(u8, u8, u8); 8] = [
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (16, 128, 128),
];

/// Draws frame `frame` of the pattern: colour bars scrolling sideways, a bright square
/// moving the other way, and the stamp strip on top.
pub fn render(width: u32, height: u32, stamp: Stamp) -> I420Frame {
    let mut f = I420Frame::black(width, height);
    let (w, h) = (f.width() as usize, f.height() as usize);
    let shift = (stamp.frame as usize * 4) % w.max(1);
    let bar_width = (w / BARS.len()).max(1);
    let (y, u, v) = f.planes_mut();

    // Every row of the bars is the same, so draw one and copy it.
    let mut row = vec![0u8; w];
    for (x, p) in row.iter_mut().enumerate() {
        *p = BARS[((x + shift) / bar_width) % BARS.len()].0;
    }
    for line in y.chunks_exact_mut(w) {
        line.copy_from_slice(&row);
    }
    let (cw, ch) = (w / 2, h / 2);
    let mut urow = vec![0u8; cw];
    let mut vrow = vec![0u8; cw];
    for x in 0..cw {
        let bar = BARS[((x * 2 + shift) / bar_width) % BARS.len()];
        urow[x] = bar.1;
        vrow[x] = bar.2;
    }
    for line in u.chunks_exact_mut(cw) {
        line.copy_from_slice(&urow);
    }
    for line in v.chunks_exact_mut(cw) {
        line.copy_from_slice(&vrow);
    }

    // The square: a sixth of the height, moving right to left, half way down.
    let side = (h / 6).max(2) & !1;
    let travel = w.saturating_sub(side).max(1);
    let x0 = (travel - (stamp.frame as usize * 6) % travel) & !1;
    let y0 = (h / 2) & !1;
    for row in y0..(y0 + side).min(h) {
        y[row * w + x0..row * w + (x0 + side).min(w)].fill(WHITE);
    }
    for row in y0 / 2..((y0 + side) / 2).min(ch) {
        u[row * cw + x0 / 2..row * cw + ((x0 + side) / 2).min(cw)].fill(128);
        v[row * cw + x0 / 2..row * cw + ((x0 + side) / 2).min(cw)].fill(128);
    }

    // The strip.
    let bits = encode(stamp);
    let bs = block_size(f.width());
    let (y, u, v) = f.planes_mut();
    for bit in 0..BYTES * 8 {
        let on = bits[bit / 8] & (0x80 >> (bit % 8)) != 0;
        let (col, line) = (bit % COLUMNS, bit / COLUMNS);
        let (x0, x1) = (
            (col as f32 * bs) as usize,
            (((col + 1) as f32) * bs) as usize,
        );
        let (y0, y1) = (
            (line as f32 * bs) as usize,
            (((line + 1) as f32) * bs) as usize,
        );
        for row in y0..y1.min(h) {
            y[row * w + x0..row * w + x1.min(w)].fill(if on { WHITE } else { BLACK });
        }
        for row in y0 / 2..(y1 / 2).min(ch) {
            u[row * cw + x0 / 2..row * cw + (x1 / 2).min(cw)].fill(128);
            v[row * cw + x0 / 2..row * cw + (x1 / 2).min(cw)].fill(128);
        }
    }
    f
}

/// Reads the strip of a (possibly compressed and scaled) test-pattern picture. `None` when
/// the picture carries no valid stamp.
pub fn read(frame: &I420Frame) -> Option<Stamp> {
    let w = frame.width() as usize;
    let h = frame.height() as usize;
    let bs = block_size(frame.width());
    if bs < 2.0 || (bs * 2.0) as usize > h {
        return None;
    }
    let y = frame.y();
    let mut bytes = [0u8; BYTES];
    for bit in 0..BYTES * 8 {
        let (col, line) = (bit % COLUMNS, bit / COLUMNS);
        // Average the middle half of the block, away from edges the codec blurs.
        let cx = (col as f32 + 0.5) * bs;
        let cy = (line as f32 + 0.5) * bs;
        let r = (bs / 4.0).max(0.5);
        let (x0, x1) = (
            (cx - r) as usize,
            ((cx + r) as usize).max((cx - r) as usize + 1),
        );
        let (y0, y1) = (
            (cy - r) as usize,
            ((cy + r) as usize).max((cy - r) as usize + 1),
        );
        let mut sum = 0u32;
        let mut n = 0u32;
        for row in y0..y1.min(h) {
            for &p in &y[row * w + x0..row * w + x1.min(w)] {
                sum += u32::from(p);
                n += 1;
            }
        }
        if n > 0 && sum / n > u32::from(WHITE / 2 + BLACK / 2) {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    let check = bytes[..9].iter().fold(0x5A, |acc, x| acc ^ x);
    if bytes[0] != MAGIC || bytes[9] != check {
        return None;
    }
    Some(Stamp {
        frame: u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
        capture_us: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_codec::{EncoderConfig, VideoCodec};

    #[test]
    fn stamp_survives_rendering_and_scaling() {
        let stamp = Stamp {
            frame: 123_456,
            capture_us: 0xDEAD_BEEF,
        };
        let f = render(640, 480, stamp);
        assert_eq!(read(&f), Some(stamp));
        assert_eq!(read(&f.scaled(320, 240)), Some(stamp));
        assert_eq!(read(&f.scaled(480, 360)), Some(stamp));
    }

    #[test]
    fn a_plain_picture_has_no_stamp() {
        assert_eq!(read(&I420Frame::black(640, 480)), None);
    }

    #[test]
    fn stamp_survives_both_codecs_at_a_low_bitrate() {
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let config = EncoderConfig {
                bitrate_bps: 250_000,
                max_fps: 30.0,
            };
            let mut enc = hearth_codec::encoder(codec, config).unwrap();
            let mut dec = hearth_codec::decoder(codec).unwrap();
            let mut buf = Vec::new();
            for n in 0..60 {
                let stamp = Stamp {
                    frame: n,
                    capture_us: n * 33_333,
                };
                if enc
                    .encode(&render(640, 360, stamp), false, &mut buf)
                    .unwrap()
                    .is_none()
                {
                    continue;
                }
                let out = dec.decode(&buf).unwrap().unwrap();
                assert_eq!(read(&out), Some(stamp), "{codec:?} frame {n}");
            }
        }
    }
}
