//! Who a device may call, with presence: the people in its room, merged with the people the
//! device knows by name, who show as offline when they are not connected (a tablet's family,
//! the residents a relative's device has seen).

use crate::settings::KnownContact;
use crate::state::{Contact, Presence};
use hearth_proto::Role;

/// Someone connected to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPeer {
    /// Their connection id.
    pub peer: String,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// They said they are in a call.
    pub in_call: bool,
    /// Their token's subject (what a resident's rules name).
    pub sub: String,
}

/// Whom `me` may call among the people in its room: residents call family, clinicians, staff and
/// guests; a clinician brings anyone but staff into a consult; family and everyone else call
/// residents.
fn callable(me: Role, them: Role) -> bool {
    match me {
        Role::Resident => them != Role::Resident && them != Role::Patient,
        Role::Clinician => them != Role::Staff,
        _ => them == Role::Resident,
    }
}

/// The contact list for a device of `role`, sorted: known contacts in the order staff put
/// them, then others by name. A name with several connections (two devices) shows once,
/// available if any of them is free. With `allowed` (a resident's rules), only people whose
/// subject is listed appear.
pub fn contacts(
    role: Role,
    peers: &[RoomPeer],
    known: &[KnownContact],
    allowed: Option<&[String]>,
    has_photo: impl Fn(&KnownContact) -> bool,
) -> Vec<Contact> {
    // The people a device knows are the ones it calls: family for a tablet, residents for
    // everyone else.
    let known_role = if role == Role::Resident {
        Role::Family
    } else {
        Role::Resident
    };
    let mut out: Vec<Contact> = known
        .iter()
        .map(|k| Contact {
            key: k.name.clone(),
            name: k.name.clone(),
            role: known_role,
            presence: Presence::Offline,
            peer: None,
            has_photo: has_photo(k),
            trusted: k.trusted,
        })
        .collect();
    let known_count = out.len();
    let may = |p: &RoomPeer| allowed.is_none_or(|subs| subs.contains(&p.sub));
    for p in peers.iter().filter(|p| callable(role, p.role) && may(p)) {
        let presence = if p.in_call {
            Presence::InCall
        } else {
            Presence::Available
        };
        match out.iter_mut().find(|c| c.key == p.name) {
            Some(c) => {
                c.role = p.role;
                let better = c.peer.is_none()
                    || (c.presence == Presence::InCall && presence == Presence::Available);
                if better {
                    c.presence = presence;
                    c.peer = Some(p.peer.clone());
                }
            }
            None => out.push(Contact {
                key: p.name.clone(),
                name: p.name.clone(),
                role: p.role,
                presence,
                peer: Some(p.peer.clone()),
                has_photo: false,
                trusted: false,
            }),
        }
    }
    out[known_count..].sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, name: &str, role: Role, in_call: bool) -> RoomPeer {
        RoomPeer {
            peer: id.into(),
            name: name.into(),
            role,
            in_call,
            sub: format!("sub-{id}"),
        }
    }

    #[test]
    fn merges_known_people_with_the_room() {
        let known = vec![
            KnownContact {
                name: "Ann".into(),
                photo: Some("/p/ann.jpg".into()),
                trusted: true,
                sub: None,
            },
            KnownContact {
                name: "Bo".into(),
                photo: None,
                trusted: false,
                sub: None,
            },
        ];
        let peers = vec![
            peer("p3", "Zed", Role::Clinician, false),
            peer("p1", "Ann", Role::Family, true),
            peer("p2", "Ann", Role::Family, false),
            peer("p4", "Mrs Kim", Role::Resident, false),
            peer("p5", "Cy", Role::Family, false),
        ];
        let list = contacts(Role::Resident, &peers, &known, None, |k| k.photo.is_some());
        let names: Vec<_> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Ann", "Bo", "Cy", "Zed"]);
        assert_eq!(list[0].presence, Presence::Available);
        assert_eq!(list[0].peer.as_deref(), Some("p2"));
        assert!(list[0].has_photo && list[0].trusted);
        assert_eq!(list[1].presence, Presence::Offline);
        assert_eq!(list[1].peer, None);

        let family = contacts(Role::Family, &peers, &[], None, |_| false);
        assert_eq!(family.len(), 1);
        assert_eq!(family[0].name, "Mrs Kim");

        // A clinician may bring anyone in the room into the consult.
        let doctor = contacts(Role::Clinician, &peers, &[], None, |_| false);
        assert_eq!(doctor.len(), 4);

        // Staff rules list only Cy: the others in the room do not show on the tablet.
        let allowed = vec!["sub-p5".to_owned()];
        let ruled = contacts(Role::Resident, &peers, &[], Some(&allowed), |_| false);
        let names: Vec<_> = ruled.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Cy"]);
    }
}
