//! Pictures to the page: each remote frame goes still encoded (VP8), as one binary message,
//! to the page, which decodes it with WebCodecs and draws it; where the page cannot decode,
//! the engine decodes and each I420 picture goes whole instead. The self-view is always a
//! small I420 picture. (docs/ARCHITECTURE.md says how and why.) The page pulls: it keeps one
//! `next_picture` call waiting, and each answer is one picture as raw bytes. (A Tauri channel
//! pushes instead, but each of its messages costs a script evaluation in the page on top of the
//! same raw request; pulling measured cheaper, docs/BENCHMARKS.md.)

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use hearth_client::video::{KIND_LOCAL, KIND_REMOTE, frame_message, picture_message};
use hearth_client::{EncodedVideoFrame, I420Frame, VideoSink};
use specta::Type;
use tauri::ipc::{InvokeResponseBody, IpcResponse};
use tokio::sync::Notify;

/// One picture or encoded frame, in the layout `hearth_client::video` documents (an
/// ArrayBuffer in the page); empty when none came in time.
#[derive(Debug, Type)]
pub struct VideoMessage(#[specta(type = specta_typescript::Any)] pub Vec<u8>);

// Deliberately not `Serialize` (that would send a JSON array of numbers): raw bytes.
impl IpcResponse for VideoMessage {
    fn body(self) -> tauri::Result<InvokeResponseBody> {
        Ok(InvokeResponseBody::Raw(self.0))
    }
}

/// Messages waiting for the page, in order. A page that does not keep up loses the oldest
/// decoded picture first (showing a picture late is worse than skipping one, and the next
/// one replaces it). Encoded frames are kept longer: losing one stops that peer's video until
/// a keyframe comes (the page sees the gap in `seq` and asks for one).
#[derive(Default)]
pub struct PictureQueue {
    messages: Mutex<VecDeque<Message>>,
    arrived: Notify,
}

struct Message {
    /// An encoded frame (else a decoded picture).
    encoded: bool,
    bytes: Vec<u8>,
}

/// Decoded pictures kept for a page that is busy.
const PICTURES_QUEUED: usize = 3;
/// Messages of any kind kept (a second of video): past this the oldest goes, encoded or not.
const QUEUED: usize = 30;
/// How long one `next_picture` call waits before answering with nothing.
const WAIT: Duration = Duration::from_secs(2);

impl PictureQueue {
    fn push(&self, encoded: bool, bytes: Vec<u8>) {
        if let Ok(mut q) = self.messages.lock() {
            if !encoded
                && q.iter().filter(|m| !m.encoded).count() >= PICTURES_QUEUED
                && let Some(oldest) = q.iter().position(|m| !m.encoded)
            {
                q.remove(oldest);
            }
            if q.len() >= QUEUED {
                q.pop_front();
            }
            q.push_back(Message { encoded, bytes });
        }
        self.arrived.notify_one();
    }

    fn pop(&self) -> Option<Vec<u8>> {
        self.messages.lock().ok()?.pop_front().map(|m| m.bytes)
    }

    /// The next message, waiting up to two seconds for one.
    pub(crate) async fn next(&self) -> VideoMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrived = self.arrived.notified();
            if let Some(p) = self.pop() {
                return VideoMessage(p);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return VideoMessage(Vec::new());
            }
        }
    }
}

impl VideoSink for PictureQueue {
    fn remote(&self, peer: &str, frame: &I420Frame) {
        self.push(false, picture_message(KIND_REMOTE, peer, frame));
    }

    fn local(&self, frame: &I420Frame) {
        self.push(false, picture_message(KIND_LOCAL, "", frame));
    }

    fn remote_encoded(&self, frame: &EncodedVideoFrame) {
        self.push(true, frame_message(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_page_loses_old_pictures_before_encoded_frames() {
        let q = PictureQueue::default();
        for i in 0..5u8 {
            q.push(false, vec![b'p', i]);
            q.push(true, vec![b'f', i]);
        }
        let mut left = Vec::new();
        while let Some(m) = q.pop() {
            left.push(m);
        }
        let frames: Vec<u8> = left.iter().filter(|m| m[0] == b'f').map(|m| m[1]).collect();
        let pictures: Vec<u8> = left.iter().filter(|m| m[0] == b'p').map(|m| m[1]).collect();
        assert_eq!(
            frames,
            [0, 1, 2, 3, 4],
            "every encoded frame kept, in order"
        );
        assert_eq!(pictures, [2, 3, 4], "only the newest pictures kept");
        for i in 0..40u8 {
            q.push(true, vec![i]);
        }
        assert_eq!(q.pop(), Some(vec![10]), "at most a second of frames");
    }
}
