//! Kiosk mode for a resident's tablet: the app is the only thing on screen and starts at login.
//! (Bringing it back after a crash is `supervisor`'s; bringing the window forward for a call is
//! `attention`'s.)

use std::path::Path;

use hearth_client::{AppState, Connection, Role};
use tauri::{LogicalSize, WebviewWindow};
use tokio::sync::watch;

use crate::supervisor::tell_supervisor;

/// The window's size out of kiosk mode.
pub(crate) const WINDOW_SIZE: (f64, f64) = (1024.0, 720.0);

/// The desktop entry that starts Hearth in kiosk mode at login.
pub fn autostart_entry(exec: &Path) -> String {
    format!(
        "[Desktop Entry]\nType=Application\nName=Hearth (kiosk)\nComment=Video calls for care homes, full screen\nExec=\"{}\" --kiosk\nIcon=hearth\nTerminal=false\nX-GNOME-Autostart-enabled=true\n",
        exec.display()
    )
}

/// This user's entry that keeps Hearth from starting at login: it has the name of the
/// packages' system-wide entry (`/etc/xdg/autostart/hearth-kiosk.desktop`, when staff copied it
/// there), which a user's entry of the same name overrides (XDG autostart), and `Hidden=true`.
const AUTOSTART_OFF: &str = "[Desktop Entry]\nType=Application\nName=Hearth (kiosk)\nHidden=true\n";

/// Writes this user's start-at-login entry (in `$XDG_CONFIG_HOME/autostart`): one that starts
/// kiosk mode, or one that keeps any system-wide entry from starting it.
pub fn set_autostart(enabled: bool) -> std::io::Result<()> {
    let Some(config) = dirs::config_dir() else {
        return Ok(());
    };
    write_autostart(&config, &installed_path(std::env::current_exe()?), enabled)
}

/// The program's path as installed: Linux names a running program whose file a package
/// upgrade replaced `<path> (deleted)`, and the entry must start the new file.
fn installed_path(exe: std::path::PathBuf) -> std::path::PathBuf {
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => path.into(),
        None => exe,
    }
}

/// Writes `config/autostart/hearth-kiosk.desktop`: starting `exe` in kiosk mode, or hidden.
fn write_autostart(config: &Path, exe: &Path, enabled: bool) -> std::io::Result<()> {
    let dir = config.join("autostart");
    std::fs::create_dir_all(&dir)?;
    let entry = if enabled {
        autostart_entry(exe)
    } else {
        AUTOSTART_OFF.to_owned()
    };
    std::fs::write(dir.join("hearth-kiosk.desktop"), entry)
}

/// Whether a kiosk's window refuses to close (a resident's stray Alt+F4, a window manager's
/// close button): only while staff can release it, signed in to the server as a resident's
/// tablet, where their console turns kiosk mode off. A tablet that is offline, not set up or
/// refused closes when asked, so staff with a keyboard are never locked out.
pub(crate) fn holds_window(state: &AppState) -> bool {
    state.kiosk
        && state.connection == Connection::Online
        && state.me.as_ref().is_some_and(|m| m.role == Role::Resident)
}

