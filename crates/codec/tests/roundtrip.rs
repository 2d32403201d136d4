//! Encode and decode through the real codec libraries.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use hearth_codec::{EncoderConfig, FrameKind, I420Frame, VideoCodec};

/// A frame with a gradient and a bright square at `offset`, so consecutive frames differ.
fn picture(width: u32, height: u32, offset: u32) -> I420Frame {
    let mut f = I420Frame::black(width, height);
    let w = f.width() as usize;
    let (y, _, _) = f.planes_mut();
    for (i, p) in y.iter_mut().enumerate() {
        let (x, row) = (i % w, i / w);
        *p = (16 + (x + row) % 200) as u8;
        if (x as u32).wrapping_sub(offset) < 64 && row < 64 {
            *p = 235;
        }
    }
    f
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .sum::<f64>()
        / a.len() as f64
}

fn roundtrip(codec: VideoCodec) {
    // Asking for a bitrate before the first frame is fine too.
    hearth_codec::encoder(codec, EncoderConfig::default())
        .unwrap()
        .set_bitrate(500_000)
        .unwrap();
    let mut enc = hearth_codec::encoder(codec, EncoderConfig::default()).unwrap();
    let mut dec = hearth_codec::decoder(codec).unwrap();
    let mut buf = Vec::new();
    for n in 0..20u32 {
        let src = picture(320, 240, n * 8);
        let kind = enc.encode(&src, false, &mut buf).unwrap().expect("a frame");
        assert_eq!(
            kind == FrameKind::Key,
            n == 0,
            "{codec:?} frame {n} kind {kind:?}"
        );
        let out = dec
            .decode(&buf)
            .unwrap()
            .expect("a decoded picture for every frame");
        assert_eq!((out.width(), out.height()), (320, 240));
        let diff = mean_abs_diff(src.y(), out.y());
        assert!(diff < 6.0, "{codec:?} frame {n}: mean luma error {diff}");
    }
    // A forced keyframe is one.
    let kind = enc.encode(&picture(320, 240, 0), true, &mut buf).unwrap();
    assert_eq!(kind, Some(FrameKind::Key));
    enc.set_bitrate(300_000).unwrap();
    assert!(
        enc.encode(&picture(320, 240, 3), false, &mut buf)
            .unwrap()
            .is_some()
    );
}

#[test]
fn h264_roundtrip() {
    roundtrip(VideoCodec::H264);
}

#[test]
fn vp8_roundtrip() {
    roundtrip(VideoCodec::Vp8);
}

#[test]
fn garbage_is_a_decode_error_not_a_crash() {
    for codec in [VideoCodec::H264, VideoCodec::Vp8] {
        let mut dec = hearth_codec::decoder(codec).unwrap();
        let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
        // Either an error or "nothing decodable yet" is fine; a panic or a picture is not.
        if let Ok(Some(p)) = dec.decode(&garbage) {
            panic!("{codec:?} decoded garbage into {p:?}");
        }
    }
}

#[test]
fn vp8_encoder_follows_a_size_change() {
    let mut enc = hearth_codec::encoder(VideoCodec::Vp8, EncoderConfig::default()).unwrap();
    let mut dec = hearth_codec::decoder(VideoCodec::Vp8).unwrap();
    let mut buf = Vec::new();
    enc.encode(&picture(320, 240, 0), false, &mut buf).unwrap();
    dec.decode(&buf).unwrap().unwrap();
    let kind = enc.encode(&picture(160, 120, 0), false, &mut buf).unwrap();
    assert_eq!(kind, Some(FrameKind::Key));
    let out = dec.decode(&buf).unwrap().unwrap();
    assert_eq!((out.width(), out.height()), (160, 120));
}

#[test]
fn vp8_keyframes_declare_their_size() {
    let mut enc = hearth_codec::encoder(VideoCodec::Vp8, EncoderConfig::default()).unwrap();
    let mut buf = Vec::new();
    let kind = enc.encode(&picture(320, 240, 0), false, &mut buf).unwrap();
    assert_eq!(kind, Some(FrameKind::Key));
    assert_eq!(hearth_codec::vp8_keyframe_size(&buf), Some((320, 240)));
    let kind = enc.encode(&picture(320, 240, 8), false, &mut buf).unwrap();
    assert_eq!(kind, Some(FrameKind::Delta));
    assert_eq!(hearth_codec::vp8_keyframe_size(&buf), None);
    assert_eq!(hearth_codec::vp8_keyframe_size(&[0x10, 0, 0]), None);
}
