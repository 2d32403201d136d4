//! The page's API: every command wraps one `Session` call, every error is a
//! `ClientError` (a code and a sentence). The TypeScript bindings in `ui/src/bindings.ts` are
//! generated from these by `cargo test -p hearth-desktop` (`tests/bindings.rs`).

use hearth_client::care::{CheckReport, Invitation, NewInvitation, Rules, Tablet};
use hearth_client::{
    AppState, ClientError, Device, DeviceChoice, ErrorCode, Identity, Language, PrecheckReport,
    ResidentOptions, Session,
};
use serde::Serialize;
use specta::Type;
use tauri::{AppHandle, Manager, State};
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

/// How wide, in device pixels, the page shows the self-view: its pictures are made that wide.
#[tauri::command]
#[specta::specta]
fn set_self_view_width(session: State<'_, Session>, width: u32) {
    session.set_self_view_width(width);
}

/// Clinicians: lets a waiting patient in and calls them into the consult.
#[tauri::command]
#[specta::specta]
async fn admit(session: State<'_, Session>, peer: String) -> Result<(), ClientError> {
    session.admit(peer).await
}

/// Clinicians: turns a waiting patient away; `reason` is what they read.
#[tauri::command]
#[specta::specta]
async fn deny(
    session: State<'_, Session>,
    peer: String,
    reason: Option<String>,
) -> Result<(), ClientError> {
    session.deny(peer, reason).await
}

/// Clinicians: ends the consult and admits the next patient; returns who, if anyone waits.
#[tauri::command]
#[specta::specta]
async fn admit_next(session: State<'_, Session>) -> Result<Option<String>, ClientError> {
    session.admit_next().await
}

/// Staff (any room) and clinicians (their consult room): a new invitation link and code.
#[tauri::command]
#[specta::specta]
async fn create_invitation(
    session: State<'_, Session>,
    ask: NewInvitation,
) -> Result<Invitation, ClientError> {
    session.api().await?.create_invitation(&ask).await
}

/// Invitations, newest first.
#[tauri::command]
#[specta::specta]
async fn list_invitations(session: State<'_, Session>) -> Result<Vec<Invitation>, ClientError> {
    session.api().await?.invitations().await
}

/// Withdraws an invitation; it stops working at once.
#[tauri::command]
#[specta::specta]
async fn revoke_invitation(
    session: State<'_, Session>,
    id: String,
) -> Result<Invitation, ClientError> {
    session.api().await?.revoke_invitation(&id).await
}

/// Staff: residents' tablets, online or not, with their last check and rules.
#[tauri::command]
#[specta::specta]
async fn list_tablets(session: State<'_, Session>) -> Result<Vec<Tablet>, ClientError> {
    session.api().await?.tablets().await
}

/// Staff: a resident's rules; the tablet follows them at once.
#[tauri::command]
#[specta::specta]
async fn set_rules(
    session: State<'_, Session>,
    sub: String,
    rules: Rules,
) -> Result<Tablet, ClientError> {
    session.api().await?.set_rules(&sub, &rules).await
}

/// Staff: runs the pre-call check on a tablet and returns its result.
#[tauri::command]
#[specta::specta]
async fn run_tablet_check(
    session: State<'_, Session>,
    sub: String,
) -> Result<CheckReport, ClientError> {
    session.api().await?.run_check(&sub).await
}

/// CSV as spreadsheet programs read it: UTF-8 marked as such at the start, or Excel shows
/// Korean (or any non-ASCII) names garbled.
fn for_spreadsheets(csv: &str) -> Vec<u8> {
    const BOM: &str = "\u{FEFF}";
    let mut out = Vec::with_capacity(BOM.len() + csv.len());
    if !csv.starts_with(BOM) {
        out.extend_from_slice(BOM.as_bytes());
    }
    out.extend_from_slice(csv.as_bytes());
    out
}

/// Staff: saves the audit trail as CSV in the Downloads folder; returns the file's path.
#[tauri::command]
#[specta::specta]
async fn export_audit(app: AppHandle, session: State<'_, Session>) -> Result<String, ClientError> {
    let csv = session.api().await?.audit_csv().await?;
    let dir = app.path().download_dir().map_err(|e| {
        tracing::warn!(error = %e, "no downloads folder");
        ClientError::new(
            ErrorCode::Internal,
            "There is no Downloads folder to save the file in.",
        )
    })?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = dir.join(format!("hearth-audit-{stamp}.csv"));
    tokio::fs::write(&path, for_spreadsheets(&csv))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "audit export not written");
            ClientError::new(
                ErrorCode::Internal,
                "The file could not be saved in the Downloads folder.",
            )
        })?;
    Ok(path.display().to_string())
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
            set_self_view_width,
            admit,
            deny,
            admit_next,
            create_invitation,
            list_invitations,
            revoke_invitation,
            list_tablets,
            set_rules,
            run_tablet_check,
            export_audit,
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

#[cfg(test)]
mod tests {
    use super::for_spreadsheets;

    #[test]
    fn the_saved_records_are_marked_as_utf8_once() {
        let csv = "seq,name\n1,김영희\n";
        let saved = for_spreadsheets(csv);
        assert_eq!(&saved[..3], [0xEF, 0xBB, 0xBF]);
        assert_eq!(std::str::from_utf8(&saved[3..]).unwrap(), csv);
        let again = for_spreadsheets(std::str::from_utf8(&saved).unwrap());
        assert_eq!(again, saved, "a file marked already is not marked twice");
    }
}
