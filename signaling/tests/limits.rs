//! Bad input, limits and lifecycle over real sockets: every case gets its error code, the
//! connection (and every other room) lives on where it should, and the server shuts down cleanly.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, http_get, peer, start, start_with, token};
use hearth_proto::Role;
use serde_json::json;
use signaling::secret::Secret;
use signaling::token::{Claims, TokenKeys};
use signaling::{Limits, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

/// Two members of one room, the second's id.
async fn pair(server: &Server, room: &str) -> (Client, Client, String, String) {
    let (mut a, wa) = Client::join(server, room, Role::Resident, &format!("{room}-a")).await;
    let (b, wb) = Client::join(server, room, Role::Family, &format!("{room}-b")).await;
    a.expect("peer_joined").await;
    (a, b, peer(&wa), peer(&wb))
}

/// The next message a split client's reader passed on; panics after 5 s.
async fn next_in(
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(common::WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn bad_messages_get_their_code_and_the_connection_lives_on() {
    let server = start().await;
    let (mut a, mut b, a_id, b_id) = pair(&server, "one").await;
    let (mut x, mut y, x_id, y_id) = pair(&server, "other").await;

    a.send_text("{this is not json".into()).await;
    a.expect_error("bad_message").await;
    a.send(json!({"type":"dance"})).await;
    let e = a.expect_error("bad_message").await;
    assert!(e["message"].as_str().unwrap().contains("type"));
    a.send(json!({"type":"signal","to": b_id})).await;
    a.expect_error("bad_message").await;
    a.send(json!([1, 2, 3])).await;
    a.expect_error("bad_message").await;
    a.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    a.expect_error("bad_message").await;
    a.send(json!({"type":"hello","token":"again"})).await;
    a.expect_error("bad_message").await;

    // Over 64 KiB: refused, not delivered, connection kept.
    let big = "x".repeat(70 * 1024);
    a.send(json!({"type":"signal","to": b_id,"data": big}))
        .await;
    let e = a.expect_error("too_large").await;
    assert!(e["message"].as_str().unwrap().contains("65536"));
    // Just under the limit is fine.
    let fits = "y".repeat(60 * 1024);
    a.send(json!({"type":"signal","to": b_id,"data": fits}))
        .await;
    assert_eq!(
        b.expect("signal").await["data"].as_str().unwrap().len(),
        fits.len()
    );

    // A signal to someone not in the room, including a member of another room.
    // The error names whom the refused signal was for.
    a.send(json!({"type":"signal","to":"nobody","data":1}))
        .await;
    assert_eq!(a.expect_error("unknown_peer").await["peer"], "nobody");
    a.send(json!({"type":"signal","to": x_id,"data":1})).await;
    assert_eq!(a.expect_error("unknown_peer").await["peer"], x_id);
    a.send(json!({"type":"signal","to": a_id,"data":1})).await;
    a.expect_error("unknown_peer").await;
    // A non-clinician admitting: forbidden.
    a.send(json!({"type":"admit","peer": b_id})).await;
    a.expect_error("forbidden").await;

    // After all that, the connection still relays, and nothing was lost or leaked.
    a.send(json!({"type":"signal","to": b_id,"data":"still here"}))
        .await;
    assert_eq!(b.expect("signal").await["data"], "still here");
    b.quiet_for(Duration::from_millis(200)).await;
    // The other room noticed nothing and works.
    x.quiet_for(Duration::from_millis(100)).await;
    y.send(json!({"type":"signal","to": x_id,"data":"hi"}))
        .await;
    assert_eq!(x.expect("signal").await["from"], y_id);
    let _ = a_id;
}

#[tokio::test]
async fn the_websocket_layer_answers_pings_and_close_frames_and_ends_broken_streams() {
    let server = start().await;
    let (mut a, mut b, _, b_id) = pair(&server, "r").await;

    // A ping is answered with what it carried.
    a.send_raw(Message::Ping(b"are you there"[..].into())).await;
    assert_eq!(a.next_pong().await, b"are you there");

    // Far over the limit (and over a megabyte): skipped as it arrives, refused with its size,
    // and the connection goes on relaying.
    let huge = "z".repeat(3 * 1024 * 1024);
    a.send(json!({"type":"signal","to": b_id,"data": huge}))
        .await;
    let e = a.expect_error("too_large").await;
    assert!(e["message"].as_str().unwrap().contains("3145"), "{e}");
    a.send(json!({"type":"signal","to": b_id,"data":"small"}))
        .await;
    assert_eq!(b.expect("signal").await["data"], "small");

    // A close frame is answered with its code.
    a.send_raw(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    })))
    .await;
    assert_eq!(a.closed().await, Some(1001));

    // Text that is not UTF-8 ends the connection with 1007 (invalid payload data).
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    b.send_raw(Message::Frame(bad)).await;
    assert_eq!(b.closed().await, Some(1007));

    // So does a continuation with nothing to continue: 1002 (protocol error).
    let (mut c, _) = Client::join(&server, "other", Role::Resident, "C").await;
    let stray = Frame::message(&b"x"[..], OpCode::Data(Data::Continue), true);
    c.send_raw(Message::Frame(stray)).await;
    assert_eq!(c.closed().await, Some(1002));
}

