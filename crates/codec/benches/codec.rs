//! Encode and decode time per frame, H.264 and VP8, at 640x480 and 1280x720, on moving content.
//!
//! `cargo bench -p hearth-codec --bench codec` (optimised build). Prints one line per case:
//! mean and p95 milliseconds per frame for encoding and for decoding, and the bitrate produced.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use hearth_codec::{EncoderConfig, I420Frame, VideoCodec};

/// Moving content: a gradient that shifts each frame, with a block of texture moving across.
fn picture(width: u32, height: u32, n: u32) -> I420Frame {
    let mut f = I420Frame::black(width, height);
    let w = f.width() as usize;
    let (y, u, v) = f.planes_mut();
    for (i, p) in y.iter_mut().enumerate() {
        let (x, row) = (i % w, i / w);
        let moving = (x + n as usize * 4) % w;
        *p = (16 + (moving + row / 2) % 200) as u8;
        if (x + row + n as usize * 7) % 97 < 3 {
            *p = 235;
        }
    }
    for (i, p) in u.iter_mut().enumerate() {
        *p = (64 + (i + n as usize) % 128) as u8;
    }
    v.fill(128);
    f
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let frames = 300u32;
    for (width, height, bitrate) in [(640, 480, 1_000_000), (1280, 720, 2_500_000)] {
        let pictures: Vec<I420Frame> = (0..frames).map(|n| picture(width, height, n)).collect();
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let config = EncoderConfig {
                bitrate_bps: bitrate,
                max_fps: 30.0,
            };
            let mut enc = hearth_codec::encoder(codec, config).unwrap();
            let mut dec = hearth_codec::decoder(codec).unwrap();
            let mut enc_ms = Vec::new();
            let mut dec_ms = Vec::new();
            let mut bytes = 0usize;
            let mut out = Vec::new();
            for p in &pictures {
                let t = Instant::now();
                let produced = enc.encode(p, false, &mut out).unwrap();
                enc_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                if produced.is_none() {
                    continue;
                }
                bytes += out.len();
                let t = Instant::now();
                dec.decode(&out).unwrap();
                dec_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            enc_ms.sort_by(f64::total_cmp);
            dec_ms.sort_by(f64::total_cmp);
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "{:>4} {width}x{height}: encode mean {:.2} ms p95 {:.2} ms | decode mean {:.2} ms p95 {:.2} ms | {:.0} kbit/s ({} of {frames} frames encoded)",
                codec.name(),
                mean(&enc_ms),
                percentile(&enc_ms, 0.95),
                mean(&dec_ms),
                percentile(&dec_ms, 0.95),
                bytes as f64 * 8.0 * 30.0 / f64::from(frames) / 1000.0,
                dec_ms.len(),
            );
        }
    }
}
