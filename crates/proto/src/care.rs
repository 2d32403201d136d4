//! The care workflows' types: pre-call check results, a resident's calling rules, invitations,
//! tablets as staff see them, audit records, and the HTTP API's error body. They travel both in
//! WebSocket messages and in the JSON of the staff/clinician HTTP API (`docs/protocol.md`).

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Role};

/// How one part of a pre-call check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// It works.
    Ok,
    /// It does not work.
    Failed,
    /// Not used on this device (no speaker chosen, no relay configured).
    NotUsed,
}

/// A pre-call check's result as a device reports it: the parts a clinician or staff member needs
/// to know about, with no detail that could identify anything but the device's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CheckResult {
    /// The camera gave pictures.
    pub camera: CheckOutcome,
    /// The microphone heard something.
    pub microphone: CheckOutcome,
    /// The speaker could be opened.
    pub speaker: CheckOutcome,
    /// The server and, when configured, the TURN relay were reachable.
    pub connection: CheckOutcome,
}

impl CheckResult {
    /// True when camera and microphone both work.
    pub fn devices_ok(&self) -> bool {
        self.camera == CheckOutcome::Ok && self.microphone == CheckOutcome::Ok
    }
}

/// A check result with the time the server received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CheckReport {
    /// What the device found.
    #[serde(flatten)]
    pub result: CheckResult,
    /// When the server received it, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub at: u64,
}

/// Someone who may call a resident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Caller {
    /// Their token's subject (an invitation's `sub`).
    pub sub: String,
    /// Their name, as the resident's tablet shows it.
    pub name: String,
    /// The tablet answers their calls by itself after a short countdown.
    #[serde(default)]
    pub auto_answer: bool,
}

/// A daily time span during which the tablet does not ring, in the tablet's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct QuietHours {
    /// Start, `HH:MM` (24-hour clock).
    pub from: String,
    /// End, `HH:MM`; earlier than `from` means the span crosses midnight.
    pub to: String,
}

impl QuietHours {
    /// Minutes after midnight of `HH:MM`, or `None` when it is not a time of day.
    pub fn minutes(text: &str) -> Option<u16> {
        let (h, m) = text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    }

    /// Checks both times; the error is a plain sentence.
    pub fn validate(&self) -> Result<(), String> {
        for t in [&self.from, &self.to] {
            if Self::minutes(t).is_none() {
                return Err(format!("{t:?} is not a time of day like 21:00."));
            }
        }
        if self.from == self.to {
            return Err("Quiet hours must start and end at different times.".to_owned());
        }
        Ok(())
    }

    /// True when `minute_of_day` (0..1440, local time) falls inside the span.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        let (Some(from), Some(to)) = (Self::minutes(&self.from), Self::minutes(&self.to)) else {
            return false;
        };
        if from < to {
            (from..to).contains(&minute_of_day)
        } else {
            minute_of_day >= from || minute_of_day < to
        }
    }
}

/// What care-home staff decided for one resident's tablet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Rules {
    /// Who may call the resident (and be called); `None` means anyone in the resident's room.
    #[serde(default)]
    pub callers: Option<Vec<Caller>>,
    /// When the tablet does not ring: calls are declined as unavailable.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Kiosk mode on the tablet (full screen, started at login, brought back after a crash,
    /// its window not closed while signed in); `None` leaves the tablet's mode as it is. Staff
    /// turn it off here to get the tablet's desktop back without a password on the tablet.
    #[serde(default)]
    pub kiosk: Option<bool>,
}

/// The most callers one resident's rules may list.
pub const MAX_CALLERS: usize = 64;

impl Rules {
    /// Checks the rules; the error is a plain sentence.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(callers) = &self.callers {
            if callers.len() > MAX_CALLERS {
                return Err(format!("At most {MAX_CALLERS} people may be listed."));
            }
            for c in callers {
                if c.sub.trim().is_empty() || c.name.trim().is_empty() {
                    return Err("Each person needs a name and an id.".to_owned());
                }
                if c.sub.len() > 128 || c.name.len() > 200 {
                    return Err("A name or id is too long.".to_owned());
                }
            }
        }
        if let Some(q) = &self.quiet_hours {
            q.validate()?;
        }
        Ok(())
    }

    /// Whether someone with subject `sub` may call the resident (and be called).
    pub fn allows(&self, sub: &str) -> bool {
        self.callers
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c.sub == sub))
    }
}

/// What staff (or a clinician, for their own room) ask for when creating an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct NewInvitation {
    /// The room it admits to.
    pub room: String,
    /// The role it gives.
    pub role: Role,
    /// The name others will see.
    pub name: String,
    /// How long it stays valid, seconds (default 7 days, at most 365 days).
    #[serde(default)]
    pub expires_in_s: Option<u32>,
}

/// An invitation: a link and a short code that each give one person a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Invitation {
    /// Its id (the `inv` claim of the tokens it gives).
    pub id: String,
    /// The short code a person can type (`ABCD-EFGH`).
    pub code: String,
    /// The link to send: opens the browser mode, or the app when installed.
    pub link: String,
    /// The room it admits to.
    pub room: String,
    /// The role it gives.
    pub role: Role,
    /// The name others will see.
    pub name: String,
    /// The subject of its tokens; what a resident's rules name.
    pub sub: String,
    /// Who created it (their name).
    pub created_by: String,
    /// When, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub created_at: u64,
    /// When it stops working, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub expires_at: u64,
    /// When it was withdrawn, if it was.
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub revoked_at: Option<u64>,
    /// How many times it was used to get a token.
    pub redeemed: u32,
}

