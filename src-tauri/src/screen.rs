//! Keeping a resident's screen on: during a call the X screen saver's idle timer is reset
//! every few seconds (what `xdg-screensaver reset` and video players do), and an incoming call
//! wakes a blanked or powered-down screen (screen saver off, DPMS on). X11 through `x11rb`;
//! on Wayland or without a display this does nothing and says so once in the log.

use x11rb::connection::Connection;
use x11rb::protocol::dpms::{self, DPMSMode};
use x11rb::protocol::screensaver;
use x11rb::protocol::xproto::{ConnectionExt as _, ScreenSaver};
use x11rb::rust_connection::RustConnection;

/// A connection to the X server the app is shown on.
pub struct Screen {
    conn: RustConnection,
    root: u32,
}

/// Why the screen could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    /// No X display.
    #[error("no X display: {0}")]
    NoDisplay(String),
    /// The X server refused a request.
    #[error("the X server refused: {0}")]
    Refused(String),
}

fn refused(e: impl std::fmt::Display) -> ScreenError {
    ScreenError::Refused(e.to_string())
}

impl Screen {
    /// Connects to `display` (`None`: `$DISPLAY`).
    pub fn open(display: Option<&str>) -> Result<Self, ScreenError> {
        let (conn, n) =
            x11rb::connect(display).map_err(|e| ScreenError::NoDisplay(e.to_string()))?;
        let root = conn
            .setup()
            .roots
            .get(n)
            .map(|s| s.root)
            .ok_or_else(|| ScreenError::NoDisplay("no screen".into()))?;
        Ok(Self { conn, root })
    }

    /// Turns the screen on now: ends the screen saver and powers the monitor on.
    pub fn wake(&self) -> Result<(), ScreenError> {
        self.conn
            .force_screen_saver(ScreenSaver::RESET)
            .map_err(refused)?
            .check()
            .map_err(refused)?;
        let dpms_capable = dpms::capable(&self.conn)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|r| r.capable);
        if dpms_capable {
            dpms::force_level(&self.conn, DPMSMode::ON)
                .map_err(refused)?
                .check()
                .map_err(refused)?;
        }
        Ok(())
    }

    /// Counts as activity, so the screen does not blank for a while.
    pub fn keep_awake(&self) -> Result<(), ScreenError> {
        self.wake()
    }

    /// True while the screen saver is showing.
    pub fn saver_active(&self) -> Result<bool, ScreenError> {
        let info = screensaver::query_info(&self.conn, self.root)
            .map_err(refused)?
            .reply()
            .map_err(refused)?;
        Ok(info.state == u8::from(screensaver::State::ON))
    }

    /// Starts the screen saver now (for tests: the state a tablet is in at night).
    pub fn blank(&self) -> Result<(), ScreenError> {
        self.conn
            .force_screen_saver(ScreenSaver::ACTIVE)
            .map_err(refused)?
            .check()
            .map_err(refused)?;
        Ok(())
    }
}
