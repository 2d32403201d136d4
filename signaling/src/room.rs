//! One room as plain state: who is in the call, who waits in the consult's waiting room, and what
//! each change tells whom. No sockets and no clock: callers pass `now` and deliver the effects.

use hearth_proto::care::{AuditEvent, CheckReport};
use hearth_proto::{ErrorCode, PeerId, PeerInfo, Role, ServerMessage, WaitingPeer};
use serde::{Deserialize, Serialize};

/// Someone arriving with a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entrant {
    /// The id the server picked for this connection.
    pub peer: PeerId,
    /// The token's stable subject; reconnects are matched by it.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Role from the token.
    pub role: Role,
}

impl Entrant {
    fn info(&self) -> PeerInfo {
        PeerInfo {
            peer: self.peer.clone(),
            name: self.name.clone(),
            role: self.role,
            sub: self.sub.clone(),
        }
    }
}

/// What the caller must deliver after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this message to that peer.
    Send(PeerId, ServerMessage),
    /// That peer is now in the call: send it a `welcome` listing these others.
    Welcome {
        /// The new member.
        peer: PeerId,
        /// Everyone else in the call.
        peers: Vec<PeerInfo>,
    },
    /// Send that peer an error and close its connection; it is no longer in the room.
    Close {
        /// Whose connection.
        peer: PeerId,
        /// The code.
        code: ErrorCode,
        /// The sentence.
        message: String,
    },
    /// Something the audit trail records.
    Audit {
        /// What happened.
        event: AuditEvent,
        /// In which room.
        room: String,
        /// To whom; `None` for the end of the call.
        who: Option<Entrant>,
        /// Who did it, when someone else did (the clinician who admitted or denied).
        by: Option<Entrant>,
    },
}

fn audit(room: &str, event: AuditEvent, who: &Entrant, by: Option<&Entrant>) -> Effect {
    Effect::Audit {
        event,
        room: room.to_owned(),
        who: Some(who.clone()),
        by: by.cloned(),
    }
}

/// Where a join put the entrant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// In the call, under its own new id.
    Call,
    /// In the waiting room under this id: the entrant's own, or the held place of an earlier
    /// connection with the same subject, which the caller must now route to the new connection.
    Waiting(PeerId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiter {
    who: Entrant,
    since_ms: u64,
    /// When the connection dropped, while the place is held.
    dropped_ms: Option<u64>,
    /// The position this waiter was last told, to tell only changes.
    told_position: usize,
    /// Their latest pre-call check.
    check: Option<CheckReport>,
}

/// A room: who is present (a family room's tablet and relatives, who call each other in
/// groups the clients hold to four; or a consult's call) and, for consults, a waiting room.
///
/// The members first: a relayed `signal` reads them (see [`crate::replica::Replica`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[repr(C)]
pub struct Room {
    members: Vec<Entrant>,
    name: String,
    /// People present at once. Written in snapshots, but a server holds a room it loads to its
    /// own limits ([`Room::set_capacity`]).
    capacity: usize,
    /// People in a consult's call: admitting from the waiting room stops there.
    #[serde(default = "default_call_capacity")]
    call_capacity: usize,
    queue: Vec<Waiter>,
    /// Not used: written for servers of the previous version, whose snapshots require it
    /// (while a cluster is upgraded one server at a time). They set it again as a clinician
    /// arrives.
    #[serde(default)]
    consult: bool,
}

/// A room's call capacity where a snapshot has none (an older version's).
fn default_call_capacity() -> usize {
    4
}

/// How many people a room holds.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Present at once.
    pub members: usize,
    /// In a consult's call.
    pub call: usize,
}

#[cfg(test)]
impl Capacity {
    /// `n` present, and `n` in a consult's call.
    pub(crate) fn both(n: usize) -> Capacity {
        Capacity {
            members: n,
            call: n,
        }
    }
}

impl Room {
    /// An empty room named `name`.
    pub fn new(name: &str, capacity: Capacity) -> Room {
        Room {
            name: name.to_owned(),
            capacity: capacity.members,
            call_capacity: capacity.call,
            members: Vec::new(),
            queue: Vec::new(),
            consult: false,
        }
    }

    /// Holds the room to these limits from now on (people already in stay).
    pub fn set_capacity(&mut self, capacity: Capacity) {
        self.capacity = capacity.members;
        self.call_capacity = capacity.call;
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when nobody is in the call or waiting (held places count as waiting).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.queue.is_empty()
    }

