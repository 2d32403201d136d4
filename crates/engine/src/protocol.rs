//! The call sub-protocol: what peers put in the `data` of the server's `signal` messages to
//! place, ring, answer, decline and end calls and to exchange SDP and ICE candidates.
//! Browsers speak it too; `docs/protocol.md` is the contract.

use serde::{Deserialize, Serialize};

/// A session description, as a browser's `RTCSessionDescription.toJSON()` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sdp {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: SdpKind,
    /// The SDP text.
    pub sdp: String,
}

/// Offer or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// An ICE candidate, as a browser's `RTCIceCandidate.toJSON()` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The `candidate:` attribute.
    pub candidate: String,
    /// The media section's mid.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment.
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// Why a call was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// The person said no.
    Declined,
    /// They are in another call.
    Busy,
    /// Their device cannot take calls now.
    Unavailable,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// Someone pressed End.
    Ended,
    /// The caller stopped calling before an answer.
    Cancelled,
    /// Nobody answered.
    Timeout,
    /// The connection could not be made or restored.
    Failed,
}

/// One call message. `id` names the call; a mesh call of three or four people shares one id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum CallMessage {
    /// "I am calling you." Carries the offer, so media can start the moment the callee
    /// answers. `members` lists who else is already in this call; an answering callee calls
    /// each of them with the same `id`, and they pick up automatically.
    Invite {
        /// The call.
        id: String,
        /// The caller's offer.
        sdp: Sdp,
        /// Others already in the call.
        #[serde(default)]
        members: Vec<String>,
    },
    /// "Your call is ringing here."
    Ringing {
        /// The call.
        id: String,
    },
    /// "I answer": the callee's answer SDP.
    Answer {
        /// The call.
        id: String,
        /// The answer.
        sdp: Sdp,
    },
    /// "I won't take this call."
    Decline {
        /// The call.
        id: String,
        /// Why.
        reason: DeclineReason,
    },
    /// A trickled ICE candidate; `null` means "no more candidates".
    Candidate {
        /// The call.
        id: String,
        /// The candidate.
        candidate: Option<Candidate>,
    },
    /// A new offer or answer in an existing call (ICE restart).
    Renegotiate {
        /// The call.
        id: String,
        /// The description.
        sdp: Sdp,
    },
    /// "My video to you is paused (or back)": the connection cannot carry it now, audio goes
    /// on. Lets the other side say so in plain words instead of showing a frozen picture.
    Media {
        /// The call.
        id: String,
        /// True while only audio is sent.
        video_paused: bool,
        /// True when the sender turned their camera off (so `video_paused` is their choice,
        /// not their connection).
        #[serde(default)]
        camera_off: bool,
    },
    /// "I am in a call now (or free again)": sent to everyone in the room when it changes and
    /// to newcomers, so contacts can show who is busy. Belongs to no call.
    Presence {
        /// True while the sender is in a call.
        in_call: bool,
    },
    /// "I am leaving this call."
    Hangup {
        /// The call.
        id: String,
        /// Why.
        reason: HangupReason,
    },
}

impl CallMessage {
    /// The call this message belongs to; `None` for presence.
    pub fn id(&self) -> Option<&str> {
        Some(match self {
            Self::Invite { id, .. }
            | Self::Ringing { id }
            | Self::Answer { id, .. }
            | Self::Decline { id, .. }
            | Self::Candidate { id, .. }
            | Self::Renegotiate { id, .. }
            | Self::Media { id, .. }
            | Self::Hangup { id, .. } => id,
            Self::Presence { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_a_browser_writes() {
        let v = json!({"call":"candidate","id":"c1","candidate":{
            "candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
            "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}});
        let m: CallMessage = serde_json::from_value(v).unwrap();
        let CallMessage::Candidate {
            candidate: Some(c), ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(c.sdp_mline_index, Some(0));
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        let end: CallMessage =
            serde_json::from_value(json!({"call":"candidate","id":"c1","candidate":null})).unwrap();
        assert_eq!(
            end,
            CallMessage::Candidate {
                id: "c1".into(),
                candidate: None
            }
        );
    }

    #[test]
    fn writes_the_documented_shape() {
        let m = CallMessage::Invite {
            id: "c1".into(),
            sdp: Sdp {
                kind: SdpKind::Offer,
                sdp: "v=0".into(),
            },
            members: vec![],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"call":"invite","id":"c1","sdp":{"type":"offer","sdp":"v=0"},"members":[]})
        );
    }
}
