//! hearth-cli's exit codes, from the real binary against a real server.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_engine::{AudioInput, AudioOutput, Role, Room, RoomEvent, RoomOptions, VideoInput};
use signaling::{Server, ServerOptions};

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-cli"))
        .args(args)
        .env_remove("HEARTH_TOKEN")
        .output()
        .unwrap()
}

fn token(server: &Server, name: &str, ttl: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    server
        .tokens()
        .mint("r", Role::Family, name, None, ttl, now)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_went_wrong() {
    let server = Server::start(ServerOptions::default()).await.unwrap();
    let url = server.ws_url();

    // 2: no token.
    let out = cli(&["--server", &url, "join"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));

    // 3: nothing listening.
    let out = cli(&["--server", "ws://127.0.0.1:9/v1/ws", "--token", "x", "join"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 4: a token the server refuses, with its code in the message.
    let out = cli(&["--server", &url, "--token", "not-a-token", "join"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_token"));

    // 5: the call does not happen (Kim, an engine in this test, declines it).
    let kim = token(&server, "Kim", Duration::from_secs(60));
    let (kim_room, mut kim_events) = Room::connect(
        &url,
        &kim,
        RoomOptions {
            video: VideoInput::None,
            audio: AudioInput::None,
            audio_output: AudioOutput::None,
            bind_addrs: vec!["127.0.0.1:0".parse().unwrap()],
            ..RoomOptions::default()
        },
    )
    .await
    .unwrap();
    let decliner = tokio::spawn(async move {
        while let Some(e) = kim_events.recv().await {
            if let RoomEvent::IncomingCall { peer, .. } = e {
                kim_room.decline(&peer).await.unwrap();
                return;
            }
        }
    });
    let ann = token(&server, "Ann", Duration::from_secs(60));
    let (url2, ann2) = (url.clone(), ann.clone());
    let out = tokio::task::spawn_blocking(move || {
        cli(&[
            "--server",
            &url2,
            "--token",
            &ann2,
            "--bind",
            "127.0.0.1:0",
            "call",
            "Kim",
        ])
    })
    .await
    .unwrap();
    decliner.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("declined"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 6: the call happens but, with --expect-media, nothing arrives (Bob sends no media).
    let bob = token(&server, "Bob", Duration::from_secs(60));
    let url3 = url.clone();
    let bob_side = tokio::task::spawn_blocking(move || {
        cli(&[
            "--server",
            &url3,
            "--token",
            &bob,
            "--bind",
            "127.0.0.1:0",
            "--video",
            "none",
            "--audio",
            "none",
            "answer",
        ])
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tokio::task::spawn_blocking(move || {
        cli(&[
            "--server",
            &url,
            "--token",
            &ann,
            "--bind",
            "127.0.0.1:0",
            "--size",
            "160x120",
            "--duration",
            "2",
            "--expect-media",
            "call",
            "Bob",
        ])
    })
    .await
    .unwrap();
    let bob_out = bob_side.await.unwrap();
    assert_eq!(
        bob_out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bob_out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no video"));
}
