//! The page's API: every command wraps one `Session` call, every error is a
//! `ClientError` (a code and a sentence). The TypeScript bindings in `ui/src/bindings.ts` are
//! generated from these by `cargo test -p hearth-desktop` (`tests/bindings.rs`).

use hearth_client::{
    AppState, ClientError, Device, DeviceChoice, Identity, Language, PrecheckReport,
    ResidentOptions, Session,
};
use serde::Serialize;
use specta::Type;
use tauri::{AppHandle, State};
use tauri_specta::{Event, collect_commands, collect_events};
use tokio::sync::watch;

use crate::video::{PictureQueue, VideoMessage};

/// The state changed; the payload is the whole new state.
#[derive(Debug, Clone, Serialize, Type, tauri_specta::Event)]
pub struct StateChanged(pub AppState);

/// What the settings screen shows (the token stays in Rust).
#[derive(Debug, Clone, Serialize, Type)]
pub struct SettingsView {
    /// The server this device signs in to.
    pub server: Option<String>,
    /// The language.
    pub language: Language,
    /// The chosen devices.
    pub devices: DeviceChoice,
    /// A resident tablet's options.
    pub resident: ResidentOptions,
}

/// The state now (the page asks once at start, then listens to `StateChanged`).
#[tauri::command]
#[specta::specta]
fn app_state(session: State<'_, Session>) -> AppState {
    session.state()
}

/// Takes an invitation link, or a code with its server address.
#[tauri::command]
#[specta::specta]
async fn accept_invitation(
    session: State<'_, Session>,
    input: String,
    server: Option<String>,
) -> Result<Identity, ClientError> {
    session.accept_invitation(input, server).await
}

/// Signs out and forgets the invitation.
#[tauri::command]
#[specta::specta]
async fn forget_invitation(session: State<'_, Session>) -> Result<(), ClientError> {
    session.forget_invitation().await
}

/// Calls a contact by key.
#[tauri::command]
#[specta::specta]
async fn call_contact(session: State<'_, Session>, key: String) -> Result<(), ClientError> {
    session.call(key).await
}

/// Answers a call.
#[tauri::command]
#[specta::specta]
async fn answer(session: State<'_, Session>, peer: String) -> Result<(), ClientError> {
    session.answer(peer).await
}

/// Declines a call.
#[tauri::command]
#[specta::specta]
async fn decline(session: State<'_, Session>, peer: String) -> Result<(), ClientError> {
    session.decline(peer).await
}

/// Ends the call.
#[tauri::command]
#[specta::specta]
async fn hang_up(session: State<'_, Session>) -> Result<(), ClientError> {
    session.hang_up().await
}

/// Mutes or unmutes.
#[tauri::command]
#[specta::specta]
async fn set_muted(session: State<'_, Session>, muted: bool) -> Result<(), ClientError> {
    session.set_muted(muted).await
}

/// Turns the camera's picture off or on.
#[tauri::command]
#[specta::specta]
async fn set_camera_off(session: State<'_, Session>, off: bool) -> Result<(), ClientError> {
    session.set_camera_off(off).await
}

/// The page's decoder of `peer`'s video lost its place (it started late, a frame went
/// missing, or it failed): ask them for a keyframe.
#[tauri::command]
#[specta::specta]
fn request_keyframe(session: State<'_, Session>, peer: String) {
    session.request_keyframe(peer);
}

/// The page cannot decode video (no WebCodecs decoder for the codec, or it keeps failing):
/// the app decodes it and sends pictures instead.
#[tauri::command]
#[specta::specta]
fn decode_video_here(session: State<'_, Session>) {
    session.decode_video_here();
}

/// Chooses the language.
#[tauri::command]
#[specta::specta]
async fn set_language(session: State<'_, Session>, language: Language) -> Result<(), ClientError> {
    session.set_language(language).await
}

/// The cameras, microphones and speakers.
#[tauri::command]
#[specta::specta]
async fn list_devices() -> Vec<Device> {
    tauri::async_runtime::spawn_blocking(hearth_client::devices)
        .await
        .unwrap_or_default()
}

/// Chooses devices.
#[tauri::command]
#[specta::specta]
async fn set_devices(
    session: State<'_, Session>,
    devices: DeviceChoice,
) -> Result<(), ClientError> {
    session.set_devices(devices).await
}

/// The settings screen's content.
#[tauri::command]
#[specta::specta]
async fn settings(session: State<'_, Session>) -> Result<SettingsView, ClientError> {
    let s = session.settings().await?;
    Ok(SettingsView {
        server: s.invitation.map(|i| i.server),
        language: s.language,
        devices: s.devices,
        resident: s.resident,
    })
}

/// Sets a resident tablet's options (and its start-at-login entry for kiosk mode).
#[tauri::command]
#[specta::specta]
async fn set_resident_options(
    session: State<'_, Session>,
    options: ResidentOptions,
) -> Result<(), ClientError> {
    let kiosk = options.kiosk;
    session.set_resident_options(options).await?;
    crate::kiosk::set_autostart(kiosk).map_err(|e| {
        tracing::warn!(error = %e, "autostart entry not changed");
        ClientError::new(
            hearth_client::ErrorCode::SettingsUnwritable,
            "Hearth could not change whether it starts at login.",
        )
    })
}

/// A contact's photo as a data URL.
#[tauri::command]
#[specta::specta]
async fn contact_photo(
    session: State<'_, Session>,
    key: String,
) -> Result<Option<String>, ClientError> {
    Ok(session.contact_photo(&key).await)
}

/// Runs the pre-call check: camera, microphone, speaker, server, relay.
#[tauri::command]
#[specta::specta]
async fn precheck(session: State<'_, Session>) -> Result<PrecheckReport, ClientError> {
    session.precheck().await
}

/// Removes a notice.
#[tauri::command]
#[specta::specta]
fn dismiss_notice(session: State<'_, Session>, id: u32) {
    session.dismiss_notice(id);
}

/// The next picture or encoded frame for the page (raw bytes; empty after two seconds without
/// one). The page keeps one call waiting.
#[tauri::command]
#[specta::specta]
async fn next_picture(
    queue: State<'_, std::sync::Arc<PictureQueue>>,
) -> Result<VideoMessage, ClientError> {
    Ok(queue.next().await)
}

/// The commands and events, for the app and for generating the bindings.
pub fn specta_builder() -> tauri_specta::Builder<tauri::Wry> {
    tauri_specta::Builder::<tauri::Wry>::new()
        .commands(collect_commands![
            app_state,
            accept_invitation,
            forget_invitation,
            call_contact,
            answer,
            decline,
            hang_up,
            set_muted,
            set_camera_off,
            set_language,
            list_devices,
            set_devices,
            settings,
            set_resident_options,
            contact_photo,
            precheck,
            dismiss_notice,
            next_picture,
            request_keyframe,
            decode_video_here,
        ])
        .events(collect_events![StateChanged])
        .disable_serde_phases()
}

/// Sends every new state to the page.
pub(crate) fn forward_state(app: AppHandle, mut state: watch::Receiver<AppState>) {
    tauri::async_runtime::spawn(async move {
        while state.changed().await.is_ok() {
            let s = state.borrow_and_update().clone();
            if let Err(e) = StateChanged(s).emit(&app) {
                tracing::warn!(error = %e, "state not sent to the page");
            }
        }
    });
}
