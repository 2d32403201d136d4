//! The care workflows against a running server, over real HTTP and WebSocket connections:
//! invitations (create, redeem, list, withdraw), pre-call checks in the waiting room, residents'
//! rules and remote checks, and the audit trail's export.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use hearth_proto::Role;
use serde_json::{Value, json};
use signaling::{Limits, Server};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            base: format!("http://{}", server.local_addr()),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::http_call(method, format!("{}{path}", self.base), token, body).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    async fn text(&self, path: &str, token: &str) -> (u16, String, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let kind = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, res.text().await.unwrap())
    }
}

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    assert_eq!(answer.1["code"], code, "{:?}", answer.1);
    assert!(
        answer.1["message"]
            .as_str()
            .is_some_and(|m| m.ends_with('.')),
        "a plain sentence: {:?}",
        answer.1
    );
}

#[tokio::test]
async fn invitations_let_people_in_until_withdrawn() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");

    // Only staff (or a clinician for their own room) may invite; bad requests say why.
    let ask = json!({"room":"kim-family","role":"family","name":"Ann","expires_in_s":3600});
    assert_error(
        &api.post("/v1/invitations", None, ask.clone()).await,
        401,
        "bad_token",
    );
    let family = token(&server, "kim-family", Role::Family, "Bob");
    assert_error(
        &api.post("/v1/invitations", Some(&family), ask.clone())
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &api.post("/v1/invitations", Some(&staff), json!({"room":"r"}))
            .await,
        400,
        "bad_message",
    );
    assert_error(
        &api.post(
            "/v1/invitations",
            Some(&staff),
            json!({"room":"r","role":"family","name":" "}),
        )
        .await,
        400,
        "bad_message",
    );

    let (status, inv) = api.post("/v1/invitations", Some(&staff), ask).await;
    assert_eq!(status, 201, "{inv}");
    let code = inv["code"].as_str().unwrap().to_owned();
    assert!(
        code.len() == 9 && code.as_bytes()[4] == b'-',
        "a short code like ABCD-EFGH: {code}"
    );
    let link = inv["link"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("http://{}/join/", server.local_addr())),
        "{link}"
    );
    assert_eq!(inv["created_by"], "Nurse Park");
    assert_eq!(inv["revoked_at"], Value::Null);

    // The code works typed in lower case without the dash, and so does the whole link.
    let typed = code.replace('-', "").to_lowercase();
    let (status, redeemed) = api.post("/v1/redeem", None, json!({ "code": typed })).await;
    assert_eq!(status, 200, "{redeemed}");
    assert_eq!(
        (&redeemed["room"], &redeemed["role"], &redeemed["name"]),
        (&json!("kim-family"), &json!("family"), &json!("Ann"))
    );
    let (status, again) = api.post("/v1/redeem", None, json!({ "code": link })).await;
    assert_eq!(status, 200, "{again}");
    assert_error(
        &api.post("/v1/redeem", None, json!({"code":"ZZZZ-ZZZZ"}))
            .await,
        404,
        "not_found",
    );

    let ann_token = redeemed["token"].as_str().unwrap().to_owned();
    let (mut ann, welcome) = Client::join_with(&server, &ann_token).await;
    assert_eq!(welcome["type"], "welcome");

    let (status, list) = api.get("/v1/invitations", &staff).await;
    assert_eq!(status, 200);
    assert_eq!(list["invitations"][0]["redeemed"], 2);

    // A clinician invites into their own consult room only.
    let doctor = token(&server, "consult-1", Role::Clinician, "Dr Cho");
    let (status, _) = api
        .post(
            "/v1/invitations",
            Some(&doctor),
            json!({"room":"consult-1","role":"family","name":"Son"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_error(
        &api.post(
            "/v1/invitations",
            Some(&doctor),
            json!({"room":"kim-family","role":"family","name":"X"}),
        )
        .await,
        403,
        "forbidden",
    );
    let (_, theirs) = api.get("/v1/invitations", &doctor).await;
    assert_eq!(theirs["invitations"].as_array().unwrap().len(), 1);

    // Withdrawn: the connected holder is cut off, and neither the token nor the code work.
    let id = inv["id"].as_str().unwrap();
    let (status, revoked) = api.delete(&format!("/v1/invitations/{id}"), &staff).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].as_u64().is_some());
    ann.expect_error("revoked").await;
    assert_eq!(ann.closed().await, Some(1008));
    let (mut again, refused) = Client::join_with(&server, &ann_token).await;
    assert_eq!(refused["code"], "revoked");
    assert_eq!(again.closed().await, Some(1008));
    assert_error(
        &api.post("/v1/redeem", None, json!({ "code": code })).await,
        410,
        "revoked",
    );
}

