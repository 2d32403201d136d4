//! The one error type of this crate.

/// Why a codec operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec library could not be set up.
    #[error("could not start the {codec} codec: {detail}")]
    Init {
        /// Which codec.
        codec: &'static str,
        /// What the library said.
        detail: String,
    },
    /// Encoding a frame failed.
    #[error("{codec} encoding failed: {detail}")]
    Encode {
        /// Which codec.
        codec: &'static str,
        /// What the library said.
        detail: String,
    },
    /// The compressed data could not be decoded (damaged, or missing its reference frames).
    #[error("{codec} decoding failed: {detail}")]
    Decode {
        /// Which codec.
        codec: &'static str,
        /// What the library said.
        detail: String,
    },
    /// A frame's size is not one the codec accepts.
    #[error("unsupported frame size {width}x{height}")]
    FrameSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl CodecError {
    pub(crate) fn init(codec: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Init {
            codec,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn encode(codec: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Encode {
            codec,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn decode(codec: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Decode {
            codec,
            detail: detail.to_string(),
        }
    }
}
