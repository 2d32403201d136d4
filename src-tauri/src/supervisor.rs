//! The supervisor: `hearth` runs the app as its child and starts it again after a crash while
//! it is a kiosk. The app says whether it is one, as that changes, through a file the supervisor
//! names in `HEARTH_SUPERVISED`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set for the app by its supervisor: the file where the app says whether it is a kiosk now.
const SUPERVISED: &str = "HEARTH_SUPERVISED";

/// What the app writes to its supervisor's file.
const KIOSK: &str = "kiosk\n";
const WINDOW: &str = "window\n";

/// Whether this process is the app under its supervisor (rather than the supervisor).
pub fn supervised() -> bool {
    supervisor_file().is_some()
}

/// The supervisor's file, when this process runs under one.
fn supervisor_file() -> Option<PathBuf> {
    std::env::var_os(SUPERVISED)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// For the app under its supervisor: end when the supervisor ends, so that a supervisor
/// stopped by a signal (a WebDriver session closed, a log-out) leaves no window behind.
pub fn end_with_supervisor() {
    use rustix::process::{Signal, set_parent_process_death_signal};
    if supervised()
        && let Err(e) = set_parent_process_death_signal(Some(Signal::TERM))
    {
        tracing::warn!(error = %e, "this app will not end with its supervisor");
    }
}

/// Tells the supervisor whether the app is a kiosk now: it restarts a crashed app only then.
pub(crate) fn tell_supervisor(kiosk: bool) {
    let Some(file) = supervisor_file() else {
        return;
    };
    if let Err(e) = std::fs::write(&file, if kiosk { KIOSK } else { WINDOW }) {
        tracing::warn!(error = %e, kiosk, "could not tell the supervisor about kiosk mode");
    }
}

/// Starts the app and watches it. A kiosk that crashes comes back at once the first time, then
/// after growing pauses if it keeps crashing, so a broken install does not spin. The app says
/// whether it is a kiosk as that changes (`--kiosk`, or staff's console while it runs), so a
/// tablet made a kiosk from the console is restarted too, from that moment. A clean exit
/// (status 0), or a crash while not a kiosk, ends it.
#[derive(Debug)]
pub struct Supervisor {
    crashes: u32,
    last_start: Option<Instant>,
}

/// A run that lasted this long resets the crash count.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// The longest pause between restarts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    /// A supervisor that has not started anything yet.
    pub fn new() -> Self {
        Self {
            crashes: 0,
            last_start: None,
        }
    }

    /// Call when starting the app.
    pub fn started(&mut self, now: Instant) {
        self.last_start = Some(now);
    }

    /// The app exited with `code` (`None`: killed by a signal). Returns the pause before
    /// restarting it, or `None` to stop.
    pub fn exited(&mut self, code: Option<i32>, now: Instant) -> Option<Duration> {
        if code == Some(0) {
            return None;
        }
        if self
            .last_start
            .is_some_and(|t| now.duration_since(t) >= STABLE_RUN)
        {
            self.crashes = 0;
        }
        let pause = match self.crashes {
            0 => Duration::ZERO,
            n => (Duration::from_secs(1) * 2u32.saturating_pow(n - 1)).min(MAX_PAUSE),
        };
        self.crashes = self.crashes.saturating_add(1);
        Some(pause)
    }

    /// Runs `program args` (a kiosk from the start when `kiosk`) until it exits cleanly, or
    /// crashes while it is not a kiosk, restarting it after a kiosk's crashes. Returns the exit
    /// status to end with: the app's, or 128 + the signal that killed it.
    pub fn run(mut self, program: &Path, args: &[String], kiosk: bool) -> std::io::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        // The app's file: in the user's runtime directory, made by `tempfile` (a name no one
        // else can have chosen), removed when this ends.
        let file = tempfile::Builder::new()
            .prefix("hearth-supervisor-")
            .tempfile_in(dirs::runtime_dir().unwrap_or_else(std::env::temp_dir))?;
        std::fs::write(file.path(), if kiosk { KIOSK } else { WINDOW })?;
        loop {
            self.started(Instant::now());
            let status = Command::new(program)
                .args(args)
                .env(SUPERVISED, file.path())
                .status()?;
            let Some(pause) = self.exited(status.code(), Instant::now()) else {
                return Ok(0);
            };
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            // The app's last word; the start's mode if it said nothing readable.
            let kiosk_now = match std::fs::read_to_string(file.path()) {
                Ok(said) if said == KIOSK || said == WINDOW => said == KIOSK,
                _ => kiosk,
            };
            if !kiosk_now {
                tracing::warn!(?status, "Hearth stopped unexpectedly");
                return Ok(code);
            }
            tracing::warn!(
                ?status,
                ?pause,
                "the kiosk stopped unexpectedly; restarting it"
            );
            std::thread::sleep(pause);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn restarts_crashes_with_growing_pauses_and_stops_on_a_clean_exit() {
        let mut s = Supervisor::new();
        let t0 = Instant::now();
        s.started(t0);
        assert_eq!(s.exited(Some(101), t0), Some(Duration::ZERO));
        s.started(t0);
        assert_eq!(s.exited(None, t0), Some(Duration::from_secs(1)));
        s.started(t0);
        assert_eq!(s.exited(Some(1), t0), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            s.started(t0);
            assert!(s.exited(Some(1), t0).unwrap() <= MAX_PAUSE);
        }
        // A long, healthy run forgives earlier crashes.
        s.started(t0);
        assert_eq!(s.exited(Some(1), t0 + STABLE_RUN), Some(Duration::ZERO));
        assert_eq!(s.exited(Some(0), t0), None);
    }

    /// Runs `script` (POSIX sh; `$n` is its run's number, from 1) under a supervisor.
    /// Returns the supervisor's exit status and how many runs there were.
    fn supervise(kiosk: bool, script: &str) -> (i32, u32) {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("runs");
        let script = format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
             [ -f \"$HEARTH_SUPERVISED\" ] || exit 99; {script}",
            c = counter.display()
        );
        let code = Supervisor::new()
            .run(Path::new("/bin/sh"), &["-c".into(), script], kiosk)
            .unwrap();
        let runs = std::fs::read_to_string(&counter).unwrap();
        (code, runs.trim().parse().unwrap())
    }

    #[test]
    fn a_crashing_kiosk_is_restarted_until_it_exits_cleanly() {
        // Crashes twice (non-zero exit, then killed by a signal), then exits cleanly.
        let script =
            "if [ $n -eq 1 ]; then exit 3; fi; if [ $n -eq 2 ]; then kill -9 $$; fi; exit 0";
        assert_eq!(supervise(true, script), (0, 3));
    }

    #[test]
    fn an_app_that_is_not_a_kiosk_is_not_restarted_and_its_status_is_kept() {
        assert_eq!(supervise(false, "exit 3"), (3, 1));
        assert_eq!(supervise(false, "kill -9 $$"), (128 + 9, 1));
        assert_eq!(supervise(false, "exit 0"), (0, 1));
    }

    #[test]
    fn the_app_says_when_it_becomes_a_kiosk_and_when_it_stops_being_one() {
        // Made a kiosk while it runs (staff's console), then it crashes: restarted.
        let script = "if [ $n -eq 1 ]; then printf 'kiosk\\n' > \"$HEARTH_SUPERVISED\"; kill -9 $$; fi; exit 0";
        assert_eq!(supervise(false, script), (0, 2));
        // A kiosk from the start, turned off, then it crashes: not restarted.
        let script = "printf 'window\\n' > \"$HEARTH_SUPERVISED\"; exit 5";
        assert_eq!(supervise(true, script), (5, 1));
        // Nothing readable said: the mode it started in.
        let script =
            "if [ $n -eq 1 ]; then echo garbled > \"$HEARTH_SUPERVISED\"; exit 4; fi; exit 0";
        assert_eq!(supervise(true, script), (0, 2));
    }
}