#[tokio::test]
async fn the_waiting_room_shows_each_patients_check() {
    let server = start().await;
    let (mut doc, _) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    doc.expect("lobby").await;
    let (mut park, w) = Client::join(&server, "consult", Role::Patient, "Mr Park").await;
    assert_eq!(w["type"], "waiting");
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["check"], Value::Null);

    park.send(json!({"type":"check","result":{
        "camera":"ok","microphone":"failed","speaker":"ok","connection":"ok"}}))
        .await;
    let lobby = doc.expect("lobby").await;
    let check = &lobby["waiting"][0]["check"];
    assert_eq!(check["camera"], "ok");
    assert_eq!(check["microphone"], "failed");
    assert!(check["at"].as_u64().unwrap() > 0);

    park.send(json!({"type":"check","result":{"camera":"maybe"}}))
        .await;
    park.expect_error("bad_message").await;
}

#[tokio::test]
async fn staff_rules_reach_the_tablet_at_once_and_are_enforced() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");
    let (mut kim, welcome) = Client::join(&server, "kim", Role::Resident, "Mrs Kim").await;
    let kim_id = peer(&welcome);
    assert_eq!(
        kim.next_rules().await,
        json!({"callers": null, "quiet_hours": null, "kiosk": null})
    );
    let (mut ann, w) = Client::join(&server, "kim", Role::Family, "Ann").await;
    let ann_id = peer(&w);
    let (mut bob, bw) = Client::join(&server, "kim", Role::Family, "Bob").await;
    let bob_id = peer(&bw);
    kim.expect("peer_joined").await;
    kim.expect("peer_joined").await;
    ann.expect("peer_joined").await;

    let rules = json!({
        "callers": [{"sub":"sub-ann","name":"Ann","auto_answer":true}],
        "quiet_hours": {"from":"21:00","to":"07:30"},
        "kiosk": true
    });
    let (status, tablet) = api
        .put("/v1/tablets/sub-mrs kim/rules", &staff, rules.clone())
        .await;
    assert_eq!(status, 200, "{tablet}");
    assert_eq!(kim.next_rules().await, rules);
    // Bob and Mrs Kim no longer see each other; Ann and she still do.
    assert_eq!(kim.expect("peer_left").await["peer"], bob_id);
    assert_eq!(bob.expect("peer_left").await["peer"], kim_id);

    // Ann may call; Bob may not, either way.
    ann.send(json!({"type":"signal","to": kim_id,"data":{"call":"invite"}}))
        .await;
    assert_eq!(kim.expect("signal").await["from"], ann_id);
    bob.send(json!({"type":"signal","to": kim_id,"data":{"call":"invite"}}))
        .await;
    bob.expect_error("forbidden").await;
    kim.send(json!({"type":"signal","to": bob_id,"data":{"call":"invite"}}))
        .await;
    kim.expect_error("forbidden").await;
    kim.send(json!({"type":"signal","to": ann_id,"data":{}}))
        .await;
    ann.expect("signal").await;

    // Someone unlisted who arrives now does not see her either; Ann sees them come.
    let (mut cy, cw) = Client::join(&server, "kim", Role::Family, "Cy").await;
    assert_eq!(
        cw["peers"].as_array().unwrap().len(),
        2,
        "Ann and Bob, not Mrs Kim: {cw}"
    );
    assert_eq!(ann.expect("peer_joined").await["name"], "Cy");
    bob.expect("peer_joined").await;
    kim.quiet_for(Duration::from_millis(300)).await;

    // Listed again (anyone may call): both sides see each other arrive.
    let open = json!({"callers": null, "quiet_hours": null, "kiosk": null});
    let (status, _) = api
        .put("/v1/tablets/sub-mrs kim/rules", &staff, open.clone())
        .await;
    assert_eq!(status, 200);
    assert_eq!(kim.next_rules().await, open);
    let mut seen = vec![
        kim.expect("peer_joined").await["name"]
            .as_str()
            .unwrap()
            .to_owned(),
        kim.expect("peer_joined").await["name"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    seen.sort();
    assert_eq!(seen, ["Bob", "Cy"]);
    assert_eq!(bob.expect("peer_joined").await["peer"], kim_id);
    assert_eq!(cy.expect("peer_joined").await["peer"], kim_id);
    api.put("/v1/tablets/sub-mrs kim/rules", &staff, rules.clone())
        .await;

    // Bad rules are refused with the reason; a tablet nobody knows is not found.
    let bad = json!({"callers": null, "quiet_hours": {"from":"9pm","to":"07:00"}});
    assert_error(
        &api.put("/v1/tablets/sub-mrs kim/rules", &staff, bad).await,
        400,
        "bad_message",
    );
    assert_error(
        &api.put("/v1/tablets/nobody/rules", &staff, rules).await,
        404,
        "not_found",
    );
    let family = token(&server, "kim", Role::Family, "Ann");
    assert_error(&api.get("/v1/tablets", &family).await, 403, "forbidden");

    let (status, list) = api.get("/v1/tablets", &staff).await;
    assert_eq!(status, 200);
    let t = &list["tablets"][0];
    assert_eq!(t["sub"], "sub-mrs kim");
    assert!(t["online_since"].as_u64().is_some());
    assert_eq!(t["rules"]["callers"][0]["name"], "Ann");
}

#[tokio::test]
async fn clinicians_manage_only_their_consults_guests() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");
    let doctor = token(&server, "consult-1", Role::Clinician, "Dr Cho");
    for (role, name) in [
        ("staff", "Admin"),
        ("resident", "Tablet"),
        ("family", "Son"),
    ] {
        let ask = json!({"room":"consult-1","role":role,"name":name});
        assert_eq!(api.post("/v1/invitations", Some(&staff), ask).await.0, 201);
    }
    // Not even another clinician: that token would pass residents' rules and the API.
    assert_error(
        &api.post(
            "/v1/invitations",
            Some(&doctor),
            json!({"room":"consult-1","role":"clinician","name":"Dr X"}),
        )
        .await,
        403,
        "forbidden",
    );
    let (_, list) = api.get("/v1/invitations", &doctor).await;
    let names: Vec<&str> = list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Son"], "staff's and the tablet's codes stay hidden");
    assert_error(
        &api.get("/v1/invitations?room=1&room=2&x", &staff).await,
        400,
        "bad_message",
    );
    assert_error(
        &api.get("/v1/audit?since=yesterday", &staff).await,
        400,
        "bad_message",
    );
}