/// The body of `POST /v1/redeem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Redeem {
    /// The short code or the link's last part.
    pub code: String,
}

/// What redeeming an invitation gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Redeemed {
    /// A join token for the WebSocket `hello`. Never logged.
    pub token: String,
    /// The room.
    pub room: String,
    /// The role.
    pub role: Role,
    /// The name.
    pub name: String,
    /// When the token stops working, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub expires_at: u64,
}

/// A resident's tablet, as staff see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Tablet {
    /// The tablet's subject (its token's `sub`).
    pub sub: String,
    /// The resident's name.
    pub name: String,
    /// The room it belongs to.
    pub room: String,
    /// Connected now since this time (milliseconds since the Unix epoch); `None` when offline.
    #[cfg_attr(feature = "specta", specta(type = Option<f64>))]
    pub online_since: Option<u64>,
    /// When it was last connected, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub last_seen: u64,
    /// Its last pre-call check.
    pub check: Option<CheckReport>,
    /// Its calling rules.
    pub rules: Rules,
}

/// What happened, in an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// Entered the call (directly, or when admitted).
    Joined,
    /// Checked in to the waiting room.
    Waiting,
    /// Let in from the waiting room by `by`.
    Admitted,
    /// Turned away from the waiting room by `by`.
    Denied,
    /// Left the call or the waiting room (on purpose, dropped, replaced, or the held place
    /// expired).
    Left,
    /// The room's call ended: nobody is in it any more.
    Ended,
    /// An invitation was created by `by`.
    InvitationCreated,
    /// An invitation was withdrawn by `by`.
    InvitationRevoked,
    /// A resident's rules were changed by `by`.
    RulesChanged,
}

impl AuditEvent {
    /// The event as it appears in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Joined => "joined",
            AuditEvent::Waiting => "waiting",
            AuditEvent::Admitted => "admitted",
            AuditEvent::Denied => "denied",
            AuditEvent::Left => "left",
            AuditEvent::Ended => "ended",
            AuditEvent::InvitationCreated => "invitation_created",
            AuditEvent::InvitationRevoked => "invitation_revoked",
            AuditEvent::RulesChanged => "rules_changed",
        }
    }
}

/// One audit record: who did what in which room, when. No medical content, no media, no
/// messages: names, roles, ids and times only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct AuditRecord {
    /// Increasing number of the record on this server.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub seq: u64,
    /// When, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "specta", specta(type = f64))]
    pub at: u64,
    /// What happened.
    pub event: AuditEvent,
    /// The room.
    pub room: String,
    /// Whom it concerns: subject, name and role (empty for `ended`).
    pub sub: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Option<Role>,
    /// Who did it, when someone else did (admit, deny, staff actions): subject.
    pub by_sub: Option<String>,
    /// Their name.
    pub by_name: Option<String>,
}

/// The body of every HTTP API error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ApiError {
    /// What to branch on.
    pub code: ErrorCode,
    /// A plain sentence.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight() {
        let night = QuietHours {
            from: "21:00".into(),
            to: "07:30".into(),
        };
        assert!(night.validate().is_ok());
        assert!(night.contains(21 * 60));
        assert!(night.contains(3 * 60));
        assert!(!night.contains(7 * 60 + 30));
        assert!(!night.contains(12 * 60));
        let nap = QuietHours {
            from: "13:00".into(),
            to: "14:00".into(),
        };
        assert!(nap.contains(13 * 60 + 59) && !nap.contains(14 * 60));
        for bad in ["7:00", "24:00", "12:60", "noon", ""] {
            let q = QuietHours {
                from: bad.into(),
                to: "08:00".into(),
            };
            assert!(q.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_allow_listed_callers_or_anyone() {
        let anyone = Rules::default();
        assert!(anyone.allows("x"));
        let listed = Rules {
            callers: Some(vec![Caller {
                sub: "ann".into(),
                name: "Ann".into(),
                auto_answer: true,
            }]),
            quiet_hours: None,
            kiosk: None,
        };
        assert!(listed.allows("ann") && !listed.allows("bob"));
        assert!(listed.validate().is_ok());
        let nameless = Rules {
            callers: Some(vec![Caller {
                sub: "x".into(),
                name: " ".into(),
                auto_answer: false,
            }]),
            quiet_hours: None,
            kiosk: None,
        };
        assert!(nameless.validate().is_err());
    }

    #[test]
    fn check_reports_are_flat() {
        let report = CheckReport {
            result: CheckResult {
                camera: CheckOutcome::Ok,
                microphone: CheckOutcome::Failed,
                speaker: CheckOutcome::NotUsed,
                connection: CheckOutcome::Ok,
            },
            at: 5,
        };
        assert_eq!(
            serde_json::to_value(report).unwrap(),
            serde_json::json!({"camera":"ok","microphone":"failed","speaker":"not_used","connection":"ok","at":5})
        );
    }
}
