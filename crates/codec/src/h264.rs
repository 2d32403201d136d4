//! H.264 through OpenH264: constrained baseline, one slice per frame, Annex B byte streams.

use openh264::OpenH264API;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig as OhConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;

use crate::{
    CodecError, EncoderConfig, FrameKind, I420Frame, VideoCodec, VideoDecoder, VideoEncoder,
};

const NAME: &str = "H.264";

/// An OpenH264 encoder tuned for calls: real-time camera usage, bitrate rate control (which
/// needs frame skipping allowed: OpenH264 cannot hold a bitrate otherwise), and rare periodic
/// keyframes (they come when the receiver asks).
pub struct H264Encoder {
    inner: Encoder,
    /// The bitrate asked for.
    bitrate: u32,
    /// The bitrate OpenH264 runs at; it can only be changed once the encoder has started,
    /// which happens on the first frame.
    applied: Option<u32>,
    /// The bitrate the encoder was configured with.
    initial: u32,
}

impl H264Encoder {
    /// Starts an encoder.
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let oh = OhConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.max_fps))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(true)
            // A keyframe every 1000 frames (33 s at 30 fps) bounds how long a receiver that
            // missed a keyframe request can stay broken; requests bring them sooner.
            .intra_frame_period(IntraFramePeriod::from_num_frames(1000))
            .num_threads(1);
        let inner = Encoder::with_api_config(OpenH264API::from_source(), oh)
            .map_err(|e| CodecError::init(NAME, e))?;
        Ok(Self {
            inner,
            bitrate: config.bitrate_bps,
            applied: None,
            initial: config.bitrate_bps,
        })
    }

    /// The target bitrate currently set.
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    fn initial_bitrate(&self) -> u32 {
        self.initial
    }

    /// Sets the layer's ceiling and the target. OpenH264 checks target <= ceiling after each
    /// call, so the ceiling moves first when going up and last when going down.
    #[allow(unsafe_code)]
    fn apply_bitrate(&mut self, bps: u32, from: u32) -> Result<(), CodecError> {
        let bps_c = i32::try_from(bps).unwrap_or(i32::MAX);
        let max = (
            openh264_sys2::ENCODER_OPTION_MAX_BITRATE,
            openh264_sys2::SPATIAL_LAYER_0,
        );
        let target = (
            openh264_sys2::ENCODER_OPTION_BITRATE,
            openh264_sys2::SPATIAL_LAYER_ALL,
        );
        let order = if bps > from {
            [max, target]
        } else {
            [target, max]
        };
        for (option, layer) in order {
            let mut info = openh264_sys2::SBitrateInfo {
                iLayer: layer,
                iBitrate: bps_c,
            };
            // SAFETY: the encoder is initialised (it encoded a frame or was just built by
            // `Encoder::with_api_config`), `info` is a live SBitrateInfo for the duration of
            // the call, and ENCODER_OPTION_(MAX_)BITRATE reads exactly that struct. The
            // `openh264` crate offers no safe setter for a running encoder's bitrate.
            let rc = unsafe {
                self.inner
                    .raw_api()
                    .set_option(option, (&raw mut info).cast())
            };
            if rc != 0 {
                return Err(CodecError::encode(
                    NAME,
                    format!("setting the bitrate to {bps} bit/s failed ({rc})"),
                ));
            }
        }
        Ok(())
    }
}

impl VideoEncoder for H264Encoder {
    fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, CodecError> {
        out.clear();
        if force_keyframe {
            self.inner.force_intra_frame();
        }
        let stream = self
            .inner
            .encode(frame)
            .map_err(|e| CodecError::encode(NAME, e))?;
        let kind = match stream.frame_type() {
            FrameType::IDR | FrameType::I => FrameKind::Key,
            FrameType::P | FrameType::IPMixed => FrameKind::Delta,
            FrameType::Skip | FrameType::Invalid => return Ok(None),
        };
        stream.write_vec(out);
        let applied = *self.applied.get_or_insert(self.initial_bitrate());
        if applied != self.bitrate {
            self.apply_bitrate(self.bitrate, applied)?;
            self.applied = Some(self.bitrate);
        }
        Ok((!out.is_empty()).then_some(kind))
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        self.bitrate = bps;
        if let Some(applied) = self.applied
            && applied != bps
        {
            self.apply_bitrate(bps, applied)?;
            self.applied = Some(bps);
        }
        Ok(())
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }
}

/// An OpenH264 decoder that returns each picture as soon as its frame is complete.
pub struct H264Decoder {
    inner: Decoder,
}

impl H264Decoder {
    /// Starts a decoder.
    pub fn new() -> Result<Self, CodecError> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| CodecError::init(NAME, e))?;
        Ok(Self { inner })
    }
}

impl VideoDecoder for H264Decoder {
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        let decoded = self
            .inner
            .decode(data)
            .map_err(|e| CodecError::decode(NAME, e))?;
        let Some(yuv) = decoded else {
            return Ok(None);
        };
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        I420Frame::from_planes(
            w as u32,
            h as u32,
            [yuv.y(), yuv.u(), yuv.v()],
            [sy, su, sv],
        )
        .map(Some)
        .ok_or(CodecError::decode(
            NAME,
            format!("decoder returned a malformed {w}x{h} picture"),
        ))
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }
}