#[tokio::test]
async fn withdrawing_an_invitation_frees_a_dropped_patients_place() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");
    let (mut doc, _) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    doc.expect("lobby").await;
    let (_, inv) = api
        .post(
            "/v1/invitations",
            Some(&staff),
            json!({"room":"consult","role":"patient","name":"Mr Park"}),
        )
        .await;
    let (_, redeemed) = api
        .post("/v1/redeem", None, json!({ "code": inv["code"] }))
        .await;
    let (park, w) = Client::join_with(&server, redeemed["token"].as_str().unwrap()).await;
    assert_eq!(w["type"], "waiting");
    assert_eq!(doc.expect("lobby").await["waiting"][0]["connected"], true);
    drop(park);
    assert_eq!(
        doc.expect("lobby").await["waiting"][0]["connected"],
        false,
        "place held"
    );
    let id = inv["id"].as_str().unwrap();
    api.delete(&format!("/v1/invitations/{id}"), &staff).await;
    assert_eq!(
        doc.expect("lobby").await["waiting"],
        json!([]),
        "the held place is gone"
    );
}

#[tokio::test]
async fn the_servers_own_refusals_are_in_the_apis_shape() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Yoon");
    assert_error(&api.get("/v1/nothing-here", &staff).await, 404, "not_found");
    assert_error(&api.delete("/v1/redeem", &staff).await, 405, "bad_message");
    let big = json!({"code": "z".repeat(3 << 20)});
    assert_error(&api.post("/v1/redeem", None, big).await, 413, "too_large");
}

