//! Several nodes sharing rooms through NATS behind nginx, on loopback: rooms across nodes, one
//! waiting-room queue, a drained node (SIGTERM) and a killed one (SIGKILL) under traffic with
//! nothing lost or doubled, a NATS restart, and a resume after the grace. Needs Debian's
//! `nats-server` and `nginx` (`./scripts/test` installs them).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use futures_util::{SinkExt, StreamExt};
use hearth_proto::Role;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

fn peer(v: &Value) -> String {
    common::peer(v)
}

/// The ids in a `lobby`, in queue order.
fn queue(lobby: &Value) -> Vec<String> {
    lobby["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(peer)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_different_nodes_see_each_other_and_relay_both_ways() {
    let c = Cluster::start(3).await;
    let (mut kim, w) =
        Client::join_at(&c.nodes[0].url(), &c.token("r", Role::Resident, "Kim")).await;
    let kim_id = peer(&w);
    let (mut ann, w) = Client::join_at(&c.nodes[1].url(), &c.token("r", Role::Family, "Ann")).await;
    let ann_id = peer(&w);
    assert_eq!(
        w["peers"][0]["peer"], kim_id,
        "the welcome on node 2 lists Kim from node 1"
    );
    assert_eq!(kim.expect("peer_joined").await["peer"], ann_id);
    for i in 0..20 {
        kim.send(json!({"type":"signal","to": ann_id,"data": i}))
            .await;
        ann.send(json!({"type":"signal","to": kim_id,"data": -i}))
            .await;
    }
    for i in 0..20 {
        let m = ann.expect("signal").await;
        assert_eq!(
            (m["from"].as_str().unwrap(), m["data"].as_i64().unwrap()),
            (kim_id.as_str(), i)
        );
        assert_eq!(kim.expect("signal").await["data"], -i);
    }
    // A third person through the load balancer sees both, whichever node it lands on.
    let (_lee, w) = Client::join_at(&c.lb(), &c.token("r", Role::Family, "Lee")).await;
    let mut seen: Vec<String> = w["peers"].as_array().unwrap().iter().map(peer).collect();
    seen.sort();
    let mut want = vec![kim_id, ann_id];
    want.sort();
    assert_eq!(seen, want, "{}", c.logs());
}

/// Junk from a client is answered by its node, unnumbered, and never written to the room's
/// shared log: written there, each refusal cost a NATS round trip, and a client sending junk was
/// held back by that round trip rather than by the rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_frames_are_answered_by_the_node_and_not_written_to_the_log() {
    let c = Cluster::start(1).await;
    let (mut ann, _) = Client::join_at(&c.nodes[0].url(), &c.token("r", Role::Family, "Ann")).await;
    let js = async_nats::jetstream::new(async_nats::connect(c.nats_url()).await.unwrap());
    let mut log = js.get_stream("HEARTH_ROOMS").await.unwrap();
    let before = log.info().await.unwrap().state.messages;
    let sent = 200;
    for _ in 0..sent {
        ann.send_text("not json".into()).await;
    }
    let mut codes: HashMap<String, usize> = HashMap::new();
    for _ in 0..sent {
        let m = ann.recv().await;
        assert_eq!(m["type"], "error", "{m}");
        assert!(m.get("seq").is_none(), "a refusal is not numbered: {m}");
        *codes
            .entry(m["code"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // The burst (50) is read and refused as bad JSON; the rest is over the rate.
    assert!(codes["rate_limited"] >= 100, "{codes:?}");
    assert!(codes["bad_message"] >= 50, "{codes:?}");
    let written = log.info().await.unwrap().state.messages - before;
    assert!(
        written <= 2,
        "{written} records written to the room's log for junk"
    );
    // Once the rate allows again, the session goes on.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ann.send(json!({"type":"leave"})).await;
    assert!(ann.closed().await.is_some());
}

/// A node that starts serving a room which has been busy elsewhere loads it from the log (no
/// snapshot yet: fewer than 500 events) while events keep coming, and hands each one to its
/// replica once, in order: the newcomer sees both members, each member sees it join once, and
/// signals flow in order all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_catches_up_a_busy_room_while_it_keeps_going() {
    let c = Cluster::start(2).await;
    let (kim, w) =
        Client::join_at(&c.nodes[0].url(), &c.token("busy", Role::Resident, "Kim")).await;
    let kim_id = peer(&w);
    let (mut ann, w) =
        Client::join_at(&c.nodes[0].url(), &c.token("busy", Role::Family, "Ann")).await;
    let ann_id = peer(&w);
    // Other rooms' traffic goes through the same stream; node 2 must pass it by.
    let (other, _) =
        Client::join_at(&c.nodes[0].url(), &c.token("other", Role::Resident, "Bo")).await;
    let (mut other2, w) =
        Client::join_at(&c.nodes[0].url(), &c.token("other", Role::Family, "Cy")).await;
    let other2_id = peer(&w);
    let (stop, stopped) = watch::channel(false);
    let talk = |mut from: Client, to: String, mut stopped: watch::Receiver<bool>| {
        tokio::spawn(async move {
            let mut sent = 0i64;
            while !*stopped.borrow_and_update() {
                from.send(json!({"type":"signal","to": to,"data": sent}))
                    .await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (from, sent)
        })
    };
    let kim_talks = talk(kim, ann_id.clone(), stopped.clone());
    let bo_talks = talk(other, other2_id, stopped.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut lee, w) =
        Client::join_at(&c.nodes[1].url(), &c.token("busy", Role::Family, "Lee")).await;
    let lee_id = peer(&w);
    let mut seen: Vec<String> = w["peers"].as_array().unwrap().iter().map(peer).collect();
    seen.sort();
    let mut want = vec![kim_id.clone(), ann_id.clone()];
    want.sort();
    assert_eq!(
        seen,
        want,
        "the newcomer on node 2 sees both members\n{}",
        c.logs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(true).unwrap();
    let (mut kim, kim_sent) = kim_talks.await.unwrap();
    let (_bo, bo_sent) = bo_talks.await.unwrap();
    assert!(kim_sent > 100 && bo_sent > 100, "{kim_sent} {bo_sent}");
    // Ann got every signal in order and Lee's arrival once, somewhere among them.
    let mut next = 0;
    let mut joined = 0;
    while next < kim_sent {
        let m = ann.recv().await;
        match m["type"].as_str() {
            Some("signal") => {
                assert_eq!(m["data"], next, "in order, none lost or doubled");
                next += 1;
            }
            Some("peer_joined") => {
                assert_eq!(m["peer"], lee_id);
                joined += 1;
            }
            _ => panic!("unexpected {m}"),
        }
    }
    if joined == 0 {
        assert_eq!(ann.expect("peer_joined").await["peer"], lee_id);
        joined = 1;
    }
    assert_eq!(joined, 1);
    ann.quiet_for(Duration::from_millis(300)).await;
    for i in 0..bo_sent {
        assert_eq!(other2.expect("signal").await["data"], i);
    }
    // The newcomer and the members talk both ways.
    assert_eq!(kim.expect("peer_joined").await["peer"], ann_id);
    assert_eq!(kim.expect("peer_joined").await["peer"], lee_id);
    for i in 0..10 {
        kim.send(json!({"type":"signal","to": lee_id,"data": i}))
            .await;
        lee.send(json!({"type":"signal","to": kim_id,"data": -i}))
            .await;
    }
    for i in 0..10 {
        assert_eq!(lee.expect("signal").await["data"], i);
        assert_eq!(kim.expect("signal").await["data"], -i);
    }
}

use common::http_call as api;

/// A staff GET of `path` on node `i`: the body.
async fn staff_get(c: &Cluster, i: usize, staff: &str, path: &str) -> Value {
    let (status, body) = api(
        reqwest::Method::GET,
        format!("{}{path}", c.http(i)),
        Some(staff),
        None,
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The entry of `list[key]` whose `field` is `value`.
fn entry(list: &Value, key: &str, field: &str, value: &str) -> Value {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[field] == value)
        .unwrap_or_else(|| panic!("no {field} {value} in {list}"))
        .clone()
}

/// The staff API answers the same on every node: an invitation made on one is redeemed on
/// another, listed and withdrawn on a third, its withdrawal is enforced everywhere, the audit
/// trail holds every node's records in one order, and a node started afterwards with an empty
/// store catches up before it serves anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_tablets_and_the_audit_trail_are_the_same_on_every_node() {
    use reqwest::Method;
    let mut c = Cluster::start(3).await;
    let staff = c.token("office", Role::Staff, "Nurse Park");
    let (status, inv) = api(
        Method::POST,
        format!("{}/v1/invitations", c.http(0)),
        Some(&staff),
        Some(json!({"room":"kim","role":"family","name":"Ann"})),
    )
    .await;
    assert_eq!(status, 201, "{inv}\n{}", c.logs());
    let code = inv["code"].as_str().unwrap().to_owned();
    let id = inv["id"].as_str().unwrap().to_owned();
    // Several made at once on different nodes all get their own codes.
    let many = futures_util::future::join_all((0..9).map(|i| {
        api(
            Method::POST,
            format!("{}/v1/invitations", c.http(i % 3)),
            Some(&staff),
            Some(json!({"room":"kim","role":"family","name": format!("F{i}")})),
        )
    }))
    .await;
    assert!(many.iter().all(|(s, _)| *s == 201), "{many:?}");
    let (status, redeemed) = api(
        Method::POST,
        format!("{}/v1/redeem", c.http(1)),
        None,
        Some(json!({ "code": code })),
    )
    .await;
    assert_eq!(status, 200, "redeemed on another node: {redeemed}");
    let ann_token = redeemed["token"].as_str().unwrap().to_owned();
    let list = staff_get(&c, 2, &staff, "/v1/invitations").await;
    let list = list["invitations"].as_array().unwrap().clone();
    assert_eq!(list.len(), 10);
    let mut codes: Vec<&str> = list.iter().map(|i| i["code"].as_str().unwrap()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 10, "every code is its own");
    let ann_inv = list.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(
        ann_inv["redeemed"], 1,
        "the redemption on node 2 is seen on node 3"
    );

    // Rules set on one node, read on another.
    let (status, _) = api(
        Method::POST,
        format!("{}/v1/invitations", c.http(0)),
        Some(&staff),
        Some(json!({"room":"kim","role":"resident","name":"Mrs Kim"})),
    )
    .await;
    assert_eq!(status, 201);
    let all = staff_get(&c, 0, &staff, "/v1/invitations").await;
    let tablet = entry(&all, "invitations", "role", "resident")["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, set) = api(
        Method::PUT,
        format!("{}/v1/tablets/{tablet}/rules", c.http(1)),
        Some(&staff),
        Some(json!({"quiet_hours": {"from": "22:00", "to": "07:00"}})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let tablets = staff_get(&c, 2, &staff, "/v1/tablets").await;
    let listed = entry(&tablets, "tablets", "sub", &tablet);
    assert_eq!(listed["rules"]["quiet_hours"]["from"], "22:00");

    // A resident's tablet on node 1 is online for staff asking node 3 (which serves no room
    // of it), and a check can be asked of it from there.
    let (mut tablet_ws, _) = Client::join_at(
        &c.nodes[0].url(),
        &c.token("kim", Role::Resident, "Mrs Lee"),
    )
    .await;
    let tablets = staff_get(&c, 2, &staff, "/v1/tablets").await;
    let lee = entry(&tablets, "tablets", "sub", "sub-mrs lee");
    assert!(lee["online_since"].is_u64(), "{lee}");
    let asking = tokio::spawn({
        let (url, staff) = (
            format!("{}/v1/tablets/sub-mrs%20lee/check", c.http(2)),
            staff.clone(),
        );
        async move { api(Method::POST, url, Some(&staff), Some(json!({}))).await }
    });
    let asked = tablet_ws.expect("run_check").await;
    tablet_ws
        .send(json!({"type":"check","request": asked["request"],"result":{
            "camera":"ok","microphone":"ok","speaker":"not_used","connection":"ok"}}))
        .await;
    let (status, report) = asking.await.unwrap();
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["camera"], "ok");

    // Ann joins on node 1, and the withdrawal made on node 3 shuts her out on every node.
    let (_ann, _) = Client::join_at(&c.nodes[0].url(), &ann_token).await;
    let (status, revoked) = api(
        Method::DELETE,
        format!("{}/v1/invitations/{id}", c.http(2)),
        Some(&staff),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_u64());

    // A node started now, with an empty store, has everything before it serves.
    let late = c.add_node().await;
    let mut refused = Client::connect_url(&c.nodes[late].url()).await;
    refused
        .send(json!({"type":"hello","token": ann_token}))
        .await;
    refused.expect_error("revoked").await;
    let list = staff_get(&c, late, &staff, "/v1/invitations").await;
    assert_eq!(list["invitations"].as_array().unwrap().len(), 11);

    // One audit trail, numbered once: the same on the first node and on the late one.
    let audit = |i: usize| {
        let url = format!("{}/v1/audit", c.http(i));
        let staff = staff.clone();
        async move {
            let (status, body) = api(Method::GET, url, Some(&staff), None).await;
            assert_eq!(status, 200);
            body.as_str().unwrap().to_owned()
        }
    };
    let first = audit(0).await;
    assert_eq!(first, audit(late).await);
    let records: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let created = records
        .iter()
        .filter(|r| r["event"] == "invitation_created")
        .count();
    assert_eq!(created, 11, "{first}");
    assert!(records.iter().any(|r| r["event"] == "invitation_revoked"));

    // With NATS gone, a change is refused plainly and within seconds.
    c.stop_nats().await;
    let asked = std::time::Instant::now();
    let (status, refused) = api(
        Method::POST,
        format!("{}/v1/invitations", c.http(0)),
        Some(&staff),
        Some(json!({"room":"kim","role":"family","name":"Late"})),
    )
    .await;
    assert_eq!(
        (status, &refused["code"]),
        (503, &json!("unavailable")),
        "{refused}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_waiting_room_across_nodes_in_arrival_order() {
    let c = Cluster::start(3).await;
    let (mut p1, w1) = Client::join_at(
        &c.nodes[0].url(),
        &c.token("consult", Role::Patient, "Park"),
    )
    .await;
    let (mut p2, w2) =
        Client::join_at(&c.nodes[1].url(), &c.token("consult", Role::Patient, "Lee")).await;
    assert_eq!(
        (w1["position"].as_u64(), w2["position"].as_u64()),
        (Some(1), Some(2))
    );
    let (mut doc, w) = Client::join_at(
        &c.nodes[2].url(),
        &c.token("consult", Role::Clinician, "Dr Cho"),
    )
    .await;
    let doc_id = peer(&w);
    let lobby = doc.expect("lobby").await;
    let queue = queue(&lobby);
    assert_eq!(queue, vec![peer(&w1), peer(&w2)], "{}", c.logs());
    doc.send(json!({"type":"admit","peer": peer(&w1)})).await;
    let welcome = p1.expect("welcome").await;
    assert_eq!(welcome["peers"][0]["peer"], doc_id);
    assert_eq!(p2.expect("waiting").await["position"], 1);
    assert_eq!(doc.expect("peer_joined").await["peer"], peer(&w1));
    let lobby = doc.expect("lobby").await;
    assert_eq!(lobby["waiting"][0]["peer"], peer(&w2));
    // Signals cross nodes 1 and 3 once admitted.
    p1.send(json!({"type":"signal","to": doc_id,"data":"hello"}))
        .await;
    assert_eq!(doc.expect("signal").await["data"], "hello");
}

/// A client that keeps talking through the load balancer: it numbers what it sends, resumes
/// its session when its connection ends (after the server's delay, when told one), sends again
/// what the server had not applied, and checks that what it receives is numbered without gaps.
struct Talker {
    name: String,
    token: String,
    url: String,
    to: Option<String>,
    session: Option<(String, String)>,
    last_seq: u64,
    cseq: u64,
    unacked: VecDeque<(u64, String)>,
    /// Every `data.n` received in a signal, in order, by sender.
    got: HashMap<String, Vec<u64>>,
    /// Numbers sent, so far.
    sent: u64,
    resumes: u32,
    problems: Vec<String>,
    /// Other messages (roster changes), for the NATS-restart test.
    others: Vec<Value>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Talker {
    fn new(url: &str, token: String, name: &str) -> Talker {
        Talker {
            name: name.to_owned(),
            token,
            url: url.to_owned(),
            to: None,
            session: None,
            last_seq: 0,
            cseq: 0,
            unacked: VecDeque::new(),
            got: HashMap::new(),
            sent: 0,
            resumes: 0,
            problems: Vec::new(),
            others: Vec::new(),
        }
    }

    /// Reads one server text frame: checks its numbering and keeps the session.
    fn take(&mut self, text: &str) -> Option<Value> {
        let mut v: Value = serde_json::from_str(text).ok()?;
        let obj = v.as_object_mut()?;
        if let Some(secret) = obj.remove("resume_secret") {
            self.session = Some((
                obj["peer"].as_str()?.to_owned(),
                secret.as_str()?.to_owned(),
            ));
        }
        if let Some(seq) = obj.remove("seq").and_then(|s| s.as_u64()) {
            if self.last_seq > 0 && seq != self.last_seq + 1 {
                self.problems
                    .push(format!("{}: seq {seq} after {}", self.name, self.last_seq));
            }
            self.last_seq = seq;
        }
        Some(v)
    }

    async fn connect(&mut self) -> Result<Ws, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(&self.url)
            .await
            .map_err(|e| e.to_string())?;
        let hello = match &self.session {
            Some((peer, secret)) => json!({"type":"hello","token": self.token,
                "resume":{"peer": peer,"secret": secret,"last_seq": self.last_seq}}),
            None => json!({"type":"hello","token": self.token}),
        };
        ws.send(Message::text(hello.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| "no answer to hello".to_owned())?;
            let Some(Ok(Message::Text(t))) = frame else {
                match frame {
                    Some(Ok(_)) => continue,
                    _ => return Err("closed during hello".to_owned()),
                }
            };
            let resuming = self.session.is_some();
            let Some(v) = self.take(&t) else { continue };
            match v["type"].as_str() {
                Some("resumed") if resuming => {
                    if v["snapshot"] == true {
                        self.problems
                            .push(format!("{}: resumed from a snapshot", self.name));
                    }
                    self.resumes += 1;
                    let acked = v["acked"].as_u64().unwrap_or(0);
                    self.unacked.retain(|(s, _)| *s > acked);
                    for (_, text) in self.unacked.clone() {
                        ws.send(Message::text(text))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    return Ok(ws);
                }
                Some("welcome") if !resuming => return Ok(ws),
                Some("welcome") => {
                    self.problems.push(format!(
                        "{}: a fresh session instead of a resume",
                        self.name
                    ));
                    return Ok(ws);
                }
                Some("error") => return Err(format!("refused: {v}")),
                _ => continue,
            }
        }
    }

    fn record(&mut self, v: Value) {
        match v["type"].as_str() {
            Some("signal") => {
                let from = v["from"].as_str().unwrap_or_default().to_owned();
                let n = v["data"]["n"].as_u64().unwrap_or(u64::MAX);
                self.got.entry(from).or_default().push(n);
            }
            Some("shutdown" | "peer_joined" | "welcome" | "rules") => {}
            _ => self.others.push(v),
        }
    }

    /// Talks until `stop` turns true: a numbered signal to `to` every `every`; then keeps
    /// reading for `linger` so the last replies arrive.
    async fn run(
        mut self,
        every: Duration,
        mut stop: watch::Receiver<bool>,
        linger: Duration,
    ) -> Talker {
        let mut ws = match self.connect().await {
            Ok(ws) => ws,
            Err(e) => {
                self.problems.push(format!("{}: {e}", self.name));
                return self;
            }
        };
        let mut tick = tokio::time::interval(every);
        let mut stopping = false;
        let mut linger_until = None;
        let mut retry_after = Duration::from_millis(100);
        loop {
            if let Some(t) = linger_until
                && tokio::time::Instant::now() >= t
            {
                return self;
            }
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(v) = self.take(&t) {
                            if v["type"] == "shutdown" {
                                retry_after = Duration::from_millis(v["retry_after_ms"].as_u64().unwrap_or(100));
                            }
                            self.record(v);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        // The connection ended: come back (elsewhere), resuming.
                        tokio::time::sleep(retry_after).await;
                        retry_after = Duration::from_millis(50 + rand::random_range(0..200));
                        let mut tries = 0;
                        ws = loop {
                            match self.connect().await {
                                Ok(ws) => break ws,
                                Err(e) => {
                                    tries += 1;
                                    if tries > 40 {
                                        self.problems.push(format!("{}: could not come back: {e}", self.name));
                                        return self;
                                    }
                                    tokio::time::sleep(Duration::from_millis(250)).await;
                                }
                            }
                        };
                    }
                },
                _ = tick.tick(), if !stopping => {
                    if let Some(to) = self.to.clone() {
                        self.cseq += 1;
                        let text = json!({"type":"signal","to": to,"data":{"n": self.sent},"seq": self.cseq}).to_string();
                        self.sent += 1;
                        self.unacked.push_back((self.cseq, text.clone()));
                        let _ = ws.send(Message::text(text)).await;
                    }
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    linger_until = Some(tokio::time::Instant::now() + linger);
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// Pairs of talkers in rooms of two, through the load balancer: returns them joined, each
/// knowing its partner.
async fn pairs(c: &Cluster, n: usize) -> Vec<(Talker, Talker)> {
    let mut out = Vec::new();
    for i in 0..n {
        let room = format!("pair-{i}");
        let mut a = Talker::new(
            &c.lb(),
            c.token(&room, Role::Resident, &format!("a{i}")),
            &format!("a{i}"),
        );
        let mut b = Talker::new(
            &c.lb(),
            c.token(&room, Role::Family, &format!("b{i}")),
            &format!("b{i}"),
        );
        // Join both to learn their ids, then hand the connections over by resuming.
        let (ca, wa) = Client::join_at(&c.lb(), &a.token).await;
        let (cb, wb) = Client::join_at(&c.lb(), &b.token).await;
        a.to = Some(peer(&wb));
        b.to = Some(peer(&wa));
        for (t, client) in [(&mut a, ca), (&mut b, cb)] {
            t.session = client.session.clone();
            // Everything after the welcome is replayed: nothing is lost.
            t.last_seq = client.last_seq;
            drop(client);
        }
        out.push((a, b));
    }
    out
}

/// What happens to the cluster while the talkers talk.
enum Fault {
    /// SIGTERM to node `i`: it drains and exits.
    Terminate(usize),
    /// SIGKILL to node `i`.
    Kill(usize),
    /// NATS stops and starts again after this long.
    RestartNats(Duration),
}

/// Runs the talkers for `before`, applies `fault`, runs for `after`, then stops them and
/// returns them for checking.
async fn under_traffic(
    c: &mut Cluster,
    pairs_n: usize,
    before: Duration,
    after: Duration,
    fault: Fault,
) -> Vec<Talker> {
    let talkers = pairs(c, pairs_n).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (a, b) in talkers {
        for t in [a, b] {
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(t.run(
                Duration::from_millis(40),
                stop,
                Duration::from_secs(4),
            )));
        }
    }
    tokio::time::sleep(before).await;
    match fault {
        Fault::Terminate(i) => {
            let status = c.terminate(i).await;
            assert!(status.success(), "the drained node exits cleanly: {status}");
        }
        Fault::Kill(i) => c.kill(i).await,
        Fault::RestartNats(down) => c.restart_nats(down).await,
    }
    tokio::time::sleep(after).await;
    stop_tx.send(true).unwrap();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done
}

/// Six pairs talk through the balancer while a node goes: every number arrives once, in
/// order, and the talkers that were on that node came back elsewhere by resuming.
async fn survives(c: &mut Cluster, fault: Fault, after: Duration) {
    let talkers = under_traffic(c, 6, Duration::from_secs(2), after, fault).await;
    check_delivery(&talkers, c);
    // Each talker resumed once to take over from the client that joined for it; more
    // resumes are the ones the fault caused.
    let resumed: u32 = talkers.iter().map(|t| t.resumes).sum();
    assert!(
        resumed > 12,
        "the lost node's talkers came back elsewhere ({resumed} resumes)"
    );
}

fn check_delivery(talkers: &[Talker], c: &Cluster) {
    let sent: HashMap<String, u64> = talkers
        .iter()
        .filter_map(|t| t.session.as_ref().map(|(p, _)| (p.clone(), t.sent)))
        .collect();
    for t in talkers {
        assert!(t.problems.is_empty(), "{:?}\n{}", t.problems, c.logs());
        let from = t.to.clone().unwrap();
        let got = t.got.get(&from).cloned().unwrap_or_default();
        let want: Vec<u64> = (0..sent[&from]).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{} got {} of {} numbers\n{}",
            t.name,
            got.len(),
            want.len(),
            c.logs()
        );
        assert_eq!(got, want, "{}: every number once, in order", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_loses_and_doubles_nothing() {
    let mut c = Cluster::start(3).await;
    // Waiting patients spread over the nodes, and their clinician.
    let mut patients = Vec::new();
    for (i, name) in ["P1", "P2", "P3"].iter().enumerate() {
        let token = c.token("clinic", Role::Patient, name);
        let (client, w) = Client::join_at(&c.nodes[i].url(), &token).await;
        patients.push((token, client, peer(&w)));
    }
    let order: Vec<String> = patients.iter().map(|p| p.2.clone()).collect();
    survives(&mut c, Fault::Terminate(0), Duration::from_secs(4)).await;
    // The patient on the drained node was told to reconnect; it resumes through the balancer
    // and the queue is as it was.
    let (token, mut p1, _) = patients.remove(0);
    let shutdown = p1.expect("shutdown").await;
    assert!(shutdown["retry_after_ms"].as_u64().is_some());
    let (_p1, resumed) = Client::resume_at(&c.lb(), &token, &p1.hang_up()).await;
    assert_eq!(resumed["type"], "resumed");
    let (mut doc, _) =
        Client::join_at(&c.lb(), &c.token("clinic", Role::Clinician, "Dr Cho")).await;
    let lobby = doc.expect("lobby").await;
    let queue = queue(&lobby);
    assert_eq!(queue, order, "places kept");
    assert!(
        lobby["waiting"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["connected"] == true),
        "{lobby}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_and_doubles_nothing() {
    let mut c = Cluster::start(3).await;
    survives(&mut c, Fault::Kill(1), Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_recover_after_nats_restarts_with_the_same_roster() {
    let mut c = Cluster::start(3).await;
    let talkers = under_traffic(
        &mut c,
        3,
        Duration::from_secs(1),
        Duration::from_secs(4),
        Fault::RestartNats(Duration::from_secs(1)),
    )
    .await;
    // Nobody saw anyone leave or an error: the roster never changed.
    for t in &talkers {
        assert!(
            t.others.is_empty(),
            "{}: {:?}\n{}",
            t.name,
            t.others,
            c.logs()
        );
    }
    check_delivery(&talkers, &c);
    // A newcomer on any node sees the room as it is.
    let (_x, w) = Client::join_at(
        &c.nodes[2].url(),
        &c.token("pair-0", Role::Family, "Newcomer"),
    )
    .await;
    let mut seen: Vec<String> = w["peers"].as_array().unwrap().iter().map(peer).collect();
    seen.sort();
    let mut want: Vec<String> = talkers[..2]
        .iter()
        .map(|t| t.session.clone().unwrap().0)
        .collect();
    want.sort();
    assert_eq!(seen, want, "{}", c.logs());
}

/// A stack stopped all at once (as compose does) may take NATS down first: a node must still
/// drain its clients and exit by itself rather than wait for NATS to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_by_itself_when_nats_is_already_gone() {
    let mut c = Cluster::start(1).await;
    let (mut ann, _) = Client::join_at(&c.nodes[0].url(), &c.token("r", Role::Family, "Ann")).await;
    c.stop_nats().await;
    // Ann does what a client does: reconnects elsewhere when told (here she just goes).
    let (status, shutdown) = tokio::join!(c.terminate(0), async move {
        let shutdown = ann.expect("shutdown").await;
        ann.hang_up();
        shutdown
    });
    assert!(status.success(), "{status}\n{}", c.logs());
    assert!(shutdown["retry_after_ms"].is_u64(), "{shutdown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_on_another_node_within_the_grace_and_joins_afresh_after_it() {
    let c = Cluster::start_with(2, "3s").await;
    let token = c.token("r", Role::Family, "Ann");
    let (mut kim, _) =
        Client::join_at(&c.nodes[0].url(), &c.token("r", Role::Resident, "Kim")).await;
    let (ann, w) = Client::join_at(&c.nodes[1].url(), &token).await;
    let old = peer(&w);
    kim.expect("peer_joined").await;
    // Within the grace: the session moves to the other node, nobody sees Ann leave.
    let (ann, resumed) = Client::resume_at(&c.nodes[0].url(), &token, &ann.hang_up()).await;
    assert_eq!(
        (resumed["type"].as_str(), resumed["peer"].as_str()),
        (Some("resumed"), Some(old.as_str())),
        "{}",
        c.logs()
    );
    kim.send(json!({"type":"signal","to": old,"data": 1})).await;
    let mut ann = ann;
    assert_eq!(ann.expect("signal").await["data"], 1);
    // After the grace: the held session ended (Kim sees Ann leave) and a resume is a fresh
    // join with a new id, on whichever node.
    let gone = ann.hang_up();
    assert_eq!(kim.expect("peer_left").await["peer"], old, "{}", c.logs());
    let (_ann, fresh) = Client::resume_at(&c.nodes[1].url(), &token, &gone).await;
    assert_eq!(fresh["type"], "welcome");
    assert_ne!(peer(&fresh), old);
    assert_eq!(kim.expect("peer_joined").await["peer"], peer(&fresh));
}

/// Clients that say hello and go at once, before their welcome: each one's session is bound
/// through the log after its connection has already ended on its node. That node then holds
/// the session as dropped, so it ends after the grace period like any other; none stays in the
/// room for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_gone_before_their_welcome_leave_no_session_behind() {
    let mut c = Cluster::start_with(2, "2s").await;
    // One room each (a call holds four).
    for i in 0..30 {
        let mut gone = Client::connect_url(&c.nodes[1].url()).await;
        let token = c.token(&format!("h{i}"), Role::Family, "Hasty");
        gone.send(json!({"type":"hello","token": token})).await;
        drop(gone);
    }
    // Every session, bound or not, ends within the grace (and a sweep or two).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut left: Vec<usize> = (0..30).collect();
    while !left.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut still = Vec::new();
        for i in left {
            let (mut lee, w) = Client::join_at(
                &c.nodes[0].url(),
                &c.token(&format!("h{i}"), Role::Family, "Lee"),
            )
            .await;
            if w["peers"].as_array().is_some_and(|p| !p.is_empty()) {
                still.push(i);
            }
            lee.send(json!({"type":"leave"})).await;
        }
        left = still;
        assert!(
            left.is_empty() || tokio::time::Instant::now() < deadline,
            "sessions of clients long gone are still in rooms {left:?}\n{}",
            c.logs()
        );
    }

    // A join that reaches the log after its node gave up waiting for it (NATS was away for
    // longer than a publication waits, and the client was refused): the node holds that
    // session as dropped when it comes back, so it ends after the grace.
    let (mut kim, _) =
        Client::join_at(&c.nodes[0].url(), &c.token("late", Role::Resident, "Kim")).await;
    c.stop_nats().await;
    let mut late = Client::connect_url(&c.nodes[0].url()).await;
    late.send(json!({"type":"hello","token": c.token("late", Role::Family, "Late")}))
        .await;
    assert_eq!(
        late.closed_within(Duration::from_secs(9)).await,
        Some(1008),
        "{}",
        c.logs()
    );
    c.restart_nats(Duration::ZERO).await;
    let joined = kim
        .expect_within("peer_joined", Duration::from_secs(15))
        .await;
    assert_eq!(joined["name"], "Late", "{}", c.logs());
    let left = kim
        .expect_within("peer_left", Duration::from_secs(10))
        .await;
    assert_eq!(left["peer"], joined["peer"], "{}", c.logs());
}

/// The systemd unit in `packaging/server/`: systemd accepts it, and the server started the way
/// it says (its environment, with this test's ports and NATS) serves, and drains and exits on
/// SIGTERM well within its `TimeoutStopSec`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_verifies_and_runs_the_server_as_it_says() {
    let c = Cluster::start(1).await;
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/server/hearth-signaling@.service"
    ))
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_hearth-signaling");
    // systemd checks the unit (an instance of the template), run from where the build put the
    // binary.
    let dir = c.dir.path().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let local = unit.replace("/usr/bin/hearth-signaling", bin);
    std::fs::write(dir.join("hearth-signaling@.service"), &local).unwrap();
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("hearth-signaling@1.service"))
        .output()
        .expect("systemd-analyze runs (Debian's systemd package; ./scripts/test installs it)");
    let complaints = String::from_utf8_lossy(&verify.stderr).to_string();
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // Its environment, instance 1, with this test's listen port and NATS.
    let mut env: Vec<(String, String)> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%i", "1")))
        .collect();
    for (k, v) in &mut env {
        match k.as_str() {
            "HEARTH_LISTEN" => *v = "127.0.0.1:0".to_owned(),
            "HEARTH_NATS_URL" => *v = c.nats_url(),
            "HEARTH_DATA_DIR" => *v = c.dir.path().join("data").display().to_string(),
            _ => {}
        }
    }
    assert!(env.iter().any(|(k, _)| k == "HEARTH_NODE_ID"));
    let stop_timeout: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim().parse().ok())
        .expect("TimeoutStopSec");
    let (mut child, url, _lines) = common::process::spawn_until_url(
        tokio::process::Command::new(bin)
            .envs(env)
            .env("HEARTH_SECRET", "a-secret-from-signaling.env-0123456789")
            .arg("serve"),
    )
    .await;
    let token = signaling::token::TokenKeys::new(
        &signaling::secret::Secret::new("a-secret-from-signaling.env-0123456789").unwrap(),
    )
    .mint(
        "r",
        Role::Family,
        "Ann",
        None,
        Duration::from_secs(60),
        common::now(),
    )
    .unwrap();
    let (mut ann, w) = Client::join_at(&url, &token).await;
    assert_eq!(w["type"], "welcome");
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert_eq!(ann.expect("shutdown").await["type"], "shutdown");
    drop(ann);
    let status = tokio::time::timeout(Duration::from_secs(stop_timeout), child.wait())
        .await
        .expect("exits within TimeoutStopSec")
        .unwrap();
    assert!(status.success(), "{status}");
}
