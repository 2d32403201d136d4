//! Hearth's video codecs: the I420 frame every part of the pipeline passes around, H.264
//! through OpenH264, VP8 through libvpx, and the scaling the encoder needs when it lowers its
//! resolution.
//!
//! Each codec is a plain synchronous type: frames in, bytes out (or the reverse). Threads,
//! timing and RTP live in the engine.

mod error;
mod frame;
mod h264;
mod vp8;

pub use error::CodecError;
pub use frame::I420Frame;
pub use h264::{H264Decoder, H264Encoder};
pub use vp8::{Vp8Decoder, Vp8Encoder, keyframe_size as vp8_keyframe_size};

/// A video codec Hearth can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization mode 1.
    H264,
    /// VP8.
    Vp8,
}

impl VideoCodec {
    /// The codec's name as SDP and `getStats()` spell it (`H264`, `VP8`).
    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H264",
            Self::Vp8 => "VP8",
        }
    }
}

/// Settings an encoder starts with; the bitrate and frame rate can change afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// The frame rate frames are expected at.
    pub max_fps: f32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 1_000_000,
            max_fps: 30.0,
        }
    }
}

/// A video encoder: one I420 frame in, one compressed frame out.
pub trait VideoEncoder: Send {
    /// Encodes `frame` into `out` (cleared first). Returns whether a frame was produced and
    /// whether it is a keyframe; `Ok(None)` means the encoder chose to skip this frame.
    fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, CodecError>;

    /// Changes the target bitrate from the next frame on.
    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError>;

    /// The codec this encoder produces.
    fn codec(&self) -> VideoCodec;
}

/// A video decoder: one compressed frame in, at most one I420 frame out.
pub trait VideoDecoder: Send {
    /// Decodes one complete compressed frame. `Ok(None)` means the decoder needs more data
    /// (for example, it is waiting for a keyframe).
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError>;

    /// The codec this decoder reads.
    fn codec(&self) -> VideoCodec;
}

/// Whether an encoded frame can be decoded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A keyframe: decodable without earlier frames.
    Key,
    /// A delta frame: needs the frames before it.
    Delta,
}

/// Makes a decoder for `codec`.
pub fn decoder(codec: VideoCodec) -> Result<Box<dyn VideoDecoder>, CodecError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(H264Decoder::new()?),
        VideoCodec::Vp8 => Box::new(Vp8Decoder::new()?),
    })
}

/// Makes an encoder for `codec`.
pub fn encoder(
    codec: VideoCodec,
    config: EncoderConfig,
) -> Result<Box<dyn VideoEncoder>, CodecError> {
    Ok(match codec {
        VideoCodec::H264 => Box::new(H264Encoder::new(config)?),
        VideoCodec::Vp8 => Box::new(Vp8Encoder::new(config)?),
    })
}