/// A client frame by hand: final, text, masked with `key`.
fn masked_text(text: &str, key: [u8; 4]) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    match u16::try_from(payload.len()) {
        Ok(n) if n < 126 => frame.push(0x80 | n as u8),
        Ok(n) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => panic!("a short message"),
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[tokio::test]
async fn a_hello_sent_together_with_the_handshake_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A client that does not wait for the 101: its hello comes in the same write as the
    // request, so the HTTP server reads it along with the request, and the socket must get it.
    let server = start().await;
    let hello = json!({"type":"hello","token": token(&server, "r", Role::Family, "Ann")});
    let mut bytes = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.local_addr()
    )
    .into_bytes();
    bytes.extend(masked_text(&hello.to_string(), [7, 1, 200, 42]));
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    tcp.write_all(&bytes).await.unwrap();
    // The response's head, then whatever came behind it, which is the WebSocket's.
    let mut read = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the server hung up");
        read.extend_from_slice(&chunk[..n]);
        if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(
        read.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&read)
    );
    let ws = tokio_tungstenite::WebSocketStream::from_partially_read(
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        read[head_end..].to_vec(),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut c = Client::from_stream(ws);
    c.expect("welcome").await;
}

#[tokio::test]
async fn messages_before_hello_are_refused_until_hello() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    c.send(json!({"type":"signal","to":"x","data":1})).await;
    let e = c.expect_error("bad_message").await;
    assert!(e["message"].as_str().unwrap().contains("hello"));
    c.send_text("nonsense".into()).await;
    c.expect_error("bad_message").await;
    c.send(json!({"type":"hello","token": token(&server, "r", Role::Family, "Ann")}))
        .await;
    c.expect("welcome").await;
}

#[tokio::test]
async fn bad_tokens_are_refused_and_closed() {
    let server = start().await;
    let now = common::now();
    let claims = |exp| Claims {
        room: "r".into(),
        role: Role::Family,
        name: "Ann".into(),
        sub: "ann".into(),
        exp,
        jti: "j".into(),
        inv: None,
    };
    // Expired.
    let expired = server.tokens().sign(&claims(now - 10)).unwrap();
    let (mut c, e) = Client::join_with(&server, &expired).await;
    assert_eq!(e["code"], "expired_token");
    assert_eq!(c.closed().await, Some(1008));
    // Forged: signed with another secret.
    let other = TokenKeys::new(&Secret::new(&"f".repeat(40)).unwrap());
    let forged = other.sign(&claims(now + 600)).unwrap();
    let (mut c, e) = Client::join_with(&server, &forged).await;
    assert_eq!(e["code"], "bad_token");
    assert_eq!(c.closed().await, Some(1008));
    // Garbage.
    let (_, e) = Client::join_with(&server, "abc.def.ghi").await;
    assert_eq!(e["code"], "bad_token");
    // A valid token for another room than the one asked for.
    let mut c = Client::connect(&server).await;
    c.send(json!({"type":"hello","token": token(&server, "r", Role::Family, "Ann"),"room":"elsewhere"})).await;
    let e = c.expect_error("forbidden").await;
    assert!(e["message"].as_str().unwrap().contains("another room"));
    assert_eq!(c.closed().await, Some(1008));
    // None of them got in.
    assert_eq!(server.peer_count(), 0);
}

