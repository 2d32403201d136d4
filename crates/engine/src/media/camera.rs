//! Camera capture through `nokhwa` (Video4Linux on Linux). Frames are asked for in YUYV, which
//! every UVC webcam offers, and converted to I420 here; MJPEG would need a JPEG decoder we do
//! not ship.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hearth_codec::I420Frame;
use nokhwa::pixel_format::YuyvFormat;
use nokhwa::utils::{CameraFormat, FrameFormat, RequestedFormat, RequestedFormatType};
use tokio::sync::watch;

use super::devices::{self, DeviceError};
use super::source::{CapturedFrame, Controls};
use crate::events::DeviceKind;

fn unusable(name: &str) -> DeviceError {
    DeviceError {
        kind: DeviceKind::Camera,
        message: format!(
            "The camera \"{name}\" could not be opened (another program may be using it). The call continues without your picture."
        ),
    }
}

/// How often a camera turned off checks whether it is wanted again.
const OFF_POLL: Duration = Duration::from_millis(100);

/// Opens the camera, says whether that worked, then publishes frames until `stop`. While the
/// person has turned their camera off the stream is stopped, so the device is released (its
/// light goes out), and started again when they turn it back on.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    id: Option<&str>,
    width: u32,
    height: u32,
    fps: u32,
    tx: &watch::Sender<Option<Arc<CapturedFrame>>>,
    stop: &AtomicBool,
    controls: &Controls,
    opened: tokio::sync::oneshot::Sender<Result<(), DeviceError>>,
) {
    let (info, index) = match devices::find_camera(id) {
        Ok(found) => found,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    let wanted = CameraFormat::new_from(width, height, FrameFormat::YUYV, fps);
    let format = RequestedFormat::new::<YuyvFormat>(RequestedFormatType::Closest(wanted));
    let mut camera = match nokhwa::Camera::new(index, format) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, camera = %info.name, "camera did not open");
            let _ = opened.send(Err(unusable(&info.name)));
            return;
        }
    };
    if let Err(e) = camera.open_stream() {
        tracing::warn!(error = %e, camera = %info.name, "camera did not start");
        let _ = opened.send(Err(unusable(&info.name)));
        return;
    }
    let _ = opened.send(Ok(()));
    let mut streaming = true;
    let mut captured: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if controls.camera_off() {
            if streaming {
                let _ = camera.stop_stream();
                streaming = false;
                tracing::debug!("camera released while turned off");
            }
            std::thread::sleep(OFF_POLL);
            continue;
        }
        if !streaming {
            if let Err(e) = camera.open_stream() {
                tracing::warn!(error = %e, camera = %info.name, "camera did not start again");
                break;
            }
            streaming = true;
        }
        let buffer = match camera.frame() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "camera stopped delivering frames");
                break;
            }
        };
        let captured_at = Instant::now();
        let res = buffer.resolution();
        if buffer.source_frame_format() != FrameFormat::YUYV {
            tracing::warn!(format = ?buffer.source_frame_format(), "camera sent a format other than YUYV");
            break;
        }
        if let Some(frame) = yuyv_to_i420(buffer.buffer(), res.width(), res.height()) {
            tx.send_replace(Some(Arc::new(CapturedFrame {
                frame,
                captured_at,
                index: captured,
            })));
            captured += 1;
        }
    }
    if streaming {
        let _ = camera.stop_stream();
    }
}

/// Converts packed YUYV 4:2:2 to planar I420, averaging the chroma of each pair of rows.
pub(crate) fn yuyv_to_i420(src: &[u8], width: u32, height: u32) -> Option<I420Frame> {
    let (w, h) = (width as usize & !1, height as usize & !1);
    let stride = width as usize * 2;
    if w == 0 || h == 0 || src.len() < stride * h {
        return None;
    }
    let mut frame = I420Frame::black(w as u32, h as u32);
    let (y, u, v) = frame.planes_mut();
    for row in 0..h {
        let line = &src[row * stride..row * stride + w * 2];
        for (x, px) in line.chunks_exact(2).enumerate() {
            y[row * w + x] = px[0];
        }
    }
    for crow in 0..h / 2 {
        let a = &src[(2 * crow) * stride..];
        let b = &src[(2 * crow + 1) * stride..];
        for cx in 0..w / 2 {
            let i = cx * 4;
            u[crow * (w / 2) + cx] = (u16::from(a[i + 1]) + u16::from(b[i + 1])).div_ceil(2) as u8;
            v[crow * (w / 2) + cx] = (u16::from(a[i + 3]) + u16::from(b[i + 3])).div_ceil(2) as u8;
        }
    }
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_to_i420() {
        // 2x2: Y0 U Y1 V per pair; two rows with different chroma.
        let src = [10, 100, 20, 200, 30, 110, 40, 210];
        let f = yuyv_to_i420(&src, 2, 2).unwrap();
        assert_eq!(f.y(), &[10, 20, 30, 40]);
        assert_eq!(f.u(), &[105]);
        assert_eq!(f.v(), &[205]);
        assert!(yuyv_to_i420(&src[..6], 2, 2).is_none());
    }
}
