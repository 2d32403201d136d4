//! The pre-call check's microphone test against real ALSA capture devices. This machine has no
//! sound card, so the devices are made from ALSA's own plugins, in an `.asoundrc` that only
//! the test's child process reads (its `HOME` is a temporary directory): `null` gives digital
//! silence, what a microphone muted at the source or unplugged behind a sound server gives;
//! `file` plays a recording of a quiet room's noise, which noise suppression and DTX make
//! almost silent after processing. Each goes through cpal, the resampler, the echo canceller
//! and noise suppressor, and Opus, as a call's microphone does.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use hearth_engine::AudioInput;
use hearth_engine::media::check;

/// Set in the child, which runs the check itself.
const CHILD: &str = "HEARTH_TEST_ALSA_CHILD";

/// In the parent: writes `config` (with `{dir}` replaced by the temporary directory) as the
/// child's `.asoundrc`, runs this test again in a child with that `HOME`, and checks that it
/// passed; returns false. In the child: returns true, and the caller runs the test's body.
fn in_alsa_child(test: &str, config: &str, prepare: impl FnOnce(&Path)) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let home = tempfile::tempdir().unwrap();
    prepare(home.path());
    std::fs::write(
        home.path().join(".asoundrc"),
        config.replace("{dir}", &home.path().display().to_string()),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the check in the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

fn listen() -> Result<Option<f32>, hearth_engine::media::devices::DeviceError> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(check::microphone(AudioInput::Microphone { id: None }))
}

#[test]
fn a_microphone_giving_digital_silence_fails_the_check() {
    let config = r#"
pcm.!default { type plug; slave.pcm "silence" }
pcm.silence { type null }
"#;
    if !in_alsa_child(
        "a_microphone_giving_digital_silence_fails_the_check",
        config,
        |_| {},
    ) {
        return;
    }
    let err = listen().unwrap_err();
    assert_eq!(
        err.message,
        "The microphone gives no sound at all. It may be muted, switched off or unplugged."
    );
}

#[test]
fn a_microphone_in_a_quiet_room_passes_the_check() {
    // Ten seconds of noise at about -63 dBFS RMS (peaks of 40 steps of 32,767), from a fixed
    // linear congruential sequence, preceded by a quarter second of zeros as some devices give
    // when they open.
    let noise = |dir: &Path| {
        let mut x: u32 = 12345;
        let mut raw = vec![0u8; 12_000 * 2];
        for _ in 0..48_000 * 10 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let s = ((x >> 16) % 81) as i16 - 40;
            raw.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(dir.join("room.raw"), raw).unwrap();
    };
    let config = r#"
pcm.!default { type plug; slave { pcm "room"; format S16_LE; rate 48000; channels 1 } }
pcm.room {
  type file
  slave.pcm "silence"
  file "/dev/null"
  infile "{dir}/room.raw"
  format "raw"
}
pcm.silence { type null }
"#;
    if !in_alsa_child(
        "a_microphone_in_a_quiet_room_passes_the_check",
        config,
        noise,
    ) {
        return;
    }
    let level = listen().unwrap().unwrap();
    println!("a quiet room: the check's level after processing {level}");
}