#[tokio::test]
async fn one_address_cannot_try_codes_quickly() {
    let server = start().await;
    let api = Api::new(&server);
    let mut limited = false;
    for _ in 0..30 {
        let (status, body) = api
            .post("/v1/redeem", None, json!({"code":"ZZZZ-ZZZZ"}))
            .await;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(status, 404);
    }
    assert!(
        limited,
        "thirty codes in a burst from one address were all tried"
    );
}

/// Behind the load balancer (nginx on the same machine, as packaging/server has it) every
/// request comes from nginx: each client's address is the one nginx names.
#[tokio::test]
async fn behind_a_proxy_each_client_is_limited_on_its_own() {
    let server = start().await;
    let redeem = |client: String| {
        let url = format!("http://{}/v1/redeem", server.local_addr());
        async move {
            reqwest::Client::new()
                .post(url)
                .header("x-forwarded-for", client)
                .json(&json!({"code":"ZZZZ-ZZZZ"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Thirty people, one code each: none is held back by the others' tries.
    for i in 0..30 {
        assert_eq!(redeem(format!("198.51.100.{i}")).await, 404, "client {i}");
    }
    // One of them trying code after code is, even from behind the proxy.
    let mut statuses = vec![];
    for _ in 0..30 {
        statuses.push(redeem("203.0.113.7".into()).await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// A tablet set up again with a new invitation (its old one withdrawn, over or in its last two
/// weeks) keeps the rules staff gave it; a second resident of the same name does not take them.
#[tokio::test]
async fn a_tablet_set_up_again_keeps_its_rules() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Yoon");
    let invite = |name: &'static str| {
        api.post(
            "/v1/invitations",
            Some(&staff),
            json!({"room":"kim","role":"resident","name": name,"expires_in_s": 365 * 86_400}),
        )
    };
    let (status, first) = invite("Mrs Kim").await;
    assert_eq!(status, 201, "{first}");
    let rules = json!({
        "callers": [{"sub":"inv-ann","name":"Ann","auto_answer":true}],
        "quiet_hours": {"from":"21:00","to":"07:30"},
        "kiosk": true
    });
    let path = format!("/v1/tablets/{}/rules", first["sub"].as_str().unwrap());
    let (status, _) = api.put(&path, &staff, rules.clone()).await;
    assert_eq!(status, 200);
    let rules_of = |tablets: &Value, sub: &Value| {
        tablets["tablets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["sub"] == *sub)
            .map(|t| t["rules"].clone())
    };
    // Another Mrs Kim while the first tablet's invitation runs for a year: her own rules.
    let (_, namesake) = invite("Mrs Kim").await;
    let (_, tablets) = api.get("/v1/tablets", &staff).await;
    assert_eq!(rules_of(&tablets, &namesake["sub"]), None, "{tablets}");
    // The first tablet's invitation withdrawn, a new one for her takes its rules.
    let (status, _) = api
        .delete(
            &format!("/v1/invitations/{}", first["id"].as_str().unwrap()),
            &staff,
        )
        .await;
    assert_eq!(status, 200);
    let (status, again) = invite("Mrs Kim").await;
    assert_eq!(status, 201, "{again}");
    let (_, tablets) = api.get("/v1/tablets", &staff).await;
    assert_eq!(rules_of(&tablets, &again["sub"]), Some(rules), "{tablets}");
}

#[tokio::test]
async fn staff_run_a_check_on_a_tablet_remotely() {
    let server = start_with(Limits {
        check_timeout: Duration::from_millis(800),
        ..Limits::default()
    })
    .await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");
    assert_error(
        &api.post("/v1/tablets/sub-mrs kim/check", Some(&staff), json!({}))
            .await,
        409,
        "offline",
    );
    let (kim, _) = Client::join(&server, "kim", Role::Resident, "Mrs Kim").await;
    let (mut sink, mut inbox) = kim.into_split();
    // The tablet answers every request with a check.
    let answering = tokio::spawn(async move {
        use futures_util::SinkExt;
        while let Some(m) = inbox.recv().await {
            if m["type"] == "run_check" {
                let answer = json!({"type":"check","request": m["request"],"result":{
                    "camera":"ok","microphone":"ok","speaker":"not_used","connection":"ok"}});
                sink.send(tokio_tungstenite::tungstenite::Message::text(
                    answer.to_string(),
                ))
                .await
                .unwrap();
                return sink;
            }
        }
        panic!("no run_check arrived");
    });
    let (status, report) = api
        .post("/v1/tablets/sub-mrs kim/check", Some(&staff), json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["camera"], "ok");
    assert_eq!(report["speaker"], "not_used");
    let _sink = answering.await.unwrap();

    let (_, list) = api.get("/v1/tablets", &staff).await;
    assert_eq!(list["tablets"][0]["check"]["microphone"], "ok");

    // Asked again, the tablet (whose reader is gone) does not answer: a timeout, said plainly.
    assert_error(
        &api.post("/v1/tablets/sub-mrs kim/check", Some(&staff), json!({}))
            .await,
        504,
        "timeout",
    );
}

#[tokio::test]
async fn the_audit_trail_exports_who_joined_and_who_admitted_whom() {
    let server = start().await;
    let api = Api::new(&server);
    let staff = token(&server, "office", Role::Staff, "Nurse Park");
    let (mut doc, _) = Client::join(&server, "consult", Role::Clinician, "Dr Cho").await;
    doc.expect("lobby").await;
    let (mut park, w) = Client::join(&server, "consult", Role::Patient, "Mr Park").await;
    doc.expect("lobby").await;
    doc.send(json!({"type":"admit","peer": peer(&w)})).await;
    park.expect("welcome").await;
    park.send(json!({"type":"leave"})).await;
    doc.send(json!({"type":"leave"})).await;
    assert_eq!(doc.closed().await, Some(1000));

    let doctor = token(&server, "consult", Role::Clinician, "Dr Cho");
    assert_error(&api.get("/v1/audit", &doctor).await, 403, "forbidden");
    assert_error(
        &api.get("/v1/audit?format=xml", &staff).await,
        400,
        "bad_message",
    );

    let (status, kind, body) = api.text("/v1/audit?room=consult", &staff).await;
    assert_eq!(status, 200);
    assert_eq!(kind, "application/x-ndjson");
    let records: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let e = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        events,
        vec![
            e("joined", "Dr Cho"),
            e("waiting", "Mr Park"),
            e("admitted", "Mr Park"),
            e("joined", "Mr Park"),
            e("left", "Mr Park"),
            e("left", "Dr Cho"),
            e("ended", ""),
        ]
    );
    assert_eq!(records[2]["by_name"], "Dr Cho");
    assert!(
        records
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );

    // Incremental: after the third record only.
    let third = records[2]["seq"].as_u64().unwrap();
    let (_, _, tail) = api
        .text(&format!("/v1/audit?room=consult&after_seq={third}"), &staff)
        .await;
    assert_eq!(tail.lines().count(), 4);

    let (status, kind, csv) = api.text("/v1/audit?room=consult&format=csv", &staff).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "seq,at,time,event,room,sub,name,role,by_sub,by_name"
    );
    let admitted = lines.nth(2).unwrap();
    assert!(
        admitted.contains(",admitted,consult,sub-mr park,Mr Park,patient,sub-dr cho,Dr Cho"),
        "{admitted}"
    );

    // A name that looks like a formula stays text in a spreadsheet.
    let (mut evil, _) = Client::join(&server, "formula", Role::Family, "=HYPERLINK(\"x\")").await;
    evil.send(json!({"type":"leave"})).await;
    evil.closed().await;
    let (_, _, csv) = api.text("/v1/audit?room=formula&format=csv", &staff).await;
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
}
