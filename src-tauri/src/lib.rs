//! Hearth's desktop app: a thin Tauri shell. It registers `hearth-client`'s session as typed
//! commands and events, hands pictures to the page as raw bytes, and owns the
//! window (kiosk mode). No call logic lives here.

mod attention;
mod commands;
mod kiosk;
mod screen;
mod supervisor;
mod video;

use std::path::PathBuf;
use std::sync::Arc;

use hearth_client::{Session, SessionOptions};
use tauri::{Manager, WebviewUrl, WebviewWindowBuilder};

pub use commands::{StateChanged, specta_builder};
pub use kiosk::{autostart_entry, set_autostart};
pub use screen::{Screen, ScreenError};
pub use supervisor::{Supervisor, end_with_supervisor, supervised};

/// How the app was started.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Where settings are kept; the platform's app data dir when `None`.
    pub data_dir: Option<PathBuf>,
    /// Full screen without window chrome, whatever the settings say.
    pub kiosk: bool,
    /// Addresses WebRTC gathers candidates on (tests pass loopback).
    pub bind_addrs: Vec<std::net::SocketAddr>,
    /// Camera capture width, height and frame rate.
    pub camera: (u32, u32, u32),
    /// Let WebKit composite the page with the GPU (and draw video with WebGL). Off by default:
    /// without a GPU (software GL) compositing a 30 fps picture costs a whole core, while
    /// WebKit's own painting and a 2D canvas cost a third of that (docs/BENCHMARKS.md).
    pub gpu_compositing: bool,
    /// Decode remote video in the app and send the page pictures, instead of sending it the
    /// encoded frames to decode with WebCodecs (the fallback, also chosen by the page when it
    /// cannot decode).
    pub decode_video_here: bool,
}

/// Runs the app until its window closes.
pub fn run(options: AppOptions) -> anyhow::Result<()> {
    let builder = specta_builder();
    let invoke = builder.invoke_handler();
    tauri::Builder::default()
        .invoke_handler(invoke)
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event
                && window
                    .try_state::<Session>()
                    .is_some_and(|s| kiosk::holds_window(&s.state()))
            {
                tracing::info!("kiosk mode: the window is not closed");
                api.prevent_close();
            }
        })
        .setup(move |app| {
            builder.mount_events(app);
            let data_dir = match &options.data_dir {
                Some(d) => d.clone(),
                None => app.path().app_data_dir()?,
            };
            let video = Arc::new(video::PictureQueue::default());
            let mut room = hearth_engine::RoomOptions::default();
            if !options.bind_addrs.is_empty() {
                room.bind_addrs = options.bind_addrs.clone();
            }
            if !options.decode_video_here {
                // The page decodes VP8 (WebKitGTK's WebCodecs has it; H.264 needs a GStreamer
                // plugin Debian keeps apart), so only VP8 is negotiated.
                room.forward_encoded = vec![hearth_client::VideoCodec::Vp8];
            }
            let session = tauri::async_runtime::block_on(async {
                Session::start(SessionOptions {
                    data_dir,
                    room,
                    camera: options.camera,
                    video: video.clone(),
                    kiosk: options.kiosk,
                })
            });
            let kiosk = session.state().kiosk;
            // Tells the page how to draw video (see `gpu_compositing`).
            let renderer = if options.gpu_compositing {
                "webgl"
            } else {
                "2d"
            };
            let window =
                WebviewWindowBuilder::new(app, "main", WebviewUrl::App("index.html".into()))
                    .initialization_script(format!("window.hearthRenderer = {renderer:?};"))
                    .title("Hearth")
                    .inner_size(kiosk::WINDOW_SIZE.0, kiosk::WINDOW_SIZE.1)
                    .min_inner_size(360.0, 480.0)
                    .fullscreen(kiosk)
                    .decorations(!kiosk)
                    .build()?;
            if !options.gpu_compositing {
                window.with_webview(|webview| {
                    use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
                    if let Some(settings) = WebViewExt::settings(&webview.inner()) {
                        settings
                            .set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
                    }
                })?;
            }
            if kiosk {
                // Full screen needs a window manager to honour it; a tablet started straight
                // into Hearth (xinit, no window manager) gets the whole screen this way.
                kiosk::cover_screen(&window);
            }
            kiosk::follow(window.clone(), session.watch(), kiosk);
            attention::watch_calls(window, session.watch());
            commands::forward_state(app.handle().clone(), session.watch());
            app.manage(session);
            app.manage(video);
            Ok(())
        })
        .run(tauri::generate_context!())?;
    Ok(())
}
