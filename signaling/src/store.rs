//! What the server keeps across restarts: invitations, residents' tablets (their rules and last
//! check) and the audit trail, in one embedded `redb` database file (or in memory for tests).
//!
//! Every change is a [`StoreOp`] applied by [`Store::apply`], whose outcome depends only on the
//! store before it. One process applies its own changes; servers sharing rooms through NATS
//! append them to one log and each applies the whole log in order to its own copy, so every copy
//! is the same (see `backplane::nats`).
//!
//! Values are JSON of the protocol's own types, so a record reads the same on disk as on the
//! wire. Every call is blocking; async callers go through `spawn_blocking` or the hub's writer.

use std::collections::HashSet;
use std::path::Path;

use hearth_proto::care::{AuditRecord, CheckReport, Invitation, Rules, Tablet};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Invitations by id.
const INVITATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("invitations");
/// Invitation ids by normalised short code.
const CODES: TableDefinition<&str, &str> = TableDefinition::new("invitation_codes");
/// Residents' tablets by subject.
const TABLETS: TableDefinition<&str, &[u8]> = TableDefinition::new("tablets");
/// The audit trail by sequence number.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Bookkeeping: [`APPLIED`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The last position of the shared log applied to this copy.
const APPLIED: &str = "applied";

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or written.
    #[error("the data store failed: {0}")]
    Db(#[from] redb::Error),
    /// The store's shared log (NATS) could not take a change, or this server's copy did not
    /// catch up with it in time.
    #[error("the shared store: {0}")]
    Shared(String),
    /// A record did not read back (written by an incompatible version).
    #[error("a stored record could not be read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

macro_rules! db_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What happened to a resident's tablet, for [`StoreOp::Batch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TabletChange {
    /// It connected or disconnected at `at`.
    Seen {
        /// Its subject.
        sub: String,
        /// The resident's name.
        name: String,
        /// Its room.
        room: String,
        /// When, ms since the Unix epoch.
        at: u64,
    },
    /// It reported a check.
    Checked {
        /// Its subject.
        sub: String,
        /// The resident's name.
        name: String,
        /// Its room.
        room: String,
        /// What it found, and when.
        report: CheckReport,
    },
}

impl TabletChange {
    fn who(&self) -> (&str, &str, &str, u64) {
        match self {
            TabletChange::Seen {
                sub,
                name,
                room,
                at,
            } => (sub, name, room, *at),
            TabletChange::Checked {
                sub,
                name,
                room,
                report,
            } => (sub, name, room, report.at),
        }
    }
}

/// One change to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOp {
    /// A new invitation. Left out when its code is already taken: whoever made it reads it
    /// back, finds nothing and tries another code.
    Invite {
        /// The invitation.
        invitation: Invitation,
    },
    /// An invitation withdrawn at `at` (a second withdrawal keeps the first time).
    Revoke {
        /// Its id.
        id: String,
        /// When, ms since the Unix epoch.
        at: u64,
    },
    /// An invitation's code was used once more.
    Redeem {
        /// Its id.
        id: String,
    },
    /// A resident's tablet's rules; its record is made with this name and room when new.
    Rules {
        /// The tablet's subject.
        sub: String,
        /// The resident's name.
        name: String,
        /// The resident's room.
        room: String,
        /// The rules.
        rules: Rules,
    },
    /// Audit records (numbered after the last one as they are saved) and tablets seen or
    /// checked.
    Batch {
        /// The records.
        audit: Vec<AuditRecord>,
        /// The tablets' changes.
        tablets: Vec<TabletChange>,
    },
}

/// How far out of time order the audit trail may be: records are in the order servers wrote
/// them to the shared log, and a record's time is when it happened on its server.
const AUDIT_ORDER_SLACK_MS: u64 = 5 * 60 * 1000;

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only records after this sequence number (a cursor for incremental exports).
    pub after_seq: Option<u64>,
    /// Only records at or after this time, ms since the Unix epoch.
    pub since: Option<u64>,
    /// Only records before this time, ms since the Unix epoch.
    pub until: Option<u64>,
    /// Only this room.
    pub room: Option<String>,
}

