//! The raw picture type: 8-bit I420 (planar Y, then U and V at half resolution).

/// One uncompressed picture in I420, with even width and height and tightly packed planes
/// (stride = width for Y, width / 2 for U and V).
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I420Frame({}x{})", self.width, self.height)
    }
}

impl I420Frame {
    /// A black frame. Odd sizes are rounded down to even, and the minimum is 2x2.
    pub fn black(width: u32, height: u32) -> Self {
        let width = (width & !1).max(2);
        let height = (height & !1).max(2);
        let luma = (width * height) as usize;
        let mut data = vec![16u8; luma + luma / 2];
        data[luma..].fill(128);
        Self {
            width,
            height,
            data,
        }
    }

    /// Copies a frame out of three planes with arbitrary strides, as decoders hand them out.
    pub fn from_planes(
        width: u32,
        height: u32,
        planes: [&[u8]; 3],
        strides: [usize; 3],
    ) -> Option<Self> {
        let mut frame = Self::black(width, height);
        let (w, h) = (frame.width as usize, frame.height as usize);
        let sizes = [(w, h), (w / 2, h / 2), (w / 2, h / 2)];
        let (y, u, v) = frame.planes_mut();
        for ((dst, (pw, ph)), (src, stride)) in [y, u, v]
            .into_iter()
            .zip(sizes)
            .zip(planes.into_iter().zip(strides))
        {
            if stride < pw || src.len() < stride * (ph - 1) + pw {
                return None;
            }
            for row in 0..ph {
                dst[row * pw..(row + 1) * pw]
                    .copy_from_slice(&src[row * stride..row * stride + pw]);
            }
        }
        Some(frame)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    fn luma_len(&self) -> usize {
        (self.width * self.height) as usize
    }

    /// The luma plane.
    pub fn y(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    /// The blue-difference chroma plane.
    pub fn u(&self) -> &[u8] {
        let l = self.luma_len();
        &self.data[l..l + l / 4]
    }

    /// The red-difference chroma plane.
    pub fn v(&self) -> &[u8] {
        let l = self.luma_len();
        &self.data[l + l / 4..]
    }

    /// All three planes, writable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let l = self.luma_len();
        let (y, chroma) = self.data.split_at_mut(l);
        let (u, v) = chroma.split_at_mut(l / 4);
        (y, u, v)
    }

    /// The whole frame as one I420 buffer (Y, then U, then V).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// A copy scaled to `width` x `height` (rounded down to even). Downscaling averages the
    /// source pixels each destination pixel covers, so the stamp blocks and edges of a test
    /// pattern stay clean; upscaling repeats pixels.
    pub fn scaled(&self, width: u32, height: u32) -> Self {
        let mut out = Self::black(width, height);
        if out.width == self.width && out.height == self.height {
            out.data.copy_from_slice(&self.data);
            return out;
        }
        let (sw, sh) = (self.width as usize, self.height as usize);
        let (dw, dh) = (out.width as usize, out.height as usize);
        let (y, u, v) = out.planes_mut();
        scale_plane(self.y(), sw, sh, y, dw, dh);
        scale_plane(self.u(), sw / 2, sh / 2, u, dw / 2, dh / 2);
        scale_plane(self.v(), sw / 2, sh / 2, v, dw / 2, dh / 2);
        out
    }
}

/// Area-average scaling of one plane. Hand-written because it is twenty lines, and the image
/// crates that do it pull in whole colour-management stacks.
fn scale_plane(src: &[u8], sw: usize, sh: usize, dst: &mut [u8], dw: usize, dh: usize) {
    for dy in 0..dh {
        let y0 = dy * sh / dh;
        let y1 = ((dy + 1) * sh / dh).max(y0 + 1).min(sh);
        for dx in 0..dw {
            let x0 = dx * sw / dw;
            let x1 = ((dx + 1) * sw / dw).max(x0 + 1).min(sw);
            let mut sum = 0u32;
            for row in y0..y1 {
                let start = row * sw;
                sum += src[start + x0..start + x1]
                    .iter()
                    .map(|&p| u32::from(p))
                    .sum::<u32>();
            }
            let count = ((y1 - y0) * (x1 - x0)) as u32;
            dst[dy * dw + dx] = (sum / count) as u8;
        }
    }
}

impl openh264::formats::YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.width as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        I420Frame::y(self)
    }

    fn u(&self) -> &[u8] {
        I420Frame::u(self)
    }

    fn v(&self) -> &[u8] {
        I420Frame::v(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_frame_rounds_to_even_and_has_three_planes() {
        let f = I420Frame::black(641, 479);
        assert_eq!((f.width(), f.height()), (640, 478));
        assert_eq!(f.y().len(), 640 * 478);
        assert_eq!(f.u().len(), 320 * 239);
        assert_eq!(f.v().len(), 320 * 239);
        assert!(f.y().iter().all(|&p| p == 16));
        assert!(f.u().iter().all(|&p| p == 128));
    }

    #[test]
    fn scaling_halves_by_averaging() {
        let mut f = I420Frame::black(4, 2);
        f.planes_mut()
            .0
            .copy_from_slice(&[0, 100, 200, 250, 0, 100, 200, 250]);
        let half = f.scaled(2, 2);
        assert_eq!(half.y(), &[50, 225, 50, 225]);
    }

    #[test]
    fn from_planes_honours_strides() {
        let y = [1u8, 2, 0, 0, 3, 4, 0, 0];
        let u = [5u8, 0];
        let v = [6u8, 0];
        let f = I420Frame::from_planes(2, 2, [&y, &u, &v], [4, 2, 2]).unwrap();
        assert_eq!(f.y(), &[1, 2, 3, 4]);
        assert_eq!(f.u(), &[5]);
        assert_eq!(f.v(), &[6]);
        assert!(I420Frame::from_planes(2, 2, [&y[..3], &u, &v], [4, 2, 2]).is_none());
    }
}
