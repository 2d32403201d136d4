//! What the server keeps across restarts: invitations, residents' tablets (their rules and last
//! check) and the audit trail, in one embedded `redb` database file (or in memory for tests).
//!
//! Values are JSON of the protocol's own types, so a record reads the same on disk as on the
//! wire. Every call is blocking; async callers go through `spawn_blocking` or the hub's writer.

use std::collections::HashSet;
use std::path::Path;

use hearth_proto::care::{AuditRecord, CheckReport, Invitation, Rules, Tablet};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Invitations by id.
const INVITATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("invitations");
/// Invitation ids by normalised short code.
const CODES: TableDefinition<&str, &str> = TableDefinition::new("invitation_codes");
/// Residents' tablets by subject.
const TABLETS: TableDefinition<&str, &[u8]> = TableDefinition::new("tablets");
/// The audit trail by sequence number.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or written.
    #[error("the data store failed: {0}")]
    Db(#[from] redb::Error),
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

/// What happened to a resident's tablet, for [`Store::save_batch`].
#[derive(Debug, Clone)]
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

/// A short code as stored: upper case, letters and digits only.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Store {
    /// Opens (creating when missing) the database file at `path`, or an in-memory one.
    pub fn open(path: Option<&Path>) -> Result<Store, StoreError> {
        let db = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(redb::Error::Io(e)))?;
                }
                Database::create(path)?
            }
            None => {
                Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?
            }
        };
        let txn = db.begin_write()?;
        txn.open_table(INVITATIONS)?;
        txn.open_table(CODES)?;
        txn.open_table(TABLETS)?;
        txn.open_table(AUDIT)?;
        txn.commit()?;
        Ok(Store { db })
    }

    /// Saves an invitation (new or changed) and indexes its code.
    pub fn put_invitation(&self, inv: &Invitation) -> Result<(), StoreError> {
        let bytes = to_json(inv)?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(INVITATIONS)?
                .insert(inv.id.as_str(), bytes.as_slice())?;
            txn.open_table(CODES)?
                .insert(normalise_code(&inv.code).as_str(), inv.id.as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Changes one invitation inside a write transaction; `None` when there is no such id.
    pub fn update_invitation(
        &self,
        id: &str,
        change: impl FnOnce(&mut Invitation),
    ) -> Result<Option<Invitation>, StoreError> {
        let txn = self.db.begin_write()?;
        let updated = {
            let mut table = txn.open_table(INVITATIONS)?;
            let current: Option<Invitation> = match table.get(id)? {
                Some(v) => Some(from_json(v.value())?),
                None => None,
            };
            match current {
                Some(mut inv) => {
                    change(&mut inv);
                    let bytes = to_json(&inv)?;
                    table.insert(id, bytes.as_slice())?;
                    Some(inv)
                }
                None => None,
            }
        };
        txn.commit()?;
        Ok(updated)
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

    /// Changes (or creates, from `fresh`) one tablet's record inside a write transaction.
    pub fn update_tablet(
        &self,
        sub: &str,
        fresh: impl FnOnce() -> Tablet,
        change: impl FnOnce(&mut Tablet),
    ) -> Result<Tablet, StoreError> {
        let txn = self.db.begin_write()?;
        let tablet = change_tablet(&mut txn.open_table(TABLETS)?, sub, fresh, change)?;
        txn.commit()?;
        Ok(tablet)
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

    /// Saves audit records (numbered after the last one) and tablet changes in one transaction:
    /// all of them or none, so a retry after a failure cannot record anything twice.
    pub fn save_batch(
        &self,
        audit: &mut [AuditRecord],
        tablets: &[TabletChange],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(AUDIT)?;
            let mut seq = table.last()?.map_or(0, |(k, _)| k.value());
            for r in audit.iter_mut() {
                seq += 1;
                r.seq = seq;
                let bytes = to_json(r)?;
                table.insert(seq, bytes.as_slice())?;
            }
            let mut table = txn.open_table(TABLETS)?;
            for change in tablets {
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
                change_tablet(&mut table, sub, fresh, |tablet| {
                    tablet.name = name.to_owned();
                    tablet.room = room.to_owned();
                    tablet.last_seen = tablet.last_seen.max(at);
                    if let TabletChange::Checked { report, .. } = change {
                        tablet.check = Some(*report);
                    }
                })?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Appends audit records in one transaction, numbering them after the last one.
    pub fn append_audit(&self, records: &mut [AuditRecord]) -> Result<(), StoreError> {
        self.save_batch(records, &[])
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
            if query.until.is_some_and(|t| record.at >= t) {
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

    #[test]
    fn invitations_by_id_and_code_and_revocation() {
        let store = Store::open(None).unwrap();
        store
            .put_invitation(&invitation("a", "ABCD-EFGH", 1))
            .unwrap();
        store
            .put_invitation(&invitation("b", "JKMN-PQRS", 2))
            .unwrap();
        assert_eq!(
            store.invitation_id_by_code("abcd efgh").unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(store.invitation_id_by_code("nope").unwrap(), None);
        let ids: Vec<_> = store
            .invitations()
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        let revoked = store
            .update_invitation("a", |i| i.revoked_at = Some(9))
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(9));
        assert!(store.update_invitation("zz", |_| {}).unwrap().is_none());
        assert_eq!(
            store.revoked_ids().unwrap(),
            HashSet::from(["a".to_owned()])
        );
    }

    #[test]
    fn audit_pages_in_order_with_filters() {
        let store = Store::open(None).unwrap();
        let mut batch: Vec<_> = (0..25)
            .map(|i| record(if i % 2 == 0 { "a" } else { "b" }, 100 + i))
            .collect();
        store.append_audit(&mut batch).unwrap();
        assert_eq!(batch[0].seq, 1);
        assert_eq!(batch[24].seq, 25);
        let mut more = vec![record("a", 200)];
        store.append_audit(&mut more).unwrap();
        assert_eq!(more[0].seq, 26);

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
    fn records_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hearth.redb");
        {
            let store = Store::open(Some(&path)).unwrap();
            store
                .put_invitation(&invitation("a", "ABCD-EFGH", 1))
                .unwrap();
            store.append_audit(&mut [record("a", 1)]).unwrap();
            store
                .update_tablet(
                    "t1",
                    || Tablet {
                        sub: "t1".into(),
                        name: "Mrs Kim".into(),
                        room: "kim".into(),
                        online_since: None,
                        last_seen: 1,
                        check: None,
                        rules: Rules::default(),
                    },
                    |t| t.last_seen = 5,
                )
                .unwrap();
        }
        let store = Store::open(Some(&path)).unwrap();
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
