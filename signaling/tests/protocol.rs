//! The wire contract over real sockets: joining, relaying, the waiting room, presence, room size.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, peer, start, start_with, token};
use hearth_proto::Role;
use serde_json::json;
use signaling::Limits;

#[tokio::test]
async fn family_joins_a_resident_and_signals_relay_both_ways() {
    let server = start().await;
    let (mut kim, welcome) = Client::join(&server, "kim-family", Role::Resident, "Mrs Kim").await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["room"], "kim-family");
    assert_eq!(welcome["role"], "resident");
    assert_eq!(welcome["peers"], json!([]));
    assert_eq!(
        welcome["ice_servers"],
        json!([]),
        "no STUN/TURN configured, and the list says so"
    );
    let kim_id = peer(&welcome);

    let (mut ann, welcome) = Client::join(&server, "kim-family", Role::Family, "Ann").await;
    let ann_id = peer(&welcome);
    // Presence: the resident's tablet is already there.
    assert_eq!(
        welcome["peers"],
        json!([{"peer": kim_id, "name": "Mrs Kim", "role": "resident", "sub": "sub-mrs kim"}])
    );
    let joined = kim.expect("peer_joined").await;
    assert_eq!(
        joined,
        json!({"type":"peer_joined","peer": ann_id,"name":"Ann","role":"family","sub":"sub-ann"})
    );

    // A forged `from` is ignored: the server sets it.
    let offer = json!({"sdp": "v=0 offer", "kind": "offer"});
    ann.send(json!({"type":"signal","to": kim_id,"from":"someone-else","data": offer}))
        .await;
    assert_eq!(
        kim.expect("signal").await,
        json!({"type":"signal","from": ann_id,"data": offer})
    );
    // An answer the size of real SDP, with characters of more than one byte: longer than one
    // of the server's reads, and relayed whole.
    let answer = json!({"kind": "answer", "sdp": "a=candidate é 한국어 ".repeat(300)});
    kim.send(json!({"type":"signal","to": ann_id,"data": answer}))
        .await;
    assert_eq!(
        ann.expect("signal").await,
        json!({"type":"signal","from": kim_id,"data": answer})
    );

    ann.send(json!({"type":"leave"})).await;
    assert_eq!(ann.closed().await, Some(1000));
    assert_eq!(kim.expect("peer_left").await["peer"], ann_id);
}

#[tokio::test]
async fn a_dropped_connection_is_a_peer_left_once_its_session_can_no_longer_resume() {
    let server = start_with(Limits {
        resume_grace: Duration::from_millis(800),
        ..Limits::default()
    })
    .await;
    let (mut kim, _) = Client::join(&server, "r", Role::Resident, "Kim").await;
    let (ann, welcome) = Client::join(&server, "r", Role::Family, "Ann").await;
    kim.expect("peer_joined").await;
    drop(ann);
    // Held for the grace period (Ann may resume), then gone.
    kim.quiet_for(Duration::from_millis(500)).await;
    assert_eq!(kim.expect("peer_left").await["peer"], peer(&welcome));
}

#[tokio::test]
async fn waiting_room_queues_in_order_admits_and_denies() {
    let server = start().await;
    let (mut p1, w1) = Client::join(&server, "consult", Role::Patient, "Park").await;
    assert_eq!(
        w1,
        json!({"type":"waiting","room":"consult","peer": peer(&w1),"position":1})
    );
    let (mut p2, w2) = Client::join(&server, "consult", Role::Patient, "Lee").await;
    assert_eq!(w2["position"], 2);
    let (p1_id, p2_id) = (peer(&w1), peer(&w2));

    let (mut doc, welcome) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(
        welcome["peers"],
        json!([]),
        "waiting patients are not in the call"
    );
    let doc_id = peer(&welcome);
    let lobby = doc.expect("lobby").await;
    let queue: Vec<_> = lobby["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(peer)
        .collect();
    assert_eq!(queue, vec![p1_id.clone(), p2_id.clone()]);
    assert_eq!(lobby["waiting"][0]["name"], "Park");
    assert_eq!(lobby["waiting"][0]["role"], "patient");
    assert!(
        lobby["waiting"][0]["since"].as_u64().unwrap()
            <= lobby["waiting"][1]["since"].as_u64().unwrap()
    );

    // A waiting patient cannot signal anyone.
    p2.send(json!({"type":"signal","to": doc_id,"data":{}}))
        .await;
    p2.expect_error("forbidden").await;
    // Only a clinician admits.
    p2.send(json!({"type":"admit","peer": p2_id})).await;
    p2.expect_error("forbidden").await;

    doc.send(json!({"type":"admit","peer": p1_id})).await;
    let w = p1.expect("welcome").await;
    assert_eq!(
        w["peers"],
        json!([{"peer": doc_id,"name":"Dr Cho","role":"clinician","sub":"sub-dr cho"}])
    );
    assert_eq!(doc.expect("peer_joined").await["peer"], p1_id);
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"].as_array().unwrap().len(), 1);
    assert_eq!(p2.expect("waiting").await["position"], 1);

    doc.send(json!({"type":"deny","peer": p2_id,"reason":"Please book another time."}))
        .await;
    let denied = p2.expect_error("denied").await;
    assert_eq!(denied["message"], "Please book another time.");
    assert_eq!(p2.closed().await, Some(1008));
    assert_eq!(doc.expect("lobby").await["waiting"], json!([]));

    // Admitting someone no longer waiting is an error, not a crash.
    doc.send(json!({"type":"admit","peer": p2_id})).await;
    assert_eq!(doc.expect_error("unknown_peer").await["peer"], p2_id);
}

#[tokio::test]
async fn a_patient_who_reconnects_keeps_their_place() {
    let server = start().await;
    let park = token(&server, "consult", Role::Patient, "Park");
    let (p1, w1) = Client::join_with(&server, &park).await;
    let (_p2, w2) = Client::join(&server, "consult", Role::Patient, "Lee").await;
    let (mut doc, _) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    doc.expect("lobby").await;

    drop(p1);
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["peer"], peer(&w1));
    assert_eq!(
        lobby["waiting"][0]["connected"], false,
        "the clinician sees the drop"
    );
    let since = lobby["waiting"][0]["since"].clone();

    let (mut p1, again) = Client::join_with(&server, &park).await;
    assert_eq!(again["type"], "waiting");
    assert_eq!(again["position"], 1);
    assert_eq!(peer(&again), peer(&w1), "same id as before");
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["peer"], peer(&w1));
    assert_eq!(lobby["waiting"][0]["connected"], true);
    assert_eq!(
        lobby["waiting"][0]["since"], since,
        "waiting time counts from the first check-in"
    );
    assert_eq!(lobby["waiting"][1]["peer"], peer(&w2));

    doc.send(json!({"type":"admit","peer": peer(&w1)})).await;
    p1.expect("welcome").await;
}