impl AuditQuery {
    fn wants(&self, r: &AuditRecord) -> bool {
        self.since.is_none_or(|t| r.at >= t)
            && self.until.is_none_or(|t| r.at < t)
            && self.room.as_ref().is_none_or(|room| &r.room == room)
    }
}

/// The embedded database.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    Ok(serde_json::to_vec(value)?)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Changes (or creates, from `fresh`) one tablet's record in an open write transaction's
/// table. `online_since` is never stored: the hub knows it.
fn change_tablet(
    table: &mut redb::Table<&str, &[u8]>,
    sub: &str,
    fresh: impl FnOnce() -> Tablet,
    change: impl FnOnce(&mut Tablet),
) -> Result<Tablet, StoreError> {
    let mut tablet: Tablet = match table.get(sub)? {
        Some(v) => from_json(v.value())?,
        None => fresh(),
    };
    change(&mut tablet);
    tablet.online_since = None;
    let bytes = to_json(&tablet)?;
    table.insert(sub, bytes.as_slice())?;
    Ok(tablet)
}

/// Changes one invitation, if there is one with this id.
fn change_invitation(
    table: &mut redb::Table<&str, &[u8]>,
    id: &str,
    change: impl FnOnce(&mut Invitation),
) -> Result<(), StoreError> {
    let current: Option<Invitation> = match table.get(id)? {
        Some(v) => Some(from_json(v.value())?),
        None => None,
    };
    if let Some(mut inv) = current {
        change(&mut inv);
        let bytes = to_json(&inv)?;
        table.insert(id, bytes.as_slice())?;
    }
    Ok(())
}

/// Records a tablet seen or checked, making its record when new.
fn seen(table: &mut redb::Table<&str, &[u8]>, change: &TabletChange) -> Result<(), StoreError> {
    let (sub, name, room, at) = change.who();
    let fresh = || Tablet {
        sub: sub.to_owned(),
        name: name.to_owned(),
        room: room.to_owned(),
        online_since: None,
        last_seen: at,
        check: None,
        rules: Rules::default(),
    };
    change_tablet(table, sub, fresh, |tablet| {
        tablet.name = name.to_owned();
        tablet.room = room.to_owned();
        tablet.last_seen = tablet.last_seen.max(at);
        if let TabletChange::Checked { report, .. } = change {
            tablet.check = Some(*report);
        }
    })?;
    Ok(())
}

/// A short code as stored: upper case, letters and digits only.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The page cache of an in-memory store: its pages are in memory already, so only enough to
/// batch a transaction's writes.
const MEMORY_CACHE_BYTES: usize = 256 * 1024;
/// The page cache of a database file. redb's default is 1 GiB, a ceiling it grows into and does
/// not give back: every page written stays cached, so a server's memory would grow with its
/// audit trail (one record per join and per leave) for as long as it runs. What the server
/// reads again is small (invitations, tablets, rules, the latest audit records) and the
/// system's file cache keeps the rest. Up to half of it buffers a transaction's writes; redb
/// writes what goes beyond that to the file early.
const FILE_CACHE_BYTES: usize = 4 * 1024 * 1024;

