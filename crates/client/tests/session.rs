//! Sessions against a real signaling server on loopback: what the screens are drawn from as
//! devices sign in, see each other, call (with a resident's auto-answer rule), lose the server
//! and find it again, and meet a refused or replaced invitation.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use hearth_client::{
    CallView, CheckStatus, Connection, ErrorCode, KnownContact, Presence, ResidentOptions,
    VideoCodec,
};
use hearth_engine::Role;
use signaling::secret::Secret;
use signaling::{Server, ServerOptions};

/// The invitation the tablet's trusted contact is tied to.
async fn tied(tablet: &hearth_client::Session) -> Option<String> {
    tablet.settings().await.unwrap().resident.contacts[0]
        .sub
        .clone()
}

/// `caller` calls Mrs Kim; returns the countdown her tablet shows (`None`: it just rings), then
/// calls off.
async fn countdown_for(caller: &mut Device, tablet: &mut Device) -> Option<u32> {
    until_listed(caller, "Mrs Kim", Presence::Available).await;
    caller.session.call("Mrs Kim".into()).await.unwrap();
    let s = until(tablet, "the incoming call", |s| {
        matches!(s.call, CallView::Incoming { .. })
    })
    .await;
    let CallView::Incoming {
        auto_answer_seconds,
        ..
    } = s.call
    else {
        unreachable!()
    };
    caller.session.hang_up().await.unwrap();
    until(tablet, "the call called off", |s| {
        !matches!(s.call, CallView::Incoming { .. })
    })
    .await;
    auto_answer_seconds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_name_is_tied_to_the_first_invitation_and_never_to_two_at_once() {
    let server = Server::start(ServerOptions::default()).await.unwrap();
    let url = server.ws_url();
    let trusting = |sub: Option<&str>| ResidentOptions {
        auto_answer: true,
        auto_answer_seconds: 3,
        contacts: vec![KnownContact {
            name: "Ann".into(),
            photo: None,
            trusted: true,
            sub: sub.map(str::to_owned),
        }],
        ..ResidentOptions::default()
    };
    let person = |room: &str, sub: &str| {
        device(
            &url,
            token(&server, room, Role::Family, "Ann", Some(sub)),
            ResidentOptions::default(),
        )
    };
    let resident = |room: &str, sub: Option<&str>| {
        device(
            &url,
            token(&server, room, Role::Resident, "Mrs Kim", None),
            trusting(sub),
        )
    };

    // Trusted by name: the first Ann is answered, and the name is tied to her invitation; a
    // second invitation named Ann rings as usual, and the first is still answered.
    let mut tablet = resident("kim", None);
    let mut ann = person("kim", "inv-ann");
    assert_eq!(countdown_for(&mut ann, &mut tablet).await, Some(3));
    assert_eq!(tied(&tablet.session).await.as_deref(), Some("inv-ann"));
    let mut other = person("kim", "inv-other");
    assert_eq!(countdown_for(&mut other, &mut tablet).await, None);
    let mut ann_again = person("kim", "inv-ann");
    assert_eq!(countdown_for(&mut ann_again, &mut tablet).await, Some(3));

    // Two invitations named Ann connected before either was answered: neither is trusted,
    // and nothing is tied.
    let mut tablet = resident("lee", None);
    let mut ann = person("lee", "inv-ann");
    let mut other = person("lee", "inv-other");
    assert_eq!(countdown_for(&mut other, &mut tablet).await, None);
    assert_eq!(countdown_for(&mut ann, &mut tablet).await, None);
    assert_eq!(tied(&tablet.session).await, None);

    // Trusted by subject: only that invitation, whatever the names.
    let mut tablet = resident("park", Some("inv-ann"));
    let mut ann = person("park", "inv-ann");
    let mut other = person("park", "inv-other");
    assert_eq!(countdown_for(&mut other, &mut tablet).await, None);
    assert_eq!(countdown_for(&mut ann, &mut tablet).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_calls_a_resident_who_answers_by_herself() {
    let server = Server::start(ServerOptions::default()).await.unwrap();
    let url = server.ws_url();
    let rules = ResidentOptions {
        auto_answer: true,
        auto_answer_seconds: 3,
        contacts: vec![
            KnownContact {
                name: "Ann".into(),
                photo: None,
                trusted: true,
                sub: None,
            },
            KnownContact {
                name: "Bo".into(),
                photo: None,
                trusted: false,
                sub: None,
            },
        ],
        ..ResidentOptions::default()
    };
    let mut kim = device(
        &url,
        token(&server, "kim", Role::Resident, "Mrs Kim", None),
        rules,
    );
    let s = until(&mut kim, "the resident online", |s| {
        s.connection == Connection::Online
    })
    .await;
    assert_eq!(s.me.as_ref().unwrap().role, Role::Resident);
    // Known people show before they connect, as not available.
    assert_eq!(s.contacts.len(), 2);
    assert!(s.contacts.iter().all(|c| c.presence == Presence::Offline));

    // Ann's sink decodes VP8 itself, as the desktop app's page does.
    let mut ann = device_with(
        &url,
        token(&server, "kim", Role::Family, "Ann", None),
        ResidentOptions::default(),
        vec![VideoCodec::Vp8],
    );
    let s = until_listed(&mut ann, "Mrs Kim", Presence::Available).await;
    assert_eq!(s.contacts.len(), 1, "family see residents only");
    until(&mut kim, "Ann available", |s| {
        s.contacts
            .iter()
            .any(|c| c.name == "Ann" && c.presence == Presence::Available && c.trusted)
    })
    .await;

    ann.session.call("Mrs Kim".into()).await.unwrap();
    until(&mut ann, "calling", |s| {
        matches!(s.call, CallView::Calling { .. })
    })
    .await;
    let s = until(&mut kim, "the incoming call", |s| {
        matches!(s.call, CallView::Incoming { .. })
    })
    .await;
    let CallView::Incoming {
        peer,
        name,
        auto_answer_seconds,
    } = s.call
    else {
        unreachable!()
    };
    assert_eq!((name.as_str(), auto_answer_seconds), ("Ann", Some(3)));
    // The page runs the countdown; then it answers.
    kim.session.answer(peer).await.unwrap();
    for d in [&mut kim, &mut ann] {
        until(d, "the call connected", |s| {
            matches!(&s.call, CallView::Active { peers, .. } if peers.iter().all(|p| p.connected))
        })
        .await;
    }
    let s = until(&mut ann, "Mrs Kim shown in a call", |s| {
        s.contacts.iter().any(|c| c.presence == Presence::InCall)
    })
    .await;
    assert_eq!(s.contacts[0].name, "Mrs Kim");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (who, d) in [("kim", &kim), ("ann", &ann)] {
        let (r, l) = (
            d.video.remote.load(Ordering::Relaxed) + d.video.encoded.load(Ordering::Relaxed),
            d.video.local.load(Ordering::Relaxed),
        );
        assert!(r > 20, "{who} got {r} remote pictures");
        assert!(l > 10, "{who} got {l} self-view pictures");
    }
    // Ann's came encoded, whole; Kim's decoded.
    assert_eq!(ann.video.remote.load(Ordering::Relaxed), 0);
    assert_eq!(ann.video.gaps.load(Ordering::Relaxed), 0);
    assert_eq!(kim.video.encoded.load(Ordering::Relaxed), 0);
    // Ann's page says it cannot decode: decoded pictures come instead.
    ann.session
        .request_keyframe(s.contacts[0].peer.clone().expect("in the room"));
    ann.session.decode_video_here();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let encoded = ann.video.encoded.load(Ordering::Relaxed);
    let decoded = ann.video.remote.load(Ordering::Relaxed);
    assert!(
        decoded > 20,
        "ann got {decoded} decoded pictures after the switch"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ann.video.encoded.load(Ordering::Relaxed), encoded);

    // The check cannot run during a call: the devices are in use.
    assert_eq!(
        ann.session.precheck().await.unwrap_err().code,
        ErrorCode::Device
    );

    ann.session.set_camera_off(true).await.unwrap();
    until(&mut kim, "Ann's camera shown as off", |s| {
        matches!(&s.call, CallView::Active { peers, .. }
            if peers[0].their_video == hearth_client::VideoState::CameraOff)
    })
    .await;

    ann.session.hang_up().await.unwrap();
    let s = until(&mut kim, "the call ended", |s| {
        matches!(s.call, CallView::Ended { .. })
    })
    .await;
    assert!(matches!(
        s.call,
        CallView::Ended {
            reason: hearth_client::EndReason::RemoteHungUp,
            ..
        }
    ));
    until(&mut kim, "back to the tiles", |s| s.call == CallView::Idle).await;
    // The pre-call check on the synthetic devices: the picture's size, the tone's level, no
    // speaker chosen, signed in, no relay configured on this server.
    let report = kim.session.precheck().await.unwrap();
    assert_eq!(report.camera.status, CheckStatus::Ok, "{report:?}");
    assert_eq!(report.camera.size, Some((320, 240)));
    assert_eq!(report.microphone.status, CheckStatus::Ok);
    assert!(report.microphone.level_percent.unwrap() > 1.0, "{report:?}");
    assert_eq!(report.speaker.status, CheckStatus::NotUsed);
    assert_eq!(report.server.status, CheckStatus::Ok);
    assert_eq!(report.relay.status, CheckStatus::NotUsed);
    assert!(report.devices_ok());

    ann.session.leave().await;
    until_listed(&mut kim, "Ann", Presence::Offline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_trying_until_the_server_is_back() {
    // Take a port, then let it go: nothing listens there yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let secret = Secret::generate();
    let url = format!("ws://{addr}/v1/ws");
    let options = || ServerOptions {
        listen: addr,
        secret: secret.clone(),
        ..ServerOptions::default()
    };
    let keys = Server::start(ServerOptions {
        secret: secret.clone(),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let t = token(&keys, "kim", Role::Family, "Ann", None);
    let mut ann = device(&url, t, ResidentOptions::default());
    let s = until(&mut ann, "a second attempt scheduled", |s| {
        matches!(&s.connection, Connection::Connecting { attempt, retry_at_ms: Some(_), error: Some(e) }
            if *attempt >= 2 && e.code == ErrorCode::ServerUnreachable)
    })
    .await;
    eprintln!("while down: {:?}", s.connection);
    let server = Server::start(options()).await.unwrap();
    until(&mut ann, "online once the server is up", |s| {
        s.connection == Connection::Online
    })
    .await;
    // The server goes away and comes back: the device signs in again by itself.
    server.shutdown().await;
    until(&mut ann, "reconnecting", |s| {
        matches!(s.connection, Connection::Connecting { .. })
    })
    .await;
    let _server = Server::start(options()).await.unwrap();
    until(&mut ann, "online again", |s| {
        s.connection == Connection::Online
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_replaced_invitations_ask_for_a_new_one() {
    let server = Server::start(ServerOptions::default()).await.unwrap();
    let url = server.ws_url();
    let expired = server
        .tokens()
        .mint(
            "kim",
            Role::Family,
            "Ann",
            None,
            Duration::from_secs(60),
            now() - 3600,
        )
        .unwrap();
    let mut old = device(&url, expired, ResidentOptions::default());
    let s = until(&mut old, "refused", |s| {
        matches!(s.connection, Connection::Refused { .. })
    })
    .await;
    let Connection::Refused { error } = s.connection else {
        unreachable!()
    };
    assert_eq!(error.code, ErrorCode::ExpiredToken);

    let forged = {
        let other = Server::start(ServerOptions::default()).await.unwrap();
        token(&other, "kim", Role::Family, "Ann", None)
    };
    let mut bad = device(&url, forged, ResidentOptions::default());
    let s = until(&mut bad, "refused", |s| {
        matches!(s.connection, Connection::Refused { .. })
    })
    .await;
    assert!(
        matches!(s.connection, Connection::Refused { error } if error.code == ErrorCode::BadToken)
    );

    // The same invitation on a second tablet: the first is told, and does not fight back.
    let same = token(&server, "kim", Role::Resident, "Mrs Kim", Some("tablet-1"));
    let mut first = device(&url, same.clone(), ResidentOptions::default());
    until(&mut first, "online", |s| s.connection == Connection::Online).await;
    let mut second = device(&url, same, ResidentOptions::default());
    until(&mut second, "online", |s| {
        s.connection == Connection::Online
    })
    .await;
    let s = until(&mut first, "replaced", |s| {
        matches!(s.connection, Connection::Refused { .. })
    })
    .await;
    assert!(
        matches!(s.connection, Connection::Refused { error } if error.code == ErrorCode::Replaced)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(second.state.borrow().connection, Connection::Online);

    // Setup again with a new link: signs in.
    let fresh = token(&server, "kim", Role::Family, "Ann", None);
    let link = format!(
        "hearth://join?server={}&token={fresh}",
        url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
    );
    let id = old.session.accept_invitation(link, None).await.unwrap();
    assert_eq!(id.name, "Ann");
    until(&mut old, "online with the new invitation", |s| {
        s.connection == Connection::Online
    })
    .await;
    let garbage = old.session.accept_invitation("hello".into(), None).await;
    assert_eq!(garbage.unwrap_err().code, ErrorCode::BadInvitation);
}

/// A family member's list keeps a resident whose tablet went off, as not available, and
/// remembers them across restarts of the app; a new invitation starts the list afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_whose_tablet_is_off_stays_on_the_family_list_as_not_available() {
    let server = Server::start(ServerOptions::default()).await.unwrap();
    let url = server.ws_url();
    let mut ann = device(
        &url,
        token(&server, "kim", Role::Family, "Ann", None),
        ResidentOptions::default(),
    );
    let kim = device(
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
    until_listed(&mut ann, "Mrs Kim", Presence::Available).await;
    kim.session.leave().await;
    let s = until_listed(&mut ann, "Mrs Kim", Presence::Offline).await;
    let kim_tile = s.contacts.iter().find(|c| c.name == "Mrs Kim").unwrap();
    assert_eq!(
        (kim_tile.role, kim_tile.peer.as_deref()),
        (Role::Resident, None)
    );
    // Kept in the settings, so a restarted app lists her before her tablet is back.
    let seen = ann.session.settings().await.unwrap().residents;
    assert_eq!(
        seen.iter()
            .map(|r| (r.name.as_str(), r.sub.as_str()))
            .collect::<Vec<_>>(),
        [("Mrs Kim", "tablet-kim")]
    );
    // Another invitation (another room) forgets her.
    ann.session
        .accept_invitation(token(&server, "lee", Role::Family, "Ann", None), Some(url))
        .await
        .unwrap();
    until(&mut ann, "in the new room, Mrs Kim forgotten", |s| {
        s.connection == Connection::Online
            && s.me.as_ref().is_some_and(|m| m.room == "lee")
            && s.contacts.is_empty()
    })
    .await;
}
