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

use hearth_client::video::{KIND_LOCAL, KIND_REMOTE, encode, encode_frame};
use hearth_client::{EncodedVideoFrame, I420Frame, VideoSink};
use specta::Type;
use tauri::ipc::{InvokeResponseBody, IpcResponse};
use tokio::sync::Notify;

/// One picture, in the layout `hearth_client::video` documents (an ArrayBuffer in the page);
/// empty when none came in time.
#[derive(Debug, Type)]
pub struct VideoMessage(#[specta(type = specta_typescript::Any)] pub Vec<u8>);

// Deliberately not `Serialize` (that would send a JSON array of numbers): raw bytes.
impl IpcResponse for VideoMessage {
    fn body(self) -> tauri::Result<InvokeResponseBody> {
        Ok(InvokeResponseBody::Raw(self.0))
    }
}

/// Pictures waiting for the page. A page that does not keep up loses the oldest: showing a
/// picture late is worse than skipping one. (A lost encoded frame leaves a gap in its `seq`;
/// the page waits for a keyframe and asks for one.)
#[derive(Default)]
pub struct PictureQueue {
    pictures: Mutex<VecDeque<Vec<u8>>>,
    arrived: Notify,
}

/// Pictures kept for a page that is busy.
const QUEUED: usize = 3;
/// How long one `next_picture` call waits before answering with nothing.
const WAIT: Duration = Duration::from_secs(2);

impl PictureQueue {
    fn push(&self, picture: Vec<u8>) {
        if let Ok(mut q) = self.pictures.lock() {
            if q.len() >= QUEUED {
                q.pop_front();
            }
            q.push_back(picture);
        }
        self.arrived.notify_one();
    }

    fn pop(&self) -> Option<Vec<u8>> {
        self.pictures.lock().ok()?.pop_front()
    }

    /// The next picture, waiting up to two seconds for one.
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
        self.push(encode(KIND_REMOTE, peer, frame));
    }

    fn local(&self, frame: &I420Frame) {
        self.push(encode(KIND_LOCAL, "", frame));
    }

    fn remote_encoded(&self, frame: &EncodedVideoFrame) {
        self.push(encode_frame(frame));
    }
}
