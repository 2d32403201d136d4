//! The messages of protocol v1: what a client sends, what the server sends back.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ErrorCode;
use crate::care::{CheckReport, CheckResult, Rules};

/// A participant's id within the server, assigned by the server; opaque to clients.
///
/// Kept inline, with nothing allocated, up to 24 bytes (the server's own ids are 22): the relay
/// reads one from every `signal`, and finds and compares sessions by it, for every message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(CompactString);

impl PeerId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0.into_string()
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        PeerId(CompactString::from(s))
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        PeerId(CompactString::from(s))
    }
}

/// Who a token belongs to; decides the screen the app shows and what the server allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A care-home resident's tablet.
    Resident,
    /// A family member of a resident.
    Family,
    /// A doctor or nurse who hosts consults and admits from the waiting room.
    Clinician,
    /// A patient who waits to be admitted to a consult.
    Patient,
    /// Care-home staff.
    Staff,
    /// Someone invited once, e.g. from a browser link.
    Guest,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Resident,
        Role::Family,
        Role::Clinician,
        Role::Patient,
        Role::Staff,
        Role::Guest,
    ];

    /// The role as it appears on the wire and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::Family => "family",
            Role::Clinician => "clinician",
            Role::Patient => "patient",
            Role::Staff => "staff",
            Role::Guest => "guest",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A participant of a call, as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Their id, to address `signal` messages.
    pub peer: PeerId,
    /// Display name from their token.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Extension: their token's stable subject, which a resident's rules name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub: String,
}

/// Someone in a consult's waiting room, as clinicians see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingPeer {
    /// Their id, to `admit` or `deny`.
    pub peer: PeerId,
    /// Display name from their token.
    pub name: String,
    /// `patient` or `guest`.
    pub role: Role,
    /// When they first checked in, in milliseconds since the Unix epoch; kept across reconnects.
    pub since: u64,
    /// Extension: false while their connection has dropped and their place is being held.
    pub connected: bool,
    /// Extension: their latest pre-call check, once they have reported one.
    #[serde(default)]
    pub check: Option<CheckReport>,
}

/// An ICE server entry, in the shape of the browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (`expiry:sub`), absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password, absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What a reconnecting client sends in `hello` to take up its session again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The session's peer id.
    pub peer: PeerId,
    /// The `resume_secret` from the session's `welcome` or `waiting`.
    pub secret: String,
    /// The highest `seq` the client received; 0 for none.
    pub last_seq: u64,
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// The first message on every connection.
    Hello {
        /// A signed join token.
        token: String,
        /// Extension: the room the client means to join; refused with `forbidden` when the
        /// token is for another room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Take up a session again after the connection dropped: its id, the secret its
        /// `welcome` (or `waiting`) carried, and the last `seq` received.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<Resume>,
    },
    /// Relay opaque `data` to another participant of the room.
    Signal {
        /// The recipient.
        to: PeerId,
        /// Anything: SDP, ICE candidates, call control.
        data: Value,
    },
    /// A clinician lets someone in from the waiting room.
    Admit {
        /// The waiting peer.
        peer: PeerId,
    },
    /// A clinician turns someone away from the waiting room.
    Deny {
        /// The waiting peer.
        peer: PeerId,
        /// Extension: a plain sentence the patient sees.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Extension: the result of a pre-call check this device ran, unprompted (a waiting patient,
    /// a tablet at start) or because the server sent `run_check`.
    Check {
        /// What it found.
        result: CheckResult,
        /// The `run_check` request this answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
    },
    /// Leave the room and close the connection.
    Leave,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// You are in the room.
    Welcome {
        /// Your id.
        peer: PeerId,
        /// The room.
        room: String,
        /// Your role.
        role: Role,
        /// Everyone else already in the call.
        peers: Vec<PeerInfo>,
        /// STUN and TURN servers for ICE; empty when none is configured.
        ice_servers: Vec<IceServer>,
        /// The secret that resumes this session from another connection (`hello.resume`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_secret: Option<String>,
    },
    /// You are in the waiting room of a consult.
    Waiting {
        /// The room.
        room: String,
        /// Extension: your id (kept across reconnects).
        peer: PeerId,
        /// Extension: your place in the queue, 1 for next.
        position: usize,
        /// The secret that resumes this session from another connection (`hello.resume`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_secret: Option<String>,
    },
    /// The session was taken up again (`hello.resume`). The messages it missed follow with
    /// their own `seq`s, or, when `snapshot` is true, a fresh `welcome` or `waiting` (and for a
    /// clinician `lobby`) that replaces everything the client knew.
    Resumed {
        /// The session's id, unchanged.
        peer: PeerId,
        /// The highest `seq` the client sent in a message that the server has applied; the
        /// client sends again whatever it numbered after it.
        acked: u64,
        /// How many missed messages follow.
        replayed: u64,
        /// True when too much was missed to replay it: the state follows instead.
        snapshot: bool,
    },
    /// Clinicians only: who is waiting, in arrival order.
    Lobby {
        /// The queue, first arrived first.
        waiting: Vec<WaitingPeer>,
    },
    /// Someone entered the call.
    PeerJoined {
        /// Their id.
        peer: PeerId,
        /// Their display name.
        name: String,
        /// Their role.
        role: Role,
        /// Extension: their token's stable subject.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        sub: String,
    },
    /// Someone left the call.
    PeerLeft {
        /// Their id.
        peer: PeerId,
    },
    /// Opaque data relayed from another participant.
    Signal {
        /// The sender, set by the server.
        from: PeerId,
        /// What they sent.
        data: Value,
    },
    /// Something was refused.
    Error {
        /// What to branch on.
        code: ErrorCode,
        /// A plain sentence.
        message: String,
        /// Extension: the peer the refused request named (a `signal`'s `to`, an `admit`'s or
        /// `deny`'s `peer`), so a client with several requests in flight knows which failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
    },
    /// Extension, residents' tablets only: the rules staff set, at joining and on every change.
    Rules {
        /// Who may call, and quiet hours.
        rules: Rules,
    },
    /// Extension, residents' tablets only: staff ask for a pre-call check; answer with `check`.
    RunCheck {
        /// Echo this in the `check` answer.
        request: String,
    },
    /// Extension: the server is shutting down; reconnect after the delay.
    Shutdown {
        /// How long to wait before reconnecting, in milliseconds.
        retry_after_ms: u64,
    },
}

