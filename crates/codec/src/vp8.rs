//! VP8 through Debian's libvpx.
//!
//! Written by hand over `env-libvpx-sys` because the safe wrapper on crates.io (`vpx-rs`)
//! needs libvpx 1.13 and Debian 12 ships 1.12. Every libvpx call is in this file.

use std::ffi::CStr;
use std::os::raw::{c_int, c_long, c_uint};
use std::ptr;

use vpx_sys as ffi;

use crate::{
    CodecError, EncoderConfig, FrameKind, I420Frame, VideoCodec, VideoDecoder, VideoEncoder,
};

const NAME: &str = "VP8";

/// Reads libvpx's own message for the last error on `ctx`.
#[allow(unsafe_code)]
fn last_error(ctx: &mut ffi::vpx_codec_ctx_t) -> String {
    // SAFETY: `ctx` is a context libvpx initialised (or tried to); vpx_codec_error always
    // returns a pointer to a static, NUL-terminated string.
    unsafe {
        let msg = ffi::vpx_codec_error(ctx);
        if msg.is_null() {
            "unknown libvpx error".to_owned()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

/// A libvpx VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
}

// SAFETY: a libvpx codec context is not tied to the thread that made it; it must only not be
// used from two threads at once, which `&mut self` on every method guarantees.
#[allow(unsafe_code)]
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// Starts a decoder.
    #[allow(unsafe_code)]
    pub fn new() -> Result<Self, CodecError> {
        // SAFETY: an all-zero vpx_codec_ctx_t is the documented "not yet initialised" state
        // that vpx_codec_dec_init_ver expects.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let cfg = ffi::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: ctx and cfg are valid for the call; the interface pointer comes from libvpx.
        let rc = unsafe {
            ffi::vpx_codec_dec_init_ver(
                &mut *ctx,
                ffi::vpx_codec_vp8_dx(),
                &cfg,
                0,
                ffi::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::init(NAME, last_error(&mut ctx)));
        }
        Ok(Self { ctx })
    }
}

impl VideoDecoder for Vp8Decoder {
    #[allow(unsafe_code)]
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        let len = c_uint::try_from(data.len())
            .map_err(|_| CodecError::decode(NAME, "frame too large"))?;
        // SAFETY: the context is initialised; `data` is valid for `len` bytes for the call.
        let rc = unsafe {
            ffi::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0)
        };
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::decode(NAME, last_error(&mut self.ctx)));
        }
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        let mut picture = None;
        loop {
            // SAFETY: the context is initialised and `iter` starts null as libvpx requires.
            let img = unsafe { ffi::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: libvpx returned a non-null image that stays valid until the next
            // decode call on this context; it is copied out before then.
            let img = unsafe { &*img };
            picture = Some(copy_image(img)?);
        }
        Ok(picture)
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }
}

impl Drop for Vp8Decoder {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed exactly once.
        unsafe {
            ffi::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

/// Copies a decoded libvpx image into an [`I420Frame`].
#[allow(unsafe_code)]
fn copy_image(img: &ffi::vpx_image_t) -> Result<I420Frame, CodecError> {
    if img.fmt != ffi::vpx_img_fmt::VPX_IMG_FMT_I420 {
        return Err(CodecError::decode(
            NAME,
            format!("unexpected picture format {:?}", img.fmt),
        ));
    }
    let (w, h) = (img.d_w as usize, img.d_h as usize);
    let strides = [
        img.stride[0] as usize,
        img.stride[1] as usize,
        img.stride[2] as usize,
    ];
    let rows = [h, h.div_ceil(2), h.div_ceil(2)];
    let mut planes: [&[u8]; 3] = [&[], &[], &[]];
    for i in 0..3 {
        if img.planes[i].is_null() {
            return Err(CodecError::decode(
                NAME,
                "picture without planes".to_owned(),
            ));
        }
        // SAFETY: libvpx guarantees each plane holds `stride * rows` bytes for an I420
        // picture of d_w x d_h.
        planes[i] = unsafe { std::slice::from_raw_parts(img.planes[i], strides[i] * rows[i]) };
    }
    I420Frame::from_planes(w as u32, h as u32, planes, strides).ok_or(CodecError::decode(
        NAME,
        format!("malformed {w}x{h} picture"),
    ))
}

/// A libvpx VP8 encoder in real-time CBR mode without lag, so each frame in gives its
/// compressed frame out at once.
pub struct Vp8Encoder {
    ctx: Box<ffi::vpx_codec_ctx_t>,
    cfg: Box<ffi::vpx_codec_enc_cfg_t>,
    size: Option<(u32, u32)>,
    pts: i64,
    initialised: bool,
}

// SAFETY: as for the decoder: the context may move between threads, and `&mut self` keeps
// its use single-threaded.
#[allow(unsafe_code)]
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// Prepares an encoder; libvpx is initialised on the first frame, when the size is known.
    #[allow(unsafe_code)]
    pub fn new(config: EncoderConfig) -> Result<Self, CodecError> {
        let mut uninit = Box::new(std::mem::MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit());
        // SAFETY: the pointer is valid for writes of one config, which libvpx fills in
        // completely; the interface pointer comes from libvpx.
        let rc = unsafe {
            ffi::vpx_codec_enc_config_default(ffi::vpx_codec_vp8_cx(), uninit.as_mut_ptr(), 0)
        };
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::init(
                NAME,
                format!("no default configuration ({rc:?})"),
            ));
        }
        // SAFETY: vpx_codec_enc_config_default succeeded, so every field is initialised.
        let mut cfg: Box<ffi::vpx_codec_enc_cfg_t> =
            unsafe { Box::from_raw(Box::into_raw(uninit).cast()) };
        cfg.g_threads = 1;
        cfg.g_timebase = ffi::vpx_rational {
            num: 1,
            den: 90_000,
        };
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 1;
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (config.bitrate_bps / 1000).max(30);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_sz = 1000;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_max_dist = 1000;
        // SAFETY: as above; zeroed is the uninitialised context state.
        let ctx = Box::new(unsafe { std::mem::zeroed() });
        Ok(Self {
            ctx,
            cfg,
            size: None,
            pts: 0,
            initialised: false,
        })
    }

    #[allow(unsafe_code)]
    fn ensure_size(&mut self, width: u32, height: u32) -> Result<(), CodecError> {
        if self.size == Some((width, height)) {
            return Ok(());
        }
        if self.initialised {
            // SAFETY: the context was initialised and is destroyed once before re-init.
            unsafe {
                ffi::vpx_codec_destroy(&mut *self.ctx);
            }
            self.initialised = false;
        }
        self.cfg.g_w = width;
        self.cfg.g_h = height;
        // SAFETY: ctx and cfg are valid, the interface pointer comes from libvpx.
        let rc = unsafe {
            ffi::vpx_codec_enc_init_ver(
                &mut *self.ctx,
                ffi::vpx_codec_vp8_cx(),
                &*self.cfg,
                0,
                ffi::VPX_ENCODER_ABI_VERSION as c_int,
            )
        };
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::init(NAME, last_error(&mut self.ctx)));
        }
        self.initialised = true;
        // Speed 8 of 16: libvpx's usual real-time setting for calls on modest CPUs.
        // SAFETY: VP8E_SET_CPUUSED takes one int argument.
        unsafe {
            ffi::vpx_codec_control_(
                &mut *self.ctx,
                ffi::vp8e_enc_control_id::VP8E_SET_CPUUSED as c_int,
                -8 as c_int,
            );
        }
        self.size = Some((width, height));
        Ok(())
    }
}

