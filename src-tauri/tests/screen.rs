//! Waking a blanked screen for an incoming call, on a real X server (Xvfb, which scripts/test
//! installs): the screen saver is started, then `Screen::wake` must end it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_desktop::Screen;

#[test]
fn an_incoming_call_wakes_a_blanked_screen() {
    let display = format!(":{}", 200 + std::process::id() % 500);
    let mut xvfb = Command::new("Xvfb")
        .args([
            display.as_str(),
            "-screen",
            "0",
            "640x480x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (Debian package xvfb) must be installed: scripts/test installs it");
    let deadline = Instant::now() + Duration::from_secs(10);
    let screen = loop {
        match Screen::open(Some(&display)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("Xvfb did not start: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    screen.blank().unwrap();
    assert!(
        screen.saver_active().unwrap(),
        "the screen saver should be on"
    );
    screen.wake().unwrap();
    assert!(
        !screen.saver_active().unwrap(),
        "wake() should end the screen saver"
    );
    screen.blank().unwrap();
    screen.keep_awake().unwrap();
    assert!(!screen.saver_active().unwrap());
    xvfb.kill().unwrap();
    let _ = xvfb.wait();
}