/// Follows kiosk mode as staff's rules turn it on or off while the app runs: the window goes
/// full screen without chrome or back to an ordinary window, and the start-at-login entry is
/// added or masked. `built` is the mode the window was made in, so a change that came while it
/// was being made is applied too.
pub(crate) fn follow(window: WebviewWindow, mut state: watch::Receiver<AppState>, built: bool) {
    let mut was = built;
    tell_supervisor(built);
    tauri::async_runtime::spawn(async move {
        loop {
            let kiosk = state.borrow_and_update().kiosk;
            if kiosk != was {
                was = kiosk;
                tell_supervisor(kiosk);
                apply(&window, kiosk);
                if let Err(e) = set_autostart(kiosk) {
                    tracing::warn!(error = %e, kiosk, "start-at-login entry not changed");
                }
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Puts the window into kiosk mode or out of it.
fn apply(window: &WebviewWindow, kiosk: bool) {
    let changed = if kiosk {
        window
            .set_decorations(false)
            .and_then(|()| window.set_fullscreen(true))
    } else {
        let (w, h) = WINDOW_SIZE;
        window
            .set_fullscreen(false)
            .and_then(|()| window.set_decorations(true))
            .and_then(|()| window.set_size(LogicalSize::new(w, h)))
    };
    if let Err(e) = changed {
        tracing::warn!(error = %e, kiosk, "could not change the window for kiosk mode");
    }
    if kiosk {
        cover_screen(window);
    }
}

/// Places the window over the whole monitor it is on.
pub(crate) fn cover_screen(window: &WebviewWindow) {
    match window.current_monitor() {
        Ok(Some(m)) => {
            let _ = window.set_position(*m.position());
            let _ = window.set_size(*m.size());
        }
        Ok(None) => tracing::info!("no monitor to cover"),
        Err(e) => tracing::warn!(error = %e, "could not read the monitor's size"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kiosk_mode_writes_or_masks_the_start_at_login_entry() {
        let config = tempfile::tempdir().unwrap();
        let entry = config.path().join("autostart/hearth-kiosk.desktop");
        write_autostart(config.path(), Path::new("/opt/hearth/hearth"), true).unwrap();
        let text = std::fs::read_to_string(&entry).unwrap();
        assert!(
            text.contains("Exec=\"/opt/hearth/hearth\" --kiosk\n"),
            "{text}"
        );
        // Off: an entry of the same name that hides the system-wide one, twice over.
        for _ in 0..2 {
            write_autostart(config.path(), Path::new("/opt/hearth/hearth"), false).unwrap();
            let text = std::fs::read_to_string(&entry).unwrap();
            assert!(text.contains("\nHidden=true\n"), "{text}");
            assert!(!text.contains("Exec="), "{text}");
        }
    }

    #[test]
    fn the_entry_starts_the_installed_program_after_an_upgrade_replaced_it() {
        assert_eq!(
            installed_path("/usr/bin/hearth (deleted)".into()),
            Path::new("/usr/bin/hearth")
        );
        assert_eq!(
            installed_path("/usr/bin/hearth".into()),
            Path::new("/usr/bin/hearth")
        );
    }

    #[test]
    fn a_kiosk_holds_its_window_only_while_staff_can_release_it() {
        let me = |role| {
            Some(hearth_client::Me {
                name: "Mrs Kim".into(),
                role,
                room: "kim".into(),
                expires_at_ms: None,
            })
        };
        let signed_in = AppState {
            kiosk: true,
            connection: Connection::Online,
            me: me(Role::Resident),
            ..AppState::default()
        };
        assert!(holds_window(&signed_in));
        let not_kiosk = AppState {
            kiosk: false,
            ..signed_in.clone()
        };
        assert!(!holds_window(&not_kiosk));
        let not_set_up = AppState {
            me: None,
            connection: Connection::SetupNeeded { error: None },
            ..signed_in.clone()
        };
        assert!(!holds_window(&not_set_up), "staff must be able to close it");
        let offline = AppState {
            connection: Connection::Connecting {
                attempt: 3,
                error: None,
                retry_at_ms: None,
            },
            ..signed_in.clone()
        };
        assert!(!holds_window(&offline), "staff must be able to close it");
        let family = AppState {
            me: me(Role::Family),
            ..signed_in
        };
        assert!(!holds_window(&family));
    }

    #[test]
    fn the_autostart_entry_starts_kiosk_mode() {
        let e = autostart_entry(Path::new("/usr/bin/hearth"));
        assert!(e.contains("Exec=\"/usr/bin/hearth\" --kiosk\n"));
        assert!(e.starts_with("[Desktop Entry]\nType=Application\n"));
    }
}