#[tokio::test]
async fn hello_must_arrive_in_time() {
    let server = start_with(Limits {
        hello_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut c = Client::connect(&server).await;
    c.expect_error("hello_timeout").await;
    assert_eq!(c.closed().await, Some(1008));
}

#[tokio::test]
async fn flooding_is_rate_limited_and_nothing_else_is_lost() {
    let server = start().await; // 50 msg/s, burst 50
    let (mut a, mut b, _, b_id) = pair(&server, "r").await;
    let sent = 80;
    for i in 0..sent {
        a.send(json!({"type":"signal","to": b_id,"data": i})).await;
    }
    // b gets an in-order prefix-free subsequence; a gets one error per dropped message.
    let mut limited = 0;
    let mut delivered = vec![];
    while limited + delivered.len() < sent {
        tokio::select! {
            m = a.recv() => {
                assert_eq!(m["code"], "rate_limited", "{m}");
                limited += 1;
            }
            m = b.recv() => delivered.push(m["data"].as_u64().unwrap()),
        }
    }
    assert!(
        limited >= 20,
        "at least 80 - 50 - refill were dropped: {limited}"
    );
    assert!(
        delivered.len() >= 50,
        "the burst got through: {}",
        delivered.len()
    );
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(delivered[..50], (0..50).collect::<Vec<u64>>()[..]);
    // After a pause the sender may send again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send(json!({"type":"signal","to": b_id,"data":"later"}))
        .await;
    assert_eq!(b.expect("signal").await["data"], "later");
}

#[tokio::test]
async fn large_messages_count_by_size_against_the_rate() {
    let server = start().await; // burst 50; a 60 KiB signal costs 16
    let (mut a, mut b, _, b_id) = pair(&server, "r").await;
    let chunk = "s".repeat(60 * 1024);
    for _ in 0..4 {
        a.send(json!({"type":"signal","to": b_id,"data": chunk}))
            .await;
    }
    for _ in 0..3 {
        assert_eq!(
            b.expect("signal").await["data"].as_str().unwrap().len(),
            chunk.len()
        );
    }
    a.expect_error("rate_limited").await;
    b.quiet_for(Duration::from_millis(100)).await;
    // Oversized frames count too: they are refused as rate limited before being looked at.
    a.send(json!({"type":"signal","to": b_id,"data": "x".repeat(200 * 1024)}))
        .await;
    a.expect_error("rate_limited").await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_and_others_carry_on() {
    let server = start_with(Limits {
        outbound_queue: 8,
        rate_per_second: 10_000,
        rate_burst: 10_000,
        write_timeout: Duration::from_secs(2),
        resume_grace: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let (a, slow, _, slow_id) = pair(&server, "r").await;
    let (mut sink, mut inbox) = a.into_split();
    // `slow` never reads again. Flood it until the server gives up on it.
    let chunk = "z".repeat(60 * 1024);
    let frame = json!({"type":"signal","to": slow_id,"data": chunk}).to_string();
    let mut sent = 0;
    while server.peer_count() == 2 && sent < 5_000 {
        futures_util::SinkExt::send(&mut sink, Message::text(frame.clone()))
            .await
            .unwrap();
        sent += 1;
    }
    assert_eq!(
        server.peer_count(),
        1,
        "the slow client was disconnected after {sent} messages"
    );
    // Its session is held for the resume grace (what is sent to it meanwhile is kept for a
    // resume); then the sender is told it left, possibly after unknown_peer errors for signals
    // sent after that.
    loop {
        let m = next_in(&mut inbox).await;
        if m["type"] == "peer_left" {
            assert_eq!(m["peer"], slow_id);
            break;
        }
        assert_eq!(m["code"], "unknown_peer", "{m}");
    }
    // The server is fine: new people still get in.
    let (_, w) = Client::join(&server, "r", Role::Family, "Someone").await;
    assert_eq!(w["type"], "welcome");
    drop(slow);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_heard_until_the_write_timeout_cuts_it_off() {
    let write_timeout = Duration::from_secs(1);
    let server = start_with(Limits {
        // Its queue does not fill: the write timeout is what ends it.
        outbound_queue: 100_000,
        rate_per_second: 100_000,
        rate_burst: 100_000,
        write_timeout,
        ping_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(120),
        resume_grace: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let (a, mut slow, a_id, slow_id) = pair(&server, "r").await;
    let (mut sink, mut inbox) = a.into_split();
    // More than the sockets' buffers hold on both sides of loopback: the server's writes to
    // `slow` stall.
    let frame = json!({"type":"signal","to": slow_id,"data": "z".repeat(60 * 1024)}).to_string();
    for _ in 0..300 {
        futures_util::SinkExt::send(&mut sink, Message::text(frame.clone()))
            .await
            .unwrap();
    }
    // What it sends meanwhile is still read and relayed.
    slow.send(json!({"type":"signal","to": a_id,"data": "still here"}))
        .await;
    let m = next_in(&mut inbox).await;
    assert_eq!(
        (&m["type"], &m["data"]),
        (&json!("signal"), &json!("still here"))
    );
    until_one_is_left(&server, "the stalled client was never cut off").await;
    // Its session is held for the resume grace, then it has left.
    let m = next_in(&mut inbox).await;
    assert_eq!(
        (&m["type"], &m["peer"]),
        (&json!("peer_left"), &json!(slow_id))
    );
}

#[tokio::test]
async fn what_a_client_sent_before_its_socket_was_reset_is_still_heard() {
    let server = start_with(Limits {
        outbound_queue: 100_000,
        rate_per_second: 100_000,
        rate_burst: 100_000,
        write_timeout: Duration::from_secs(30),
        ping_interval: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(120),
        ..Limits::default()
    })
    .await;
    let (a, mut gone, a_id, gone_id) = pair(&server, "r").await;
    let (mut sink, mut inbox) = a.into_split();
    // `gone` does not read: the server's writes to it stall, so what is written next to it
    // fails once its socket is reset.
    let frame = json!({"type":"signal","to": gone_id,"data": "z".repeat(60 * 1024)}).to_string();
    for _ in 0..300 {
        futures_util::SinkExt::send(&mut sink, Message::text(frame.clone()))
            .await
            .unwrap();
    }
    // It says goodbye and leaves, then closes its socket with what it did not read still in it,
    // so its kernel resets the connection (as a process that exits does). Its messages are
    // sent at once: the reset would drop what Nagle's algorithm still held back.
    gone.no_delay();
    gone.send(json!({"type":"signal","to": a_id,"data": "bye"}))
        .await;
    gone.send(json!({"type":"leave"})).await;
    drop(gone);
    let m = next_in(&mut inbox).await;
    assert_eq!((&m["type"], &m["data"]), (&json!("signal"), &json!("bye")));
    // It left: the others hear so at once, not after the resume grace (30 s here).
    let m = next_in(&mut inbox).await;
    assert_eq!(
        (&m["type"], &m["peer"]),
        (&json!("peer_left"), &json!(gone_id))
    );
}

/// Waits until one of the pair's two sessions is gone, failing with `why` after [`common::WAIT`].
async fn until_one_is_left(server: &Server, why: &str) {
    let since = tokio::time::Instant::now();
    while server.peer_count() == 2 {
        assert!(since.elapsed() < common::WAIT, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_relayed_message_that_stalls_with_nothing_behind_it_is_cut_off_at_the_write_timeout() {
    let server = start_with(Limits {
        max_frame_bytes: 32 << 20,
        rate_per_second: 100_000,
        rate_burst: 100_000,
        write_timeout: Duration::from_secs(1),
        // No heartbeat within the test: only the write timeout can end the connection.
        ping_interval: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(1_200),
        resume_grace: Duration::from_millis(500),
        ..Limits::default()
    })
    .await;
    let (mut a, slow, _, slow_id) = pair(&server, "r").await;
    // One message, larger than the sockets' buffers on both sides of loopback: the task that
    // relays it writes what the socket takes and leaves the rest as a backlog for `slow`'s own
    // task, which nothing else wakes.
    a.send(json!({"type":"signal","to": slow_id,"data": "z".repeat(24 << 20)}))
        .await;
    until_one_is_left(
        &server,
        "the stalled client was not cut off at the write timeout",
    )
    .await;
    let left = a.expect("peer_left").await;
    assert_eq!(left["peer"], slow_id);
    drop(slow);
}

#[tokio::test]
async fn a_silent_peer_is_detected_and_dropped() {
    let server = start_with(Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        resume_grace: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let (mut a, silent, _, silent_id) = pair(&server, "r").await;
    // `a` keeps reading (and so answers pings); `silent` does not.
    let left = a.expect("peer_left").await;
    assert_eq!(left["peer"], silent_id);
    // `a` itself survived several idle periods because it answered pings.
    a.quiet_for(Duration::from_millis(900)).await;
    assert_eq!(server.peer_count(), 1);
    drop(silent);
}

#[tokio::test]
async fn pings_are_spread_over_the_interval_and_a_client_that_talks_is_not_pinged() {
    let interval = Duration::from_millis(1000);
    let server = start_with(Limits {
        ping_interval: interval,
        idle_timeout: Duration::from_secs(10),
        ..Limits::default()
    })
    .await;
    // Clients that connected in the same moment (a node went away, say; one room each, as a
    // call holds four) are not all pinged in the same moment: their first pings fall across
    // the interval.
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push(
            Client::join(&server, &format!("crowd{i}"), Role::Family, "c")
                .await
                .0,
        );
    }
    // Read all at once: each ping's time is when it came, not when its turn to be read came.
    let firsts: Vec<_> =
        futures_util::future::join_all(clients.iter_mut().map(|c| c.next_ping(interval * 3)))
            .await
            .into_iter()
            .map(|t| t.expect("an idle client is pinged"))
            .collect();
    let (earliest, latest) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
    // 16 first pings spread at random over 0.95 s all fall within 0.3 s of each other with a
    // chance of about 1 in a million; without the spread they come within milliseconds.
    assert!(
        *latest - *earliest >= Duration::from_millis(300),
        "first pings within {:?}",
        *latest - *earliest
    );

    // A client that keeps talking is known to be alive: no pings for it; its silent partner
    // is pinged.
    let (mut a, mut b, _, b_id) = pair(&server, "talk").await;
    let mut b_pinged = false;
    for i in 0..20 {
        a.send(json!({"type":"signal","to": b_id,"data": i})).await;
        let a_pinged = a.next_ping(Duration::from_millis(100)).await.is_some();
        // (Until a first talks, its first look may find it silent: the first 1.2 s may ping.)
        assert!(i < 6 || !a_pinged, "a talking client was pinged");
        b_pinged |= b.next_ping(Duration::from_millis(100)).await.is_some();
    }
    assert!(b_pinged, "the silent partner was not pinged in 4 s");
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let server = start().await;
    assert_eq!(http_get(&server, "/healthz").await.0, 200);
    assert_eq!(http_get(&server, "/readyz").await.0, 200);
    let (mut a, mut b, _, b_id) = pair(&server, "r").await;
    for i in 0..3 {
        a.send(json!({"type":"signal","to": b_id,"data": i})).await;
        b.expect("signal").await;
    }
    let (_, e) = Client::join_with(&server, "junk").await;
    assert_eq!(e["code"], "bad_token");
    let (status, body) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    let value = |line_start: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("{line_start} missing from\n{body}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(value("hearth_connections ") >= 2.0);
    assert_eq!(value("hearth_rooms "), 1.0);
    assert!(value("hearth_messages_in_total ") >= 6.0);
    assert!(value("hearth_messages_out_total ") >= 6.0);
    assert_eq!(value("hearth_errors_total{code=\"bad_token\"} "), 1.0);
    assert_eq!(value("hearth_errors_total{code=\"room_full\"} "), 0.0);
    assert_eq!(value("hearth_relay_latency_seconds_count "), 3.0);
    assert!(value("hearth_relay_latency_seconds_bucket{le=\"+Inf\"} ") == 3.0);
    let _ = a.quiet_for(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_and_closes() {
    let server = start_with(Limits {
        shutdown_grace: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let addr = server.local_addr();
    let (mut a, mut b, _, _) = pair(&server, "r").await;
    let mut lurker = Client::connect(&server).await; // connected, no hello yet
    let shutting = tokio::spawn(server.shutdown());
    // The one without a session is told and closed at once.
    let m = lurker.expect("shutdown").await;
    assert!(m["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(lurker.closed().await, Some(1001));
    // Those in a room are told when to reconnect (within a spread window), in their sessions'
    // numbered streams; one goes as told, the other lingers and is closed when the drain
    // deadline passes.
    let told = a.expect("shutdown").await;
    assert!(a.last_seq > 1, "numbered in the session");
    assert!(told["retry_after_ms"].as_u64().unwrap() < 1000);
    drop(a);
    b.expect("shutdown").await;
    assert_eq!(b.closed().await, Some(1001));
    tokio::time::timeout(Duration::from_secs(3), shutting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_drain_time_shorter_than_the_spread_window_still_drains() {
    // Half of 200 ms is under the 250 ms the spread window starts from.
    let server = start_with(Limits {
        shutdown_grace: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let (mut a, mut b, _, _) = pair(&server, "r").await;
    let shutting = tokio::spawn(server.shutdown());
    for c in [&mut a, &mut b] {
        let told = c.expect("shutdown").await;
        assert!(told["retry_after_ms"].as_u64().unwrap() < 100, "{told}");
        assert_eq!(c.closed().await, Some(1001));
    }
    tokio::time::timeout(Duration::from_secs(3), shutting)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn readyz_fails_while_shutting_down() {
    let server = start().await;
    // A client that ignores the shutdown keeps the server in its grace period.
    let (_a, _) = Client::join(&server, "r", Role::Family, "Ann").await;
    let url = server.local_addr();
    let hub_probe = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = tokio::net::TcpStream::connect(url).await.ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        Some(buf)
    });
    server.shutdown().await;
    // Either the listener was already closed (refused) or it answered 503: never "ready".
    if let Some(reply) = hub_probe.await.unwrap() {
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    }
}
