//! Pictures to the page: each decoded I420 frame goes whole, as one binary message, over a
//! Tauri channel, and the page draws it with WebGL (three textures, YUV to RGB in a shader).
//! docs/ARCHITECTURE.md says why this path and not WebCodecs.

use std::sync::Mutex;

use hearth_client::video::{KIND_LOCAL, KIND_REMOTE, encode};
use hearth_client::{I420Frame, VideoSink};
use specta::Type;
use tauri::ipc::{Channel, InvokeResponseBody, IpcResponse};

/// One picture, in the layout `hearth_client::video` documents; the page gets an ArrayBuffer.
#[derive(Debug, Type)]
pub struct VideoMessage(#[specta(type = specta_typescript::Any)] pub Vec<u8>);

// Deliberately not `Serialize` (that would send a JSON array of numbers): raw bytes.
impl IpcResponse for VideoMessage {
    fn body(self) -> tauri::Result<InvokeResponseBody> {
        Ok(InvokeResponseBody::Raw(self.0))
    }
}

/// Keeps the page's channel; pictures before the page opened it are dropped.
#[derive(Default)]
pub struct ChannelSink {
    channel: Mutex<Option<Channel<VideoMessage>>>,
}

impl ChannelSink {
    pub(crate) fn attach(&self, channel: Channel<VideoMessage>) {
        if let Ok(mut slot) = self.channel.lock() {
            *slot = Some(channel);
        }
    }

    fn send(&self, message: Vec<u8>) {
        let channel = match self.channel.lock() {
            Ok(slot) => slot.clone(),
            Err(_) => None,
        };
        if let Some(c) = channel
            && let Err(e) = c.send(VideoMessage(message))
        {
            tracing::debug!(error = %e, "picture not sent to the page");
        }
    }
}

impl VideoSink for ChannelSink {
    fn remote(&self, peer: &str, frame: &I420Frame) {
        self.send(encode(KIND_REMOTE, peer, frame));
    }

    fn local(&self, frame: &I420Frame) {
        self.send(encode(KIND_LOCAL, "", frame));
    }
}