impl ServerMessage {
    /// An error message with the code's default sentence.
    pub fn error(code: ErrorCode) -> Self {
        ServerMessage::Error {
            code,
            message: code.default_message().to_owned(),
            peer: None,
        }
    }
}

/// Why a client frame could not be read as a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON at all.
    NotJson,
    /// A JSON object whose `type` is not one of the client messages.
    UnknownType,
    /// Known `type`, wrong or missing fields, or not an object.
    Invalid(String),
}

impl ParseError {
    /// A plain sentence for the `error` message.
    pub fn sentence(&self) -> String {
        match self {
            ParseError::NotJson => "The message is not valid JSON.".to_owned(),
            ParseError::UnknownType => "The message type is not known.".to_owned(),
            ParseError::Invalid(detail) => format!("The message is not well formed: {detail}."),
        }
    }
}

/// The `seq` of a message, when it has one (read without the rest of the message).
#[derive(Deserialize)]
struct SeqOnly {
    #[serde(default)]
    seq: Option<u64>,
}

/// A message's `seq`: the number a client gives what it sends, so that after a resume it knows
/// what the server applied (`resumed.acked`), or the number the server gives everything it sends
/// in a session. `None` when absent or not a number.
pub fn seq_of(text: &str) -> Option<u64> {
    serde_json::from_str::<SeqOnly>(text)
        .ok()
        .and_then(|s| s.seq)
}

/// The longest [`SeqHead`]: `{"seq":`, twenty digits and a comma.
pub const SEQ_HEAD_MAX: usize = 28;

/// What goes before a JSON object's own fields to give it `"seq":N` as its first field:
/// `{"seq":N`, and a comma when the object has fields.
#[derive(Debug, Clone, Copy)]
pub struct SeqHead {
    bytes: [u8; SEQ_HEAD_MAX],
    len: u8,
}