    /// Number of participants in the call.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Ids in the waiting room, first arrived first.
    pub fn waiting(&self) -> Vec<PeerId> {
        self.queue.iter().map(|w| w.who.peer.clone()).collect()
    }

    /// A consult is on while a clinician or a patient is here (a doctor on rounds in a family
    /// room too), or patients wait: a guest then waits to be let in, like a patient.
    fn is_consult(&self) -> bool {
        self.members
            .iter()
            .any(|m| matches!(m.role, Role::Clinician | Role::Patient))
            || self.queue.iter().any(|w| w.who.role == Role::Patient)
    }

    /// Guests still waiting when the consult is over (the clinician and the patients gone) are
    /// let in: nobody is left to admit them. Those whose connection dropped wait until they are
    /// back.
    fn release_guests(&mut self, out: &mut Vec<Effect>) {
        if self.is_consult() {
            return;
        }
        let mut moved = false;
        while self.members.len() < self.capacity
            && let Some(i) = self
                .queue
                .iter()
                .position(|w| w.who.role == Role::Guest && w.dropped_ms.is_none())
        {
            let waiter = self.queue.remove(i);
            self.enter(waiter.who, out);
            moved = true;
        }
        if moved {
            self.queue_changed(out);
        }
    }

    /// How many are in a consult's call: its clinicians and those let in from the waiting room
    /// (a family room's tablet and relatives, present during a doctor's round, are not).
    fn in_consult(&self) -> usize {
        self.members
            .iter()
            .filter(|m| matches!(m.role, Role::Clinician | Role::Patient | Role::Guest))
            .count()
    }

    fn must_wait(&self, role: Role) -> bool {
        match role {
            Role::Patient => true,
            Role::Guest => self.is_consult(),
            Role::Resident | Role::Family | Role::Clinician | Role::Staff => false,
        }
    }

