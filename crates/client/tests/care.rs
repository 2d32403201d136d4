//! The care workflows as the screens see them, against a real signaling server on loopback:
//! a clinician's waiting room and consults, a waiting patient's check, staff's invitations, rules
//! and remote check through the HTTP API, and a resident's tablet that follows the rules at once.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hearth_client::care::{Caller, CheckOutcome, NewInvitation, QuietHours, Rules};
use hearth_client::{CallView, Connection, EndReason, ErrorCode, Presence, ResidentOptions};
use hearth_engine::Role;
use signaling::{Server, ServerOptions};

async fn server() -> Server {
    Server::start(ServerOptions::default()).await.unwrap()
}

/// A device of `role` signed in as `name` in `room`, with default options.
fn person(server: &Server, room: &str, role: Role, name: &str) -> Device {
    device(
        &server.ws_url(),
        token(server, room, role, name, None),
        ResidentOptions::default(),
    )
}

fn connected_to(s: &hearth_client::AppState, name: &str) -> bool {
    matches!(&s.call, CallView::Active { peers, .. }
        if peers.iter().any(|p| p.name == name && p.connected))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_admits_patients_in_order_and_moves_on() {
    let server = server().await;
    let mut doc = person(&server, "consult", Role::Clinician, "Dr Cho");
    until(&mut doc, "the clinician online", |s| {
        s.connection == Connection::Online
    })
    .await;
    let mut park = person(&server, "consult", Role::Patient, "Mr Park");
    // The patient waits and runs the check meanwhile; the clinician sees its result.
    let waiting = until(&mut park, "Mr Park waiting with his check done", |s| {
        matches!(s.connection, Connection::Waiting { position: 1 }) && s.my_check.is_some()
    })
    .await;
    let check = waiting.my_check.unwrap();
    assert_eq!(check.camera, CheckOutcome::Ok, "the synthetic camera works");
    assert_eq!(check.microphone, CheckOutcome::Ok);
    let mut lee = person(&server, "consult", Role::Patient, "Ms Lee");
    until(&mut lee, "Ms Lee waiting second", |s| {
        matches!(s.connection, Connection::Waiting { position: 2 })
    })
    .await;
    let lobby = until(&mut doc, "both waiting, in order, checks in", |s| {
        s.lobby.len() == 2 && s.lobby.iter().all(|w| w.check.is_some())
    })
    .await
    .lobby;
    assert_eq!(
        lobby.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["Mr Park", "Ms Lee"]
    );
    assert!(lobby[0].since_ms <= lobby[1].since_ms);
    assert!(lobby.iter().all(|w| w.connected && w.role == Role::Patient));

    // Admit the first: the consult connects without anyone pressing Answer.
    doc.session.admit(lobby[0].peer.clone()).await.unwrap();
    until(&mut park, "Mr Park in the consult", |s| {
        s.connection == Connection::Online && connected_to(s, "Dr Cho")
    })
    .await;
    until(&mut doc, "the consult with Mr Park", |s| {
        connected_to(s, "Mr Park") && s.lobby.len() == 1
    })
    .await;

    // End it and admit the next in one action.
    let next = doc.session.admit_next().await.unwrap();
    assert_eq!(next.as_deref(), Some(lobby[1].peer.as_str()));
    until(&mut lee, "Ms Lee in the consult", |s| {
        connected_to(s, "Dr Cho")
    })
    .await;
    let s = until(&mut doc, "the consult with Ms Lee only", |s| {
        connected_to(s, "Ms Lee") && s.lobby.is_empty()
    })
    .await;
    let CallView::Active { peers, .. } = s.call else {
        unreachable!()
    };
    assert_eq!(peers.len(), 1, "Mr Park's consult ended");
    assert_eq!(doc.session.admit_next().await.unwrap(), None);
    // The clinician hung up on Mr Park: his device says the consult is over and left the room.
    until(&mut park, "Mr Park's consult over", |s| {
        s.connection == Connection::ConsultOver
    })
    .await;
}

/// A doctor doing rounds of a care home remotely: in a resident's room, the resident is
/// listed to call, and the call rings on the tablet and connects when answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_on_rounds_calls_a_resident() {
    let server = server().await;
    let mut kim = person(&server, "kim", Role::Resident, "Mrs Kim");
    until(&mut kim, "the tablet online", |s| {
        s.connection == Connection::Online
    })
    .await;
    let mut doc = person(&server, "kim", Role::Clinician, "Dr Cho");
    let s = until_listed(&mut doc, "Mrs Kim", Presence::Available).await;
    let key = s
        .contacts
        .iter()
        .find(|c| c.name == "Mrs Kim")
        .unwrap()
        .key
        .clone();
    doc.session.call(key).await.unwrap();
    let s = until(&mut kim, "the doctor's call ringing", |s| {
        matches!(s.call, CallView::Incoming { .. })
    })
    .await;
    let CallView::Incoming { peer, .. } = s.call else {
        unreachable!()
    };
    kim.session.answer(peer).await.unwrap();
    until(&mut doc, "the call with Mrs Kim", |s| {
        connected_to(s, "Mrs Kim")
    })
    .await;
    until(&mut kim, "the call with Dr Cho", |s| {
        connected_to(s, "Dr Cho")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_sees_more_patients_in_turn_than_a_room_holds_at_once() {
    // A room holds four; each patient leaves once their consult is hung up, so the fourth and
    // the fifth are let in after the first three.
    let server = server().await;
    let mut doc = person(&server, "consult", Role::Clinician, "Dr Cho");
    let names = ["Mr Park", "Ms Lee", "Mr Choi", "Mrs Han", "Mr Jung"];
    let mut patients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        patients.push(person(&server, "consult", Role::Patient, name));
        until(&mut doc, "the next patient waiting", |s| {
            s.lobby.len() == i + 1
        })
        .await;
    }
    for (i, name) in names.iter().enumerate() {
        let next = doc.session.admit_next().await.unwrap();
        assert!(next.is_some(), "{name} let in");
        until(&mut patients[i], "in the consult", |s| {
            connected_to(s, "Dr Cho")
        })
        .await;
        until(&mut doc, "the consult with the next patient", |s| {
            connected_to(s, name) && s.notices.is_empty()
        })
        .await;
    }
    // The last one's consult hung up too.
    doc.session.hang_up().await.unwrap();
    for p in &mut patients {
        until(p, "the consult over", |s| {
            s.connection == Connection::ConsultOver
        })
        .await;
    }
}

/// Dr Cho's consult with Mr Park waiting in it; the lobby as she sees it.
async fn clinician_and_patient() -> (Server, Device, Device, Vec<hearth_client::WaitingPatient>) {
    let server = server().await;
    let mut doc = person(&server, "consult", Role::Clinician, "Dr Cho");
    let park = person(&server, "consult", Role::Patient, "Mr Park");
    let lobby = until(&mut doc, "Mr Park waiting", |s| s.lobby.len() == 1)
        .await
        .lobby;
    (server, doc, park, lobby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_refuses_is_a_notice_with_its_code() {
    let (_server, mut doc, park, lobby) = clinician_and_patient().await;
    // Mr Park leaves as the clinician lets him in: the server says there is nobody to admit.
    park.session.leave().await;
    until(&mut doc, "Mr Park gone from the lobby", |s| {
        s.lobby.iter().all(|w| !w.connected)
    })
    .await;
    let _ = doc.session.admit(lobby[0].peer.clone()).await;
    let s = until(&mut doc, "a notice", |s| !s.notices.is_empty()).await;
    let notice = &s.notices[0];
    // The page says it in the clinician's language by its code; the sentence is the server's.
    assert_eq!(notice.code, Some(ErrorCode::Unavailable), "{notice:?}");
    assert!(notice.device.is_none());
    assert!(!notice.message.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_patient_reads_the_reason() {
    let (_server, doc, mut park, lobby) = clinician_and_patient().await;
    doc.session
        .deny(
            lobby[0].peer.clone(),
            Some("Please book another time.".into()),
        )
        .await
        .unwrap();
    let s = until(&mut park, "turned away", |s| {
        matches!(s.connection, Connection::Refused { .. })
    })
    .await;
    let Connection::Refused { error } = s.connection else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::Denied);
    assert_eq!(error.message, "Please book another time.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_invite_set_rules_and_check_a_tablet_which_follows_at_once() {
    let server = server().await;
    let url = server.ws_url();
    let staff = person(&server, "office", Role::Staff, "Nurse Park");
    let api = staff.session.api().await.unwrap();

    // Two family members join with invitation codes, typed next to the server address.
    let mut family = Vec::new();
    for name in ["Ann", "Bob"] {
        let inv = api
            .create_invitation(&NewInvitation {
                room: "kim".into(),
                role: Role::Family,
                name: name.into(),
                expires_in_s: None,
            })
            .await
            .unwrap();
        let mut d = blank_device();
        d.session
            .accept_invitation(inv.code.to_lowercase(), Some(server_http(&server)))
            .await
            .unwrap();
        until(&mut d, "signed in with the code", |s| {
            s.connection == Connection::Online
        })
        .await;
        family.push((d, inv));
    }
    let mut kim = device(
        &url,
        token(
            &server,
            "kim",
            Role::Resident,
            "Mrs Kim",
            Some("tablet-kim"),
        ),
        ResidentOptions::default(),
    );
    until(&mut kim, "both callable", |s| s.contacts.len() == 2).await;

    // Only Ann may call, and she is answered by the tablet itself.
    let ann_inv = family[0].1.clone();
    let rules = Rules {
        callers: Some(vec![Caller {
            sub: ann_inv.sub.clone(),
            name: "Ann".into(),
            auto_answer: true,
        }]),
        quiet_hours: None,
        kiosk: None,
    };
    api.set_rules("tablet-kim", &rules).await.unwrap();
    let s = until(&mut kim, "only Ann, trusted", |s| {
        s.contacts.len() == 1 && s.contacts[0].trusted
    })
    .await;
    assert_eq!(s.contacts[0].name, "Ann");
    let [(ann, _), (bob, _)] = &mut family[..] else {
        unreachable!()
    };
    // Bob and Mrs Kim no longer see each other: she is gone from the room for him, and his
    // list keeps her only as not available (as when her tablet is off), not to be called.
    let s = until_listed(bob, "Mrs Kim", Presence::Offline).await;
    assert!(
        s.contacts.iter().all(|c| c.peer.is_none()),
        "{:?}",
        s.contacts
    );
    // Ann's call rings with the countdown that answers it (the page counts down and answers).
    until(ann, "Ann sees Mrs Kim", |s| !s.contacts.is_empty()).await;
    ann.session.call("Mrs Kim".into()).await.unwrap();
    let ringing = until(&mut kim, "Ann's call with a countdown", |s| {
        matches!(
            s.call,
            CallView::Incoming {
                auto_answer_seconds: Some(_),
                ..
            }
        )
    })
    .await;
    let CallView::Incoming { peer, .. } = ringing.call else {
        unreachable!()
    };
    kim.session.answer(peer).await.unwrap();
    until(ann, "Ann in the call", |s| connected_to(s, "Mrs Kim")).await;
    ann.session.hang_up().await.unwrap();
    until(&mut kim, "the call over", |s| {
        matches!(s.call, CallView::Idle | CallView::Ended { .. })
    })
    .await;

    // A remote check: the tablet runs it and staff see the result.
    let report = api.run_check("tablet-kim").await.unwrap();
    assert_eq!(report.result.camera, CheckOutcome::Ok);
    let tablets = api.tablets().await.unwrap();
    assert!(tablets[0].online_since.is_some());
    assert_eq!(tablets[0].rules, rules);
    assert!(tablets[0].check.is_some());

    // Quiet hours around now: Ann's call is declined without ringing, as unavailable.
    let now = chrono_minutes();
    let quiet = Rules {
        quiet_hours: Some(QuietHours {
            from: hhmm(now + 1439),
            to: hhmm(now + 2),
        }),
        ..rules
    };
    api.set_rules("tablet-kim", &quiet).await.unwrap();
    until(&mut kim, "quiet", |s| s.quiet).await;
    let ann = &mut family[0].0;
    until(ann, "Mrs Kim free again", |s| {
        s.contacts
            .first()
            .is_some_and(|c| c.presence == hearth_client::Presence::Available)
    })
    .await;
    ann.session.call("Mrs Kim".into()).await.unwrap();
    until(ann, "declined as unavailable", |s| {
        matches!(
            s.call,
            CallView::Ended {
                reason: EndReason::Unavailable,
                ..
            }
        )
    })
    .await;
    assert!(
        !matches!(
            kim.state.borrow().call,
            CallView::Incoming { .. } | CallView::Active { .. }
        ),
        "the tablet did not ring"
    );

    // Kiosk mode from staff's console: on, kept for the next start; rules that leave it
    // unsaid keep the tablet as it is; off again.
    assert!(!kim.state.borrow().kiosk);
    let kiosk_on = Rules {
        kiosk: Some(true),
        ..quiet.clone()
    };
    api.set_rules("tablet-kim", &kiosk_on).await.unwrap();
    until(&mut kim, "kiosk mode on", |s| s.kiosk).await;
    assert!(kim.session.settings().await.unwrap().resident.kiosk);
    // (Anyone may call now, so the rules' arrival shows as a second contact.)
    let unsaid = Rules {
        callers: None,
        ..quiet.clone()
    };
    api.set_rules("tablet-kim", &unsaid).await.unwrap();
    let s = until(&mut kim, "the rules without kiosk", |s| {
        s.contacts.len() == 2
    })
    .await;
    assert!(s.kiosk, "rules that leave kiosk unsaid keep it");
    let kiosk_off = Rules {
        kiosk: Some(false),
        ..unsaid
    };
    api.set_rules("tablet-kim", &kiosk_off).await.unwrap();
    until(&mut kim, "kiosk mode off", |s| !s.kiosk).await;
    assert!(!kim.session.settings().await.unwrap().resident.kiosk);

    // Withdrawn: Bob's device is told the invitation no longer works.
    api.revoke_invitation(&family[1].1.id).await.unwrap();
    let bob = &mut family[1].0;
    let s = until(bob, "Bob refused", |s| {
        matches!(s.connection, Connection::Refused { .. })
    })
    .await;
    let Connection::Refused { error } = s.connection else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::Revoked);
    let gone = api.revoke_invitation("no-such-id").await.unwrap_err();
    assert_eq!(gone.code, ErrorCode::NotFound);
}

fn server_http(server: &Server) -> String {
    format!("http://{}", server.local_addr())
}

fn chrono_minutes() -> u32 {
    use chrono::Timelike;
    let now = chrono::Local::now();
    now.hour() * 60 + now.minute()
}

fn hhmm(minutes: u32) -> String {
    let m = minutes % 1440;
    format!("{:02}:{:02}", m / 60, m % 60)
}