impl Store {
    /// Opens (creating when missing) the database file at `path`, or an in-memory one.
    pub fn open(path: Option<&Path>) -> Result<Store, StoreError> {
        let db = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(redb::Error::Io(e)))?;
                }
                Database::builder()
                    .set_cache_size(FILE_CACHE_BYTES)
                    .create(path)?
            }
            // redb's page cache would hold a second copy of pages already in memory.
            None => Database::builder()
                .set_cache_size(MEMORY_CACHE_BYTES)
                .create_with_backend(redb::backends::InMemoryBackend::new())?,
        };
        let txn = db.begin_write()?;
        txn.open_table(INVITATIONS)?;
        txn.open_table(CODES)?;
        txn.open_table(TABLETS)?;
        txn.open_table(AUDIT)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Store { db })
    }

    /// Applies changes in one transaction (all or none). Each comes with its position in the
    /// shared log, and one at or before the last position applied is skipped, so a log read
    /// again applies nothing twice; position 0 is a change of this process alone.
    pub fn apply(&self, ops: &[(u64, StoreOp)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let mut applied = meta.get(APPLIED)?.map_or(0, |v| v.value());
            let mut invitations = txn.open_table(INVITATIONS)?;
            let mut codes = txn.open_table(CODES)?;
            let mut tablets = txn.open_table(TABLETS)?;
            let mut audit = txn.open_table(AUDIT)?;
            for (pos, op) in ops {
                if *pos != 0 {
                    if *pos <= applied {
                        continue;
                    }
                    applied = *pos;
                }
                match op {
                    StoreOp::Invite { invitation } => {
                        let code = normalise_code(&invitation.code);
                        if codes.get(code.as_str())?.is_none()
                            && invitations.get(invitation.id.as_str())?.is_none()
                        {
                            let bytes = to_json(invitation)?;
                            invitations.insert(invitation.id.as_str(), bytes.as_slice())?;
                            codes.insert(code.as_str(), invitation.id.as_str())?;
                        }
                    }
                    StoreOp::Revoke { id, at } => change_invitation(&mut invitations, id, |i| {
                        i.revoked_at.get_or_insert(*at);
                    })?,
                    StoreOp::Redeem { id } => change_invitation(&mut invitations, id, |i| {
                        i.redeemed = i.redeemed.saturating_add(1);
                    })?,
                    StoreOp::Rules {
                        sub,
                        name,
                        room,
                        rules,
                    } => {
                        let fresh = || Tablet {
                            sub: sub.clone(),
                            name: name.clone(),
                            room: room.clone(),
                            online_since: None,
                            last_seen: 0,
                            check: None,
                            rules: Rules::default(),
                        };
                        change_tablet(&mut tablets, sub, fresh, |t| t.rules = rules.clone())?;
                    }
                    StoreOp::Batch {
                        audit: records,
                        tablets: changes,
                    } => {
                        let mut seq = audit.last()?.map_or(0, |(k, _)| k.value());
                        for r in records {
                            seq += 1;
                            let mut r = r.clone();
                            r.seq = seq;
                            let bytes = to_json(&r)?;
                            audit.insert(seq, bytes.as_slice())?;
                        }
                        for change in changes {
                            seen(&mut tablets, change)?;
                        }
                    }
                }
            }
            meta.insert(APPLIED, applied)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The last position of the shared log applied to this copy (0: none).
    pub fn applied(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(APPLIED)?.map_or(0, |v| v.value()))
    }

    /// The invitation with this id.
    pub fn invitation(&self, id: &str) -> Result<Option<Invitation>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INVITATIONS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    /// The id of the invitation with this short code (in any case, with or without dashes).
    pub fn invitation_id_by_code(&self, code: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CODES)?;
        Ok(table
            .get(normalise_code(code).as_str())?
            .map(|v| v.value().to_owned()))
    }

    /// Every invitation, newest first.
    pub fn invitations(&self) -> Result<Vec<Invitation>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(INVITATIONS)?;
        let mut all = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            all.push(from_json::<Invitation>(v.value())?);
        }
        all.sort_by_key(|i| std::cmp::Reverse(i.created_at));
        Ok(all)
    }

    /// Ids of every withdrawn invitation, to refuse their tokens without a lookup per join.
    pub fn revoked_ids(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .invitations()?
            .into_iter()
            .filter(|i| i.revoked_at.is_some())
            .map(|i| i.id)
            .collect())
    }

    /// One tablet's record (`online_since` is not stored: the hub knows it).
    pub fn tablet(&self, sub: &str) -> Result<Option<Tablet>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLETS)?;
        match table.get(sub)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every tablet ever seen or given rules, by name.
    pub fn tablets(&self) -> Result<Vec<Tablet>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLETS)?;
        let mut all = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            all.push(from_json::<Tablet>(v.value())?);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.sub.cmp(&b.sub)));
        Ok(all)
    }

    /// Every tablet's rules, to enforce them without a lookup per message.
    pub fn all_rules(&self) -> Result<Vec<(String, Rules)>, StoreError> {
        Ok(self
            .tablets()?
            .into_iter()
            .map(|t| (t.sub, t.rules))
            .collect())
    }

    /// Up to `limit` audit records matching `query`, oldest first, starting after `after_seq`.
    /// Returns them with the last sequence number scanned (the cursor for the next page), or
    /// `None` when the trail is exhausted.
    pub fn audit_page(
        &self,
        query: &AuditQuery,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, Option<u64>), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT)?;
        let mut out = Vec::new();
        // Scanning stops after this many rows even when few match, so one page never holds the
        // read transaction for the whole trail.
        let scan_limit = limit.saturating_mul(20).max(1000);
        let mut scanned = 0;
        for row in table.range(after_seq.saturating_add(1)..)? {
            let (k, v) = row?;
            let seq = k.value();
            let record: AuditRecord = from_json(v.value())?;
            // The trail is in the shared log's order, which follows time only roughly: servers
            // write what happened a moment apart, and their clocks differ a little. Reading
            // stops only well past `until`.
            if query
                .until
                .is_some_and(|t| record.at >= t.saturating_add(AUDIT_ORDER_SLACK_MS))
            {
                return Ok((out, None));
            }
            if query.wants(&record) {
                out.push(record);
            }
            scanned += 1;
            if out.len() >= limit || scanned >= scan_limit {
                return Ok((out, Some(seq)));
            }
        }
        Ok((out, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::Role;
    use hearth_proto::care::AuditEvent;

    fn invitation(id: &str, code: &str, at: u64) -> Invitation {
        Invitation {
            id: id.into(),
            code: code.into(),
            link: format!("http://x/join/{code}"),
            room: "kim".into(),
            role: Role::Family,
            name: "Ann".into(),
            sub: format!("inv-{id}"),
            created_by: "Staff".into(),
            created_at: at,
            expires_at: at + 1000,
            revoked_at: None,
            redeemed: 0,
        }
    }

    fn record(room: &str, at: u64) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at,
            event: AuditEvent::Joined,
            room: room.into(),
            sub: "s".into(),
            name: "N".into(),
            role: Some(Role::Patient),
            by_sub: None,
            by_name: None,
        }
    }

    fn invite(inv: Invitation) -> StoreOp {
        StoreOp::Invite { invitation: inv }
    }

    fn audit(records: Vec<AuditRecord>) -> StoreOp {
        StoreOp::Batch {
            audit: records,
            tablets: Vec::new(),
        }
    }

    #[test]
    fn invitations_by_id_and_code_and_revocation() {
        let store = Store::open(None).unwrap();
        store
            .apply(&[
                (0, invite(invitation("a", "ABCD-EFGH", 1))),
                (0, invite(invitation("b", "JKMN-PQRS", 2))),
                // A code already taken: left out.
                (0, invite(invitation("c", "abcdefgh", 3))),
            ])
            .unwrap();
        assert_eq!(
            store.invitation_id_by_code("abcd efgh").unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(store.invitation_id_by_code("nope").unwrap(), None);
        assert!(store.invitation("c").unwrap().is_none());
        let ids: Vec<_> = store
            .invitations()
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        let revoke = |id: &str, at| StoreOp::Revoke { id: id.into(), at };
        store
            .apply(&[
                (0, revoke("a", 9)),
                (0, revoke("a", 12)),
                (0, revoke("zz", 1)),
            ])
            .unwrap();
        assert_eq!(store.invitation("a").unwrap().unwrap().revoked_at, Some(9));
        assert!(store.invitation("zz").unwrap().is_none());
        assert_eq!(
            store.revoked_ids().unwrap(),
            HashSet::from(["a".to_owned()])
        );
        store
            .apply(&[(0, StoreOp::Redeem { id: "b".into() })])
            .unwrap();
        assert_eq!(store.invitation("b").unwrap().unwrap().redeemed, 1);
    }

    #[test]
    fn a_shared_log_is_applied_once_in_order() {
        let store = Store::open(None).unwrap();
        assert_eq!(store.applied().unwrap(), 0);
        let log = [
            (3, invite(invitation("a", "ABCD-EFGH", 1))),
            (5, StoreOp::Redeem { id: "a".into() }),
            (8, audit(vec![record("r", 1), record("r", 2)])),
        ];
        store.apply(&log).unwrap();
        assert_eq!(store.applied().unwrap(), 8);
        // Read again after a reconnection: nothing twice; what is new goes on.
        let mut again = log.to_vec();
        again.push((9, StoreOp::Redeem { id: "a".into() }));
        store.apply(&again).unwrap();
        assert_eq!(store.applied().unwrap(), 9);
        assert_eq!(store.invitation("a").unwrap().unwrap().redeemed, 2);
        let (records, _) = store.audit_page(&AuditQuery::default(), 0, 10).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn audit_pages_in_order_with_filters() {
        let store = Store::open(None).unwrap();
        let batch: Vec<_> = (0..25)
            .map(|i| record(if i % 2 == 0 { "a" } else { "b" }, 100 + i))
            .collect();
        store.apply(&[(0, audit(batch))]).unwrap();
        store.apply(&[(0, audit(vec![record("a", 200)]))]).unwrap();
        let (all, _) = store.audit_page(&AuditQuery::default(), 0, 100).unwrap();
        assert_eq!(all.len(), 26);
        assert_eq!((all[0].seq, all[24].seq, all[25].seq), (1, 25, 26));

        let q = AuditQuery {
            room: Some("a".into()),
            since: Some(104),
            until: Some(120),
            ..AuditQuery::default()
        };
        let (page, cursor) = store.audit_page(&q, 0, 3).unwrap();
        assert_eq!(
            page.iter().map(|r| r.at).collect::<Vec<_>>(),
            [104, 106, 108]
        );
        let (rest, end) = store.audit_page(&q, cursor.unwrap(), 100).unwrap();
        assert_eq!(
            rest.iter().map(|r| r.at).collect::<Vec<_>>(),
            [110, 112, 114, 116, 118]
        );
        assert_eq!(end, None);
    }

    #[test]
    fn until_finds_records_written_after_a_later_one() {
        let store = Store::open(None).unwrap();
        // Two servers: the second's record of 110 reached the log after the first's of 130.
        let batch = vec![
            record("a", 100),
            record("a", 130),
            record("a", 110),
            record("a", 1_000_000),
            record("a", 115),
        ];
        store.apply(&[(0, audit(batch))]).unwrap();
        let q = AuditQuery {
            until: Some(120),
            ..AuditQuery::default()
        };
        let (page, end) = store.audit_page(&q, 0, 100).unwrap();
        assert_eq!(page.iter().map(|r| r.at).collect::<Vec<_>>(), [100, 110]);
        assert_eq!(end, None, "well past `until`, reading stops");
    }

    #[test]
    fn records_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hearth.redb");
        {
            let store = Store::open(Some(&path)).unwrap();
            let seen = |at| TabletChange::Seen {
                sub: "t1".into(),
                name: "Mrs Kim".into(),
                room: "kim".into(),
                at,
            };
            store
                .apply(&[
                    (1, invite(invitation("a", "ABCD-EFGH", 1))),
                    (
                        2,
                        StoreOp::Batch {
                            audit: vec![record("a", 1)],
                            tablets: vec![seen(1), seen(5)],
                        },
                    ),
                ])
                .unwrap();
        }
        let store = Store::open(Some(&path)).unwrap();
        assert_eq!(store.applied().unwrap(), 2);
        assert!(store.invitation("a").unwrap().is_some());
        assert_eq!(
            store
                .audit_page(&AuditQuery::default(), 0, 10)
                .unwrap()
                .0
                .len(),
            1
        );
        assert_eq!(store.tablet("t1").unwrap().unwrap().last_seen, 5);
    }
}