impl SeqHead {
    /// Its text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `text`, a JSON object, with `"seq":seq` as its first field, in two parts: its [`SeqHead`],
/// then the rest of `text` after its opening `{`. [`with_seq`] joins them; a server can write
/// them one after the other instead, without a copy of the whole message.
pub fn seq_parts(text: &str, seq: u64) -> (SeqHead, &str) {
    use std::io::Write as _;
    let rest = text.strip_prefix('{').unwrap_or(text);
    let comma = !rest.trim_start().starts_with('}');
    let mut bytes = [0u8; SEQ_HEAD_MAX];
    let mut w = &mut bytes[..];
    // At most 28 bytes go into 28: writing cannot fail.
    let _ = write!(w, "{{\"seq\":{seq}");
    if comma {
        let _ = w.write_all(b",");
    }
    let len = SEQ_HEAD_MAX - w.len();
    (
        SeqHead {
            bytes,
            len: len as u8,
        },
        rest,
    )
}

/// Writes `text`, a JSON object, with `"seq":seq` as its first field.
///
/// The string is allocated once at exactly its length: a server turns it into shared bytes,
/// which then need no second allocation.
pub fn with_seq(text: &str, seq: u64) -> String {
    let (head, rest) = seq_parts(text, seq);
    let mut out = String::with_capacity(head.as_bytes().len() + rest.len());
    // Only `{"seq":`, digits and a comma went into the head.
    out.push_str(std::str::from_utf8(head.as_bytes()).unwrap_or_default());
    out.push_str(rest);
    out
}

/// Reads one client text frame.
pub fn parse_client(text: &str) -> Result<ClientMessage, ParseError> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ParseError::NotJson
        }
        _ => {
            let detail = e.to_string();
            if detail.starts_with("unknown variant") {
                ParseError::UnknownType
            } else {
                // serde's text names the field and the expected type; strip the position.
                let detail = detail
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                ParseError::Invalid(detail)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_peer_id_of_up_to_24_bytes_is_held_inline_and_reads_as_a_plain_string() {
        let server_made = PeerId::from("AbCdEfGhIjKlMnOpQrStUv");
        assert!(!server_made.0.is_heap_allocated());
        let read: PeerId = serde_json::from_str(r#""AbCdEfGhIjKlMnOpQrStUv""#).unwrap();
        assert!(!read.0.is_heap_allocated());
        assert_eq!(read, server_made);
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#""AbCdEfGhIjKlMnOpQrStUv""#
        );
        // Longer ids (a client may send anything) still work, on the heap.
        let long = PeerId::from(String::from("x").repeat(40));
        assert!(long.0.is_heap_allocated());
        assert_eq!(long.clone().into_string().len(), 40);
        assert!(long > server_made, "ordered as strings");
    }

    #[test]
    fn client_messages_read_the_documented_shapes() {
        assert_eq!(
            parse_client(r#"{"type":"hello","token":"t"}"#).unwrap(),
            ClientMessage::Hello {
                token: "t".into(),
                room: None,
                resume: None,
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"signal","to":"p1","data":{"sdp":"x"}}"#).unwrap(),
            ClientMessage::Signal {
                to: "p1".into(),
                data: json!({"sdp":"x"})
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"deny","peer":"p2"}"#).unwrap(),
            ClientMessage::Deny {
                peer: "p2".into(),
                reason: None
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
    }

    #[test]
    fn bad_frames_are_classified() {
        assert_eq!(parse_client("{not json"), Err(ParseError::NotJson));
        assert_eq!(parse_client(""), Err(ParseError::NotJson));
        assert_eq!(
            parse_client(r#"{"type":"dance"}"#),
            Err(ParseError::UnknownType)
        );
        assert!(
            matches!(parse_client(r#"{"type":"signal","to":"p"}"#), Err(ParseError::Invalid(d)) if d.contains("data"))
        );
        assert!(matches!(parse_client("42"), Err(ParseError::Invalid(_))));
        assert!(
            matches!(parse_client(r#"{"token":"t"}"#), Err(ParseError::Invalid(d)) if d.contains("type"))
        );
    }

    #[test]
    fn server_messages_write_the_documented_shapes() {
        let welcome = ServerMessage::Welcome {
            peer: "p1".into(),
            room: "r".into(),
            role: Role::Family,
            peers: vec![PeerInfo {
                peer: "p0".into(),
                name: "Mrs Kim".into(),
                role: Role::Resident,
                sub: String::new(),
            }],
            ice_servers: vec![IceServer {
                urls: vec!["stun:s:3478".into()],
                username: None,
                credential: None,
            }],
            resume_secret: None,
        };
        assert_eq!(
            serde_json::to_value(&welcome).unwrap(),
            json!({"type":"welcome","peer":"p1","room":"r","role":"family",
                   "peers":[{"peer":"p0","name":"Mrs Kim","role":"resident"}],
                   "ice_servers":[{"urls":["stun:s:3478"]}]})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::error(ErrorCode::RoomFull)).unwrap()["code"],
            json!("room_full")
        );
    }

    #[test]
    fn seq_is_written_first_and_read_without_the_rest() {
        let text = with_seq(r#"{"type":"peer_left","peer":"p"}"#, 7);
        assert_eq!(text, r#"{"seq":7,"type":"peer_left","peer":"p"}"#);
        assert_eq!(seq_of(&text), Some(7));
        assert_eq!(with_seq("{}", 1), r#"{"seq":1}"#);
        // Allocated at exactly its length, whatever the number of digits.
        for (text, seq, want) in [
            ("{}", 0, r#"{"seq":0}"#),
            ("{ }", 9, r#"{"seq":9 }"#),
            (r#"{"a":1}"#, 10, r#"{"seq":10,"a":1}"#),
            (
                r#"{"a":1}"#,
                u64::MAX,
                r#"{"seq":18446744073709551615,"a":1}"#,
            ),
        ] {
            let out = with_seq(text, seq);
            assert_eq!(out, want);
            assert_eq!(out.capacity(), out.len(), "{want}");
            let (head, rest) = seq_parts(text, seq);
            assert_eq!([head.as_bytes(), rest.as_bytes()].concat(), want.as_bytes());
        }
        assert_eq!(seq_of(r#"{"type":"leave"}"#), None);
        assert_eq!(seq_of(r#"{"type":"leave","seq":"x"}"#), None);
        assert_eq!(seq_of("not json"), None);
        // A message with a seq still reads as itself.
        assert_eq!(
            parse_client(r#"{"seq":3,"type":"leave"}"#).unwrap(),
            ClientMessage::Leave
        );
        let resume = parse_client(
            r#"{"type":"hello","token":"t","resume":{"peer":"p","secret":"s","last_seq":4}}"#,
        )
        .unwrap();
        assert!(matches!(resume, ClientMessage::Hello { resume: Some(r), .. } if r.last_seq == 4));
    }

    #[test]
    fn roles_parse_by_wire_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("doctor".parse::<Role>().is_err());
    }
}