    /// Someone arrives. A patient always waits (the clinician may not be there yet); a guest waits
    /// when the room is a consult; everyone else enters the call if there is room. The same subject
    /// connecting again replaces its older connection: in the call as a new participant (the
    /// others see it leave and join; an admitted patient is not sent back to the queue), in the
    /// waiting room keeping its place and id.
    pub fn join(
        &mut self,
        who: Entrant,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<Placement, ErrorCode> {
        if let Some(w) = self.queue.iter_mut().find(|w| w.who.sub == who.sub) {
            // Clinicians hear of it only when what they see changes, so repeated reconnects of
            // one patient cannot flood them.
            let visible = w.dropped_ms.is_some() || w.who.name != who.name;
            w.who.name = who.name;
            w.dropped_ms = None;
            w.told_position = 0;
            let id = w.who.peer.clone();
            if visible {
                self.queue_changed(out);
            } else {
                self.tell_positions(out);
            }
            return Ok(Placement::Waiting(id));
        }
        // Someone already in the call whose new connection arrived before the server noticed the
        // old one drop goes back into the call, even a patient: they were admitted.
        let replaced = self.members.iter().position(|m| m.sub == who.sub);
        if replaced.is_none() && self.must_wait(who.role) {
            let id = who.peer.clone();
            out.push(audit(&self.name, AuditEvent::Waiting, &who, None));
            self.queue.push(Waiter {
                who,
                since_ms: now_ms,
                dropped_ms: None,
                told_position: 0,
                check: None,
            });
            self.queue_changed(out);
            return Ok(Placement::Waiting(id));
        }
        let room_after = self.members.len() - usize::from(replaced.is_some());
        if room_after >= self.capacity {
            return Err(ErrorCode::RoomFull);
        }
        if let Some(i) = replaced {
            let old = self.members.remove(i);
            out.push(audit(&self.name, AuditEvent::Left, &old, None));
            out.push(Effect::Close {
                peer: old.peer.clone(),
                code: ErrorCode::Replaced,
                message: ErrorCode::Replaced.default_message().to_owned(),
            });
            self.tell_members(out, &ServerMessage::PeerLeft { peer: old.peer });
        }
        self.enter(who, out);
        Ok(Placement::Call)
    }

    fn enter(&mut self, who: Entrant, out: &mut Vec<Effect>) {
        out.push(audit(&self.name, AuditEvent::Joined, &who, None));
        out.push(Effect::Welcome {
            peer: who.peer.clone(),
            peers: self.members.iter().map(Entrant::info).collect(),
        });
        self.tell_members(
            out,
            &ServerMessage::PeerJoined {
                peer: who.peer.clone(),
                name: who.name.clone(),
                role: who.role,
                sub: who.sub.clone(),
            },
        );
        let clinician = who.role == Role::Clinician;
        let id = who.peer.clone();
        // Exactly as many as there are: a room holds a few people and a server holds many
        // rooms, and `push` alone would make room for four at the first.
        self.members.reserve_exact(1);
        self.members.push(who);
        if clinician {
            out.push(Effect::Send(id, self.lobby()));
        }
    }

    /// The peer left on purpose: gone from the call or the queue, no place held.
    pub fn leave(&mut self, peer: &PeerId, out: &mut Vec<Effect>) {
        if let Some(i) = self.queue.iter().position(|w| &w.who.peer == peer) {
            let waiter = self.queue.remove(i);
            out.push(audit(&self.name, AuditEvent::Left, &waiter.who, None));
            self.queue_changed(out);
        } else {
            self.remove_member(peer, out);
        }
        self.release_guests(out);
    }

    /// A waiter's connection dropped: its place is held until [`Room::expire`] finds it older
    /// than the grace period, and clinicians see it. A member of the call stays in the call (its
    /// session may be resumed); [`Room::leave`] takes it out when it is given up. Returns
    /// whether `peer` was waiting.
    pub fn disconnect(&mut self, peer: &PeerId, now_ms: u64, out: &mut Vec<Effect>) -> bool {
        let Some(w) = self.queue.iter_mut().find(|w| &w.who.peer == peer) else {
            return false;
        };
        w.dropped_ms = Some(now_ms);
        self.queue_changed(out);
        true
    }

    /// A held waiter is connected again under the same id: clinicians see it back. Returns
    /// whether `peer` was waiting.
    pub fn reconnect(&mut self, peer: &PeerId, out: &mut Vec<Effect>) -> bool {
        let Some(w) = self.queue.iter_mut().find(|w| &w.who.peer == peer) else {
            return false;
        };
        let was_dropped = w.dropped_ms.take().is_some();
        w.told_position = 0;
        if was_dropped {
            self.queue_changed(out);
        } else {
            self.tell_positions(out);
        }
        self.release_guests(out);
        true
    }

    /// Whether `peer` is in the waiting room (held places count).
    pub fn is_waiting(&self, peer: &PeerId) -> bool {
        self.queue.iter().any(|w| &w.who.peer == peer)
    }

    /// The state a waiter is told when it needs all of it again: its position.
    pub fn position_of(&self, peer: &PeerId) -> Option<ServerMessage> {
        let i = self.queue.iter().position(|w| &w.who.peer == peer)?;
        Some(ServerMessage::Waiting {
            room: self.name.clone(),
            peer: peer.clone(),
            position: i + 1,
            resume_secret: None,
        })
    }

    /// What a clinician in this room sees of the waiting room, when it is a consult.
    pub fn lobby_for(&self, peer: &PeerId) -> Option<ServerMessage> {
        self.member(peer)
            .filter(|m| m.role == Role::Clinician)
            .map(|_| self.lobby())
    }

    fn remove_member(&mut self, peer: &PeerId, out: &mut Vec<Effect>) {
        if let Some(i) = self.members.iter().position(|m| &m.peer == peer) {
            let gone = self.members.remove(i);
            out.push(audit(&self.name, AuditEvent::Left, &gone, None));
            self.tell_members(out, &ServerMessage::PeerLeft { peer: peer.clone() });
            if self.members.is_empty() {
                out.push(Effect::Audit {
                    event: AuditEvent::Ended,
                    room: self.name.clone(),
                    who: None,
                    by: None,
                });
            }
        }
    }

    /// Drops held places older than `grace_ms`. Returns whether anything changed.
    pub fn expire(&mut self, now_ms: u64, grace_ms: u64, out: &mut Vec<Effect>) -> bool {
        let before = self.queue.len();
        self.queue.retain(|w| {
            let keep = w
                .dropped_ms
                .is_none_or(|t| now_ms.saturating_sub(t) < grace_ms);
            if !keep {
                out.push(audit(&self.name, AuditEvent::Left, &w.who, None));
            }
            keep
        });
        let changed = self.queue.len() != before;
        if changed {
            self.queue_changed(out);
            self.release_guests(out);
        }
        changed
    }

    fn clinician(&self, by: &PeerId) -> Result<Entrant, ErrorCode> {
        match self.members.iter().find(|m| &m.peer == by) {
            Some(m) if m.role == Role::Clinician => Ok(m.clone()),
            _ => Err(ErrorCode::Forbidden),
        }
    }

    /// A clinician lets a waiting, connected peer into the call.
    pub fn admit(
        &mut self,
        by: &PeerId,
        peer: &PeerId,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorCode> {
        let clinician = self.clinician(by)?;
        let i = self
            .queue
            .iter()
            .position(|w| &w.who.peer == peer && w.dropped_ms.is_none())
            .ok_or(ErrorCode::UnknownPeer)?;
        if self.in_consult() >= self.call_capacity || self.members.len() >= self.capacity {
            return Err(ErrorCode::RoomFull);
        }
        let waiter = self.queue.remove(i);
        out.push(audit(
            &self.name,
            AuditEvent::Admitted,
            &waiter.who,
            Some(&clinician),
        ));
        self.enter(waiter.who, out);
        self.queue_changed(out);
        Ok(())
    }

    /// A clinician turns a waiting peer away, with an optional sentence for them.
    pub fn deny(
        &mut self,
        by: &PeerId,
        peer: &PeerId,
        reason: Option<String>,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorCode> {
        let clinician = self.clinician(by)?;
        let i = self
            .queue
            .iter()
            .position(|w| &w.who.peer == peer)
            .ok_or(ErrorCode::UnknownPeer)?;
        let waiter = self.queue.remove(i);
        // The reason is not recorded: it may say something about the patient's health.
        out.push(audit(
            &self.name,
            AuditEvent::Denied,
            &waiter.who,
            Some(&clinician),
        ));
        if waiter.dropped_ms.is_none() {
            out.push(Effect::Close {
                peer: waiter.who.peer,
                code: ErrorCode::Denied,
                message: reason.unwrap_or_else(|| ErrorCode::Denied.default_message().to_owned()),
            });
        }
        self.queue_changed(out);
        Ok(())
    }

    /// A waiting peer reported its pre-call check: clinicians see it in the lobby. False when
    /// `peer` is not waiting.
    pub fn set_check(&mut self, peer: &PeerId, report: CheckReport, out: &mut Vec<Effect>) -> bool {
        let Some(w) = self.queue.iter_mut().find(|w| &w.who.peer == peer) else {
            return false;
        };
        // The same result again changes nothing the clinicians see: the lobby is not sent
        // again (a patient sending checks over and over would flood every clinician).
        let news = w.check.is_none_or(|c| c.result != report.result);
        w.check = Some(report);
        if news {
            self.queue_changed(out);
        }
        true
    }

    /// The member of the call with this id.
    pub fn member(&self, peer: &PeerId) -> Option<&Entrant> {
        self.members.iter().find(|m| &m.peer == peer)
    }

    /// Everyone in the call.
    pub fn members(&self) -> &[Entrant] {
        &self.members
    }

    /// Drops the waiting-room place of subject `sub`, held or live (its invitation was
    /// withdrawn). Returns whether there was one.
    pub fn forget_waiting(&mut self, sub: &str, out: &mut Vec<Effect>) -> bool {
        let Some(i) = self.queue.iter().position(|w| w.who.sub == sub) else {
            return false;
        };
        let waiter = self.queue.remove(i);
        out.push(audit(&self.name, AuditEvent::Left, &waiter.who, None));
        self.queue_changed(out);
        true
    }

    /// Whether `from` may send a `signal` to `to`: both must be in the call.
    pub fn check_signal(&self, from: &PeerId, to: &PeerId) -> Result<(), ErrorCode> {
        if !self.members.iter().any(|m| &m.peer == from) {
            return Err(ErrorCode::Forbidden);
        }
        if from == to || !self.members.iter().any(|m| &m.peer == to) {
            return Err(ErrorCode::UnknownPeer);
        }
        Ok(())
    }

    fn lobby(&self) -> ServerMessage {
        ServerMessage::Lobby {
            waiting: self
                .queue
                .iter()
                .map(|w| WaitingPeer {
                    peer: w.who.peer.clone(),
                    name: w.who.name.clone(),
                    role: w.who.role,
                    since: w.since_ms,
                    connected: w.dropped_ms.is_none(),
                    check: w.check,
                })
                .collect(),
        }
    }

    /// After any change to the queue: clinicians get the new lobby, waiters their positions.
    fn queue_changed(&mut self, out: &mut Vec<Effect>) {
        let lobby = self.lobby();
        for m in self.members.iter().filter(|m| m.role == Role::Clinician) {
            out.push(Effect::Send(m.peer.clone(), lobby.clone()));
        }
        self.tell_positions(out);
    }

    /// Connected waiters whose place changed since they were last told get their position.
    fn tell_positions(&mut self, out: &mut Vec<Effect>) {
        let name = &self.name;
        for (i, w) in self.queue.iter_mut().enumerate() {
            let position = i + 1;
            if w.dropped_ms.is_none() && w.told_position != position {
                w.told_position = position;
                out.push(Effect::Send(
                    w.who.peer.clone(),
                    ServerMessage::Waiting {
                        room: name.clone(),
                        peer: w.who.peer.clone(),
                        position,
                        resume_secret: None,
                    },
                ));
            }
        }
    }

    fn tell_members(&self, out: &mut Vec<Effect>, msg: &ServerMessage) {
        for m in &self.members {
            out.push(Effect::Send(m.peer.clone(), msg.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entrant(peer: &str, role: Role) -> Entrant {
        Entrant {
            peer: peer.into(),
            sub: format!("sub-{peer}"),
            name: peer.to_uppercase(),
            role,
        }
    }

    /// A room of `capacity` that these people joined, in order, at the given times.
    fn room_of(capacity: usize, people: &[(&str, Role, u64)]) -> (Room, Vec<Effect>) {
        let mut room = Room::new("r", Capacity::both(capacity));
        let mut out = vec![];
        for (peer, role, at) in people {
            room.join(entrant(peer, *role), *at, &mut out).unwrap();
        }
        (room, vec![])
    }

    fn sent_to<'a>(out: &'a [Effect], peer: &str) -> Vec<&'a ServerMessage> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send(p, m) if p.as_str() == peer => Some(m),
                _ => None,
            })
            .collect()
    }

    fn lobby_ids(msg: &ServerMessage) -> Vec<String> {
        match msg {
            ServerMessage::Lobby { waiting } => {
                waiting.iter().map(|w| w.peer.as_str().to_owned()).collect()
            }
            other => panic!("not a lobby: {other:?}"),
        }
    }

    #[test]
    fn family_enters_and_others_hear_of_it() {
        let mut room = Room::new("r", Capacity::both(4));
        let mut out = vec![];
        assert_eq!(
            room.join(entrant("kim", Role::Resident), 0, &mut out),
            Ok(Placement::Call)
        );
        out.clear();
        room.join(entrant("ann", Role::Family), 1, &mut out)
            .unwrap();
        assert!(out.contains(&Effect::Welcome {
            peer: "ann".into(),
            peers: vec![PeerInfo {
                peer: "kim".into(),
                name: "KIM".into(),
                role: Role::Resident,
                sub: "sub-kim".into(),
            }],
        }));
        assert_eq!(
            sent_to(&out, "kim"),
            vec![&ServerMessage::PeerJoined {
                peer: "ann".into(),
                name: "ANN".into(),
                role: Role::Family,
                sub: "sub-ann".into(),
            }]
        );
    }

    fn audits(out: &[Effect]) -> Vec<(AuditEvent, String, Option<String>)> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Audit { event, who, by, .. } => Some((
                    *event,
                    who.as_ref().map_or(String::new(), |w| w.sub.clone()),
                    by.as_ref().map(|b| b.sub.clone()),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_audit_trail_follows_a_consult_without_its_reasons() {
        use AuditEvent::*;
        let mut room = Room::new("r", Capacity::both(4));
        let mut out = vec![];
        room.join(entrant("doc", Role::Clinician), 0, &mut out)
            .unwrap();
        room.join(entrant("p1", Role::Patient), 1, &mut out)
            .unwrap();
        room.join(entrant("p2", Role::Patient), 2, &mut out)
            .unwrap();
        room.admit(&"doc".into(), &"p1".into(), &mut out).unwrap();
        room.deny(
            &"doc".into(),
            &"p2".into(),
            Some("a private reason".into()),
            &mut out,
        )
        .unwrap();
        room.leave(&"p1".into(), &mut out);
        room.leave(&"doc".into(), &mut out);
        let doc = Some("sub-doc".to_owned());
        assert_eq!(
            audits(&out),
            vec![
                (Joined, "sub-doc".into(), None),
                (Waiting, "sub-p1".into(), None),
                (Waiting, "sub-p2".into(), None),
                (Admitted, "sub-p1".into(), doc.clone()),
                (Joined, "sub-p1".into(), None),
                (Denied, "sub-p2".into(), doc),
                (Left, "sub-p1".into(), None),
                (Left, "sub-doc".into(), None),
                (Ended, String::new(), None),
            ]
        );
        assert!(
            !out.iter()
                .filter(|e| matches!(e, Effect::Audit { .. }))
                .any(|e| format!("{e:?}").contains("private reason")),
            "a denial's reason is not audited"
        );
    }

    #[test]
    fn the_same_check_again_does_not_resend_the_lobby() {
        use hearth_proto::care::{CheckOutcome, CheckResult};
        let (mut room, mut out) =
            room_of(4, &[("doc", Role::Clinician, 0), ("p1", Role::Patient, 0)]);
        let result = |camera| CheckResult {
            camera,
            microphone: CheckOutcome::Ok,
            speaker: CheckOutcome::Ok,
            connection: CheckOutcome::Ok,
        };
        let report = |camera, at| CheckReport {
            result: result(camera),
            at,
        };
        room.set_check(&"p1".into(), report(CheckOutcome::Ok, 1), &mut out);
        assert_eq!(sent_to(&out, "doc").len(), 1, "the first check is news");
        out.clear();
        for at in 2..50 {
            room.set_check(&"p1".into(), report(CheckOutcome::Ok, at), &mut out);
        }
        assert!(
            sent_to(&out, "doc").is_empty(),
            "the same result again is not"
        );
        room.set_check(&"p1".into(), report(CheckOutcome::Failed, 60), &mut out);
        assert_eq!(sent_to(&out, "doc").len(), 1, "a changed result is");
    }

    #[test]
    fn patients_queue_in_order_and_clinician_admits_and_denies() {
        let mut room = Room::new("r", Capacity::both(4));
        let mut out = vec![];
        assert_eq!(
            room.join(entrant("p1", Role::Patient), 10, &mut out),
            Ok(Placement::Waiting("p1".into()))
        );
        room.join(entrant("p2", Role::Patient), 20, &mut out)
            .unwrap();
        out.clear();
        room.join(entrant("doc", Role::Clinician), 30, &mut out)
            .unwrap();
        let to_doc = sent_to(&out, "doc");
        assert_eq!(lobby_ids(to_doc[0]), vec!["p1", "p2"]);
        // A guest arriving at a consult waits behind them.
        out.clear();
        assert_eq!(
            room.join(entrant("g", Role::Guest), 40, &mut out),
            Ok(Placement::Waiting("g".into()))
        );
        assert_eq!(lobby_ids(sent_to(&out, "doc")[0]), vec!["p1", "p2", "g"]);
        // Admit p1: welcome lists the doctor; p2 and g move up.
        out.clear();
        room.admit(&"doc".into(), &"p1".into(), &mut out).unwrap();
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Welcome { peer, .. } if peer.as_str() == "p1"))
        );
        assert!(matches!(
            sent_to(&out, "p2")[0],
            ServerMessage::Waiting { position: 1, .. }
        ));
        assert!(matches!(
            sent_to(&out, "g")[0],
            ServerMessage::Waiting { position: 2, .. }
        ));
        // Deny g with a reason.
        out.clear();
        room.deny(
            &"doc".into(),
            &"g".into(),
            Some("Please call the surgery.".into()),
            &mut out,
        )
        .unwrap();
        assert!(out.contains(&Effect::Close {
            peer: "g".into(),
            code: ErrorCode::Denied,
            message: "Please call the surgery.".into()
        }));
        assert_eq!(room.waiting(), vec![PeerId::from("p2")]);
    }

    #[test]
    fn only_clinicians_admit_and_only_waiters_are_admitted() {
        let (mut room, mut out) = room_of(4, &[("fam", Role::Family, 0), ("p1", Role::Patient, 0)]);
        assert_eq!(
            room.admit(&"fam".into(), &"p1".into(), &mut out),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            room.admit(&"p1".into(), &"p1".into(), &mut out),
            Err(ErrorCode::Forbidden)
        );
        room.join(entrant("doc", Role::Clinician), 0, &mut out)
            .unwrap();
        assert_eq!(
            room.admit(&"doc".into(), &"nobody".into(), &mut out),
            Err(ErrorCode::UnknownPeer)
        );
        assert_eq!(
            room.deny(&"doc".into(), &"fam".into(), None, &mut out),
            Err(ErrorCode::UnknownPeer)
        );
    }

    #[test]
    fn a_dropped_patient_keeps_place_and_id_until_grace_ends() {
        let (mut room, mut out) = room_of(
            4,
            &[
                ("doc", Role::Clinician, 0),
                ("p1", Role::Patient, 10),
                ("p2", Role::Patient, 20),
            ],
        );
        room.disconnect(&"p1".into(), 1_000, &mut out);
        match sent_to(&out, "doc")[0] {
            ServerMessage::Lobby { waiting } => {
                assert_eq!(waiting[0].peer.as_str(), "p1");
                assert!(!waiting[0].connected);
                assert_eq!(waiting[0].since, 10);
            }
            other => panic!("{other:?}"),
        }
        // A dropped patient cannot be admitted, but is not forgotten.
        assert_eq!(
            room.admit(&"doc".into(), &"p1".into(), &mut out),
            Err(ErrorCode::UnknownPeer)
        );
        assert!(!room.expire(30_000, 60_000, &mut out));
        // Reconnects under a new connection id, same subject: back in first place with the old id.
        let again = Entrant {
            peer: "p1-new".into(),
            ..entrant("p1", Role::Patient)
        };
        out.clear();
        assert_eq!(
            room.join(again, 40_000, &mut out),
            Ok(Placement::Waiting("p1".into()))
        );
        assert_eq!(lobby_ids(sent_to(&out, "doc")[0]), vec!["p1", "p2"]);
        assert!(matches!(
            sent_to(&out, "p1")[0],
            ServerMessage::Waiting { position: 1, .. }
        ));
        // Dropped again and never back: gone after the grace period.
        room.disconnect(&"p1".into(), 50_000, &mut out);
        out.clear();
        assert!(room.expire(110_000, 60_000, &mut out));
        assert_eq!(room.waiting(), vec![PeerId::from("p2")]);
        assert!(matches!(
            sent_to(&out, "p2")[0],
            ServerMessage::Waiting { position: 1, .. }
        ));
    }

    #[test]
    fn the_room_is_capped_and_the_same_subject_replaces_itself() {
        let (mut room, mut out) = room_of(2, &[("a", Role::Family, 0), ("b", Role::Family, 0)]);
        assert_eq!(
            room.join(entrant("c", Role::Family), 0, &mut out),
            Err(ErrorCode::RoomFull)
        );
        out.clear();
        let b_again = Entrant {
            peer: "b2".into(),
            ..entrant("b", Role::Family)
        };
        assert_eq!(room.join(b_again, 0, &mut out), Ok(Placement::Call));
        assert!(out.iter().any(|e| matches!(e, Effect::Close { peer, code: ErrorCode::Replaced, .. } if peer.as_str() == "b")));
        assert!(sent_to(&out, "a").contains(&&ServerMessage::PeerLeft { peer: "b".into() }));
        assert_eq!(room.member_count(), 2);
    }

    #[test]
    fn a_family_room_holds_more_people_than_a_call_and_a_consult_admits_up_to_a_call() {
        // A resident's tablet and five relatives' apps left open: all present (the clients
        // hold each call to four).
        let mut room = Room::new(
            "r",
            Capacity {
                members: 8,
                call: 4,
            },
        );
        let mut out = vec![];
        room.join(entrant("tablet", Role::Resident), 0, &mut out)
            .unwrap();
        for i in 0..5 {
            assert_eq!(
                room.join(entrant(&format!("fam{i}"), Role::Family), 0, &mut out),
                Ok(Placement::Call)
            );
        }
        assert_eq!(room.member_count(), 6);
        // A consult: the clinician admits until the call holds four, then gets room_full and
        // the patient keeps waiting.
        let mut room = Room::new(
            "c",
            Capacity {
                members: 8,
                call: 4,
            },
        );
        room.join(entrant("doc", Role::Clinician), 0, &mut out)
            .unwrap();
        for i in 0..4 {
            room.join(entrant(&format!("p{i}"), Role::Patient), 0, &mut out)
                .unwrap();
        }
        for i in 0..3 {
            room.admit(&"doc".into(), &format!("p{i}").as_str().into(), &mut out)
                .unwrap();
        }
        assert_eq!(
            room.admit(&"doc".into(), &"p3".into(), &mut out),
            Err(ErrorCode::RoomFull)
        );
        assert_eq!(room.waiting(), vec![PeerId::from("p3")]);
    }

    #[test]
    fn a_guest_waits_only_while_a_consult_is_on_and_is_let_in_when_it_is_over() {
        // A doctor on rounds visits a resident's family room, where the tablet and three
        // relatives' apps are open: the doctor's call counts only the doctor and those let in.
        let (mut room, mut out) = room_of(
            8,
            &[
                ("tablet", Role::Resident, 0),
                ("f1", Role::Family, 0),
                ("f2", Role::Family, 0),
                ("f3", Role::Family, 0),
                ("doc", Role::Clinician, 0),
            ],
        );
        for g in ["g1", "g2"] {
            assert_eq!(
                room.join(entrant(g, Role::Guest), 0, &mut out),
                Ok(Placement::Waiting(g.into()))
            );
        }
        room.admit(&"doc".into(), &"g1".into(), &mut out).unwrap();
        // The doctor goes without letting g2 in: nobody is left to, so g2 comes in.
        out.clear();
        room.leave(&"doc".into(), &mut out);
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Welcome { peer, .. } if peer.as_str() == "g2")),
            "{out:?}"
        );
        assert!(room.waiting().is_empty());
        // A relative from a browser link now walks straight in.
        assert_eq!(
            room.join(entrant("g3", Role::Guest), 0, &mut out),
            Ok(Placement::Call)
        );
        // In a consult room a patient still in the call keeps guests waiting after the
        // clinician has gone: they would see the patient.
        let (mut room, mut out) =
            room_of(4, &[("doc", Role::Clinician, 0), ("p1", Role::Patient, 0)]);
        room.admit(&"doc".into(), &"p1".into(), &mut out).unwrap();
        room.leave(&"doc".into(), &mut out);
        assert_eq!(
            room.join(entrant("g", Role::Guest), 0, &mut out),
            Ok(Placement::Waiting("g".into()))
        );
        out.clear();
        room.leave(&"p1".into(), &mut out);
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Welcome { peer, .. } if peer.as_str() == "g"))
        );
    }

    #[test]
    fn a_room_from_an_older_snapshot_reads_and_takes_this_servers_limits() {
        let old = serde_json::json!({
            "members": [], "name": "r", "capacity": 4, "queue": [], "consult": true
        });
        let mut room: Room = serde_json::from_value(old).unwrap();
        room.set_capacity(Capacity {
            members: 16,
            call: 4,
        });
        let mut out = vec![];
        for i in 0..6 {
            assert_eq!(
                room.join(entrant(&format!("f{i}"), Role::Family), 0, &mut out),
                Ok(Placement::Call)
            );
        }
        // What it writes still has what a server of the previous version requires.
        let written = serde_json::to_value(&room).unwrap();
        assert!(written.get("capacity").is_some() && written.get("consult").is_some());
    }

    #[test]
    fn a_reconnect_nobody_noticed_does_not_disturb_the_clinician() {
        let (mut room, mut out) =
            room_of(4, &[("doc", Role::Clinician, 0), ("p1", Role::Patient, 0)]);
        let again = Entrant {
            peer: "p1b".into(),
            ..entrant("p1", Role::Patient)
        };
        assert_eq!(
            room.join(again, 5, &mut out),
            Ok(Placement::Waiting("p1".into()))
        );
        assert!(sent_to(&out, "doc").is_empty());
        assert!(matches!(
            sent_to(&out, "p1")[..],
            [ServerMessage::Waiting { position: 1, .. }]
        ));
    }

    #[test]
    fn an_admitted_patient_reconnecting_goes_back_into_the_call() {
        let (mut room, mut out) =
            room_of(4, &[("doc", Role::Clinician, 0), ("p1", Role::Patient, 0)]);
        room.admit(&"doc".into(), &"p1".into(), &mut out).unwrap();
        out.clear();
        let again = Entrant {
            peer: "p1b".into(),
            ..entrant("p1", Role::Patient)
        };
        assert_eq!(room.join(again, 5, &mut out), Ok(Placement::Call));
        assert!(room.waiting().is_empty());
        assert!(sent_to(&out, "doc").contains(&&ServerMessage::PeerLeft { peer: "p1".into() }));
    }

    #[test]
    fn signals_only_between_members() {
        let (room, _) = room_of(
            4,
            &[
                ("doc", Role::Clinician, 0),
                ("fam", Role::Family, 0),
                ("p1", Role::Patient, 0),
            ],
        );
        assert_eq!(room.check_signal(&"doc".into(), &"fam".into()), Ok(()));
        assert_eq!(
            room.check_signal(&"doc".into(), &"p1".into()),
            Err(ErrorCode::UnknownPeer)
        );
        assert_eq!(
            room.check_signal(&"p1".into(), &"doc".into()),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            room.check_signal(&"doc".into(), &"doc".into()),
            Err(ErrorCode::UnknownPeer)
        );
    }

    #[test]
    fn leaving_empties_the_room() {
        let (mut room, mut out) = room_of(4, &[("a", Role::Family, 0), ("p", Role::Patient, 0)]);
        room.leave(&"a".into(), &mut out);
        room.leave(&"p".into(), &mut out);
        assert!(room.is_empty());
    }
}