#[tokio::test]
async fn guests_wait_in_consults_but_not_in_family_rooms() {
    let server = start().await;
    let (_kim, _) = Client::join(&server, "family", Role::Resident, "Kim").await;
    let (_, w) = Client::join(&server, "family", Role::Guest, "Cousin").await;
    assert_eq!(w["type"], "welcome");
    let (_doc, _) = Client::join(&server, "clinic", Role::Clinician, "Dr Cho").await;
    let (_, w) = Client::join(&server, "clinic", Role::Guest, "Visitor").await;
    assert_eq!(w["type"], "waiting");
}

#[tokio::test]
async fn a_room_holds_sixteen_present_and_room_full_beyond() {
    // A resident's tablet and the relatives whose apps are open are all present; who calls
    // whom (four at most in one call) is the clients' business.
    let server = start().await;
    let mut members = vec![];
    for i in 0..16 {
        let (c, w) = Client::join(&server, "big", Role::Family, &format!("F{i}")).await;
        assert_eq!(w["type"], "welcome");
        members.push(c);
    }
    let (mut e, w) = Client::join(&server, "big", Role::Family, "One more").await;
    assert_eq!(w["type"], "error");
    assert_eq!(w["code"], "room_full");
    assert_eq!(e.closed().await, Some(1008));
    // A clinician cannot admit past the cap either.
    let server = start_with(Limits {
        max_participants: 2,
        ..Limits::default()
    })
    .await;
    let (mut doc, _) = Client::join(&server, "c", Role::Clinician, "Doc").await;
    doc.expect("lobby").await;
    let (_nurse, _) = Client::join(&server, "c", Role::Clinician, "Nurse").await;
    doc.expect("peer_joined").await;
    let (_p, w) = Client::join(&server, "c", Role::Patient, "P").await;
    doc.expect("lobby").await;
    doc.send(json!({"type":"admit","peer": peer(&w)})).await;
    doc.expect_error("room_full").await;
}

#[tokio::test]
async fn the_same_identity_replaces_its_older_connection() {
    let server = start().await;
    let tablet = token(&server, "kim", Role::Resident, "Kim");
    let (mut ann, _) = Client::join(&server, "kim", Role::Family, "Ann").await;
    let (mut old, w_old) = Client::join_with(&server, &tablet).await;
    ann.expect("peer_joined").await;
    let (_new, w_new) = Client::join_with(&server, &tablet).await;
    assert_eq!(w_new["type"], "welcome");
    old.expect_error("replaced").await;
    assert_eq!(old.closed().await, Some(1008));
    assert_eq!(ann.expect("peer_left").await["peer"], peer(&w_old));
    assert_eq!(ann.expect("peer_joined").await["peer"], peer(&w_new));
}

#[tokio::test]
async fn turn_credentials_follow_the_coturn_scheme() {
    use signaling::ice::{IceOptions, TurnOptions, turn_credential};
    use signaling::secret::Secret;
    let turn_secret = Secret::new("coturn-static-auth-secret-0123456789").unwrap();
    let server = signaling::Server::start(signaling::ServerOptions {
        ice: IceOptions {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            turn: Some(TurnOptions {
                urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                secret: turn_secret.clone(),
                ttl: Duration::from_secs(600),
            }),
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let tok = server
        .tokens()
        .mint(
            "r",
            Role::Family,
            "Ann",
            Some("ann-laptop"),
            Duration::from_secs(60),
            common::now(),
        )
        .unwrap();
    let (_c, w) = Client::join_with(&server, &tok).await;
    let ice = w["ice_servers"].as_array().unwrap();
    assert_eq!(ice[0], json!({"urls":["stun:127.0.0.1:3478"]}));
    let user = ice[1]["username"].as_str().unwrap();
    let (expiry, sub) = user.split_once(':').unwrap();
    assert_eq!(sub, "ann-laptop");
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > common::now() + 590 && expiry <= common::now() + 601);
    assert_eq!(
        ice[1]["credential"],
        turn_credential(&turn_secret, sub, expiry).1
    );
}
