//! Sessions outlive connections: numbered messages, `hello.resume` with the secret from
//! `welcome`, replay of what was missed (or the state again when too much was), the client's own
//! numbering so nothing it sent is applied twice, and a fresh join when the session is gone.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, peer, start, start_with, token};
use hearth_proto::Role;
use serde_json::json;
use signaling::Limits;

/// Kim (a resident) and then Ann (family) in room "r", Kim having seen Ann arrive; Ann's token
/// is kept for her resumes.
struct Pair {
    kim: Client,
    kim_id: String,
    ann: Client,
    ann_id: String,
    ann_token: String,
}

async fn kim_then_ann(server: &signaling::Server) -> Pair {
    let ann_token = token(server, "r", Role::Family, "Ann");
    let (mut kim, kw) = Client::join(server, "r", Role::Resident, "Kim").await;
    let (ann, welcome) = Client::join_with(server, &ann_token).await;
    kim.expect("peer_joined").await;
    Pair {
        kim,
        kim_id: peer(&kw),
        ann,
        ann_id: peer(&welcome),
        ann_token,
    }
}

#[tokio::test]
async fn a_member_resumes_keeps_its_id_and_gets_what_it_missed_in_order() {
    let server = start().await;
    let Pair {
        mut kim,
        kim_id,
        mut ann,
        ann_id,
        ann_token,
    } = kim_then_ann(&server).await;
    assert_eq!(
        ann.session.as_ref().unwrap().0,
        ann_id,
        "welcome carries a resume secret"
    );
    kim.send(json!({"type":"signal","to": ann_id,"data": 0}))
        .await;
    assert_eq!(ann.expect("signal").await["data"], 0);
    let gone = ann.hang_up();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Kim goes on sending while Ann is away: nothing is refused, nobody leaves.
    for i in 1..=5 {
        kim.send(json!({"type":"signal","to": ann_id,"data": i}))
            .await;
    }
    kim.quiet_for(Duration::from_millis(200)).await;

    let (mut ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(resumed["type"], "resumed");
    assert_eq!(resumed["peer"], ann_id);
    assert_eq!(resumed["replayed"], 5);
    assert_eq!(resumed["snapshot"], false);
    for i in 1..=5 {
        let m = ann.expect("signal").await;
        assert_eq!(
            (m["from"].as_str().unwrap(), m["data"].as_i64().unwrap()),
            (kim_id.as_str(), i)
        );
    }
    assert_eq!(ann.last_seq, gone.last_seq + 5, "the same stream, no gap");
    // Live again, both ways, and Kim never saw Ann leave.
    ann.send(json!({"type":"signal","to": kim_id,"data": "back"}))
        .await;
    assert_eq!(kim.expect("signal").await["data"], "back");
    kim.send(json!({"type":"signal","to": ann_id,"data": 6}))
        .await;
    assert_eq!(ann.expect("signal").await["data"], 6);
}

#[tokio::test]
async fn what_the_client_confirmed_with_a_pong_is_no_longer_kept_for_replay() {
    let server = start_with(Limits {
        ping_interval: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let Pair {
        mut kim,
        kim_id,
        mut ann,
        ann_id,
        ann_token,
    } = kim_then_ann(&server).await;
    for i in 0..3 {
        kim.send(json!({"type":"signal","to": ann_id,"data": i}))
            .await;
        assert_eq!(ann.expect("signal").await["data"], i);
    }
    // Ann reads on, so her WebSocket answers the server's pings, which carry the `seq` of the
    // last message kept for her: her pong confirms she read that far.
    ann.quiet_for(Duration::from_millis(1_000)).await;
    let gone = ann.hang_up();

    // Resumed from where she was, nothing is missing.
    let (ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(
        (&resumed["replayed"], &resumed["snapshot"]),
        (&json!(0), &json!(false))
    );
    // A client that lost what its socket had read (from one before the last) cannot be given
    // it again, as it is no longer kept: it gets the whole state again, never a gap.
    let before = common::Gone {
        session: ann.hang_up().session,
        last_seq: gone.last_seq - 1,
    };
    let (mut ann, resumed) = Client::resume(&server, &ann_token, &before).await;
    assert_eq!(
        (&resumed["replayed"], &resumed["snapshot"]),
        (&json!(0), &json!(true))
    );
    let w = ann.expect("welcome").await;
    assert_eq!((peer(&w), &w["peers"][0]["peer"]), (ann_id, &json!(kim_id)));
    kim.send(json!({"type":"signal","to": peer(&w),"data": "on"}))
        .await;
    assert_eq!(ann.expect("signal").await["data"], "on");
}

#[tokio::test]
async fn a_resume_while_the_old_connection_lingers_moves_the_session() {
    let server = start().await;
    let Pair {
        mut kim,
        ann: mut old,
        ann_id,
        ann_token,
        ..
    } = kim_then_ann(&server).await;
    let gone = common::Gone {
        session: old.session.clone().unwrap(),
        last_seq: old.last_seq,
    };
    let (mut ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(resumed["replayed"], 0);
    // The old connection is closed quietly ("going away"), without an error.
    assert_eq!(old.closed().await, Some(1001));
    kim.send(json!({"type":"signal","to": ann_id,"data": 1}))
        .await;
    assert_eq!(ann.expect("signal").await["data"], 1);
    kim.quiet_for(Duration::from_millis(200)).await;
}

/// Kim and Ann in a room; Ann's connection drops and Kim sends her `n` numbered signals.
/// Returns Kim, their ids, Ann's token and what Ann kept.
async fn missed_while_away(
    server: &signaling::Server,
    n: usize,
) -> (Client, String, String, String, common::Gone) {
    let Pair {
        mut kim,
        kim_id,
        ann,
        ann_id,
        ann_token,
    } = kim_then_ann(server).await;
    let gone = ann.hang_up();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..n {
        kim.send(json!({"type":"signal","to": ann_id,"data": i}))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (kim, kim_id, ann_id, ann_token, gone)
}

#[tokio::test]
async fn too_much_missed_brings_the_state_instead() {
    let server = start_with(Limits {
        replay_buffer: 4,
        rate_per_second: 1000,
        rate_burst: 1000,
        ..Limits::default()
    })
    .await;
    let (_kim, kim_id, ann_id, ann_token, gone) = missed_while_away(&server, 10).await;
    let (mut ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(resumed["snapshot"], true);
    assert_eq!(resumed["replayed"], 0);
    // The whole state again: who is in the call, under the same id.
    let w = ann.expect("welcome").await;
    assert_eq!(w["peer"], ann_id);
    assert_eq!(w["peers"][0]["peer"], kim_id);
}

#[tokio::test]
async fn a_replay_larger_than_the_outbound_queue_arrives_whole() {
    let limits = Limits {
        rate_per_second: 1000,
        rate_burst: 1000,
        ..Limits::default()
    };
    let missed = limits.outbound_queue + 72;
    assert!(
        missed < limits.replay_buffer,
        "within what is kept for replay"
    );
    let server = start_with(limits).await;
    let (_kim, kim_id, ann_id, ann_token, gone) = missed_while_away(&server, missed).await;
    let (mut ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(resumed["peer"], ann_id);
    assert_eq!(resumed["snapshot"], false);
    assert_eq!(resumed["replayed"], missed);
    for i in 0..missed {
        let m = ann.expect("signal").await;
        assert_eq!((&m["from"], &m["data"]), (&json!(kim_id), &json!(i)));
    }
}

#[tokio::test]
async fn after_the_grace_or_with_a_wrong_secret_it_is_a_clean_fresh_join() {
    let server = start_with(Limits {
        resume_grace: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let Pair {
        mut kim,
        ann,
        ann_id: old_id,
        ann_token,
        ..
    } = kim_then_ann(&server).await;

    let gone = ann.hang_up();
    assert_eq!(
        kim.expect("peer_left").await["peer"],
        old_id,
        "after the grace"
    );
    // Too late: a fresh session, never half of the old one.
    let (ann, w) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(w["type"], "welcome");
    let new_id = peer(&w);
    assert_ne!(new_id, old_id);
    assert_eq!(w["peers"][0]["name"], "Kim");
    assert_eq!(ann.session.as_ref().unwrap().0, new_id);
    let joined = kim.expect("peer_joined").await;
    assert_eq!(
        (
            joined["peer"].as_str().unwrap(),
            joined["name"].as_str().unwrap()
        ),
        (new_id.as_str(), "Ann")
    );

    // A forged secret resumes nothing: the client gets a session of its own (and, being the
    // same person, takes Ann's place in the call).
    let forged = common::Gone {
        session: (new_id.clone(), "AAAA".into()),
        last_seq: 1,
    };
    let (mut again, w) = Client::resume(&server, &ann_token, &forged).await;
    assert_eq!(w["type"], "welcome");
    let third = peer(&w);
    assert_ne!(third, new_id);
    assert_eq!(kim.expect("peer_left").await["peer"], new_id);
    assert_eq!(kim.expect("peer_joined").await["peer"], third);
    again.send(json!({"type":"leave"})).await;
    assert_eq!(kim.expect("peer_left").await["peer"], third);
}

#[tokio::test]
async fn what_the_client_numbered_is_applied_once_and_acknowledged() {
    let server = start().await;
    let Pair {
        mut kim,
        kim_id,
        mut ann,
        ann_token,
        ..
    } = kim_then_ann(&server).await;
    for seq in 1..=3 {
        ann.send(json!({"type":"signal","to": kim_id,"data": seq,"seq": seq}))
            .await;
        assert_eq!(kim.expect("signal").await["data"], seq);
    }
    let gone = ann.hang_up();
    let (mut ann, resumed) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(resumed["acked"], 3, "the server applied up to 3");
    // Sent again by a client unsure whether 3 arrived: dropped, not delivered twice.
    ann.send(json!({"type":"signal","to": kim_id,"data": 3,"seq": 3}))
        .await;
    ann.send(json!({"type":"signal","to": kim_id,"data": 4,"seq": 4}))
        .await;
    assert_eq!(kim.expect("signal").await["data"], 4);
    kim.quiet_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_waiting_patient_resumes_in_place_and_the_clinician_sees_it() {
    let server = start().await;
    let park = token(&server, "consult", Role::Patient, "Park");
    let (p1, w1) = Client::join_with(&server, &park).await;
    let (_p2, _) = Client::join(&server, "consult", Role::Patient, "Lee").await;
    let (mut doc, _) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    assert_eq!(
        doc.expect("lobby").await["waiting"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(p1.session.is_some(), "waiting carries a resume secret");
    let gone = p1.hang_up();
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["connected"], false);
    let (mut p1, resumed) = Client::resume(&server, &park, &gone).await;
    assert_eq!(resumed["peer"], peer(&w1));
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["peer"], peer(&w1), "first place kept");
    assert_eq!(lobby["waiting"][0]["connected"], true);
    assert_eq!(p1.expect("waiting").await["position"], 1);
    doc.send(json!({"type":"admit","peer": peer(&w1)})).await;
    assert_eq!(p1.expect("welcome").await["peer"], peer(&w1));
}

#[tokio::test]
async fn a_leave_numbered_like_a_message_already_applied_still_ends_the_session() {
    let server = start_with(Limits {
        resume_grace: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let Pair {
        mut kim,
        kim_id,
        mut ann,
        ann_id,
        ann_token,
    } = kim_then_ann(&server).await;
    ann.send(json!({"type":"signal","to": kim_id,"data": 1,"seq": 1}))
        .await;
    kim.expect("signal").await;
    // A client that numbers wrongly: its `leave` reuses a number already applied, so the
    // server drops it as a message sent again, and the connection closes as after a leave.
    ann.send(json!({"type":"leave","seq": 1})).await;
    assert_eq!(ann.closed().await, Some(1000));
    let gone = ann.hang_up();
    // Its session ends anyway once the grace has passed: it is not kept bound to a
    // connection that no longer exists, present to the others for ever.
    assert_eq!(kim.expect("peer_left").await["peer"], ann_id);
    let (_ann, again) = Client::resume(&server, &ann_token, &gone).await;
    assert_eq!(again["type"], "welcome", "{again}");
    assert_ne!(peer(&again), ann_id);
}