impl VideoEncoder for Vp8Encoder {
    #[allow(unsafe_code)]
    fn encode(
        &mut self,
        frame: &I420Frame,
        force_keyframe: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<FrameKind>, CodecError> {
        out.clear();
        self.ensure_size(frame.width(), frame.height())?;
        let mut img = std::mem::MaybeUninit::<ffi::vpx_image_t>::uninit();
        // SAFETY: vpx_img_wrap initialises the whole image struct it is given. The frame's
        // buffer is a packed I420 picture of exactly this size with alignment 1; libvpx only
        // reads from it during vpx_codec_encode below.
        let wrapped = unsafe {
            ffi::vpx_img_wrap(
                img.as_mut_ptr(),
                ffi::vpx_img_fmt::VPX_IMG_FMT_I420,
                frame.width(),
                frame.height(),
                1,
                frame.as_bytes().as_ptr().cast_mut(),
            )
        };
        if wrapped.is_null() {
            return Err(CodecError::FrameSize {
                width: frame.width(),
                height: frame.height(),
            });
        }
        let flags: c_long = if force_keyframe {
            ffi::VPX_EFLAG_FORCE_KF as c_long
        } else {
            0
        };
        // 30 fps in the 90 kHz timebase.
        let duration = 3000;
        // SAFETY: context initialised by ensure_size; vpx_img_wrap returned non-null, so `img`
        // is initialised and wraps the frame, which outlives the call.
        let rc = unsafe {
            ffi::vpx_codec_encode(
                &mut *self.ctx,
                img.as_ptr(),
                self.pts,
                duration,
                flags,
                ffi::VPX_DL_REALTIME as _,
            )
        };
        self.pts += i64::from(duration as u32);
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::encode(NAME, last_error(&mut self.ctx)));
        }
        let mut kind = None;
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: context initialised; iter starts null.
            let pkt = unsafe { ffi::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: libvpx returned a valid packet, alive until the next encode call.
            let pkt = unsafe { &*pkt };
            if pkt.kind != ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: for a frame packet the `frame` member of the union is the valid one,
            // and `buf` holds `sz` bytes.
            let (bytes, is_key) = unsafe {
                let f = pkt.data.frame;
                (
                    std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz as usize),
                    f.flags & ffi::VPX_FRAME_IS_KEY != 0,
                )
            };
            out.extend_from_slice(bytes);
            kind = Some(if is_key {
                FrameKind::Key
            } else {
                FrameKind::Delta
            });
        }
        Ok(kind)
    }

    #[allow(unsafe_code)]
    fn set_bitrate(&mut self, bps: u32) -> Result<(), CodecError> {
        let kbps = (bps / 1000).max(30);
        if kbps == self.cfg.rc_target_bitrate {
            return Ok(());
        }
        self.cfg.rc_target_bitrate = kbps;
        if !self.initialised {
            return Ok(());
        }
        // SAFETY: context initialised; cfg is valid and keeps the same frame size.
        let rc = unsafe { ffi::vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        if rc != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(CodecError::encode(NAME, last_error(&mut self.ctx)));
        }
        Ok(())
    }

    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }
}

impl Drop for Vp8Encoder {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.initialised {
            // SAFETY: initialised context, destroyed exactly once.
            unsafe {
                ffi::vpx_codec_destroy(&mut *self.ctx);
            }
        }
    }
}

/// The picture size a VP8 keyframe declares (RFC 6386, 9.1: a 3-byte frame tag, the start
/// code 9d 01 2a, then 14-bit width and height); `None` for a delta frame or a truncated one.
/// Written by hand: four bytes of header need no decoder.
pub fn keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let tag = frame.first()?;
    if tag & 1 != 0 || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff);
    (width > 0 && height > 0).then_some((width, height))
}
