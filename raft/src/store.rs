//! The node's redb file: Raft log, vote, committed index, the last snapshot, and a small
//! metadata table for the node itself (its cluster id).
//!
//! The invariant: every write is a redb transaction committed with immediate durability
//! before it is reported done, so what openraft was told is on disk survives `kill -9`.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{Entry, LogId, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "raft.vote";
const COMMITTED: &str = "raft.committed";
const PURGED: &str = "raft.last_purged";
/// Key of the persisted snapshot (used by the state machine).
pub(crate) const SNAPSHOT: &str = "raft.snapshot";

/// Storage errors, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the node's database {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// What redb said.
        message: String,
    },
    /// A read or write failed.
    #[error("database {0}")]
    Io(String),
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

fn db_err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |e| StoreError::Io(format!("{what}: {e}"))
}

/// Encode a value as CBOR.
pub fn to_cbor<T: Serialize>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    ciborium::into_writer(v, &mut buf).expect("CBOR encoding into a Vec cannot fail");
    buf
}

/// Decode a CBOR value.
pub fn from_cbor<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    ciborium::from_reader(b).map_err(|e| StoreError::Io(format!("corrupt record: {e}")))
}

/// The node's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// Open (or create) the database file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::init(db)
    }

    /// A database in memory (tests and simulations).
    pub fn in_memory() -> Result<Store, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| StoreError::Open {
                path: "(memory)".into(),
                message: e.to_string(),
            })?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Store, StoreError> {
        let txn = db.begin_write().map_err(|e| db_err("begin")(&e))?;
        txn.open_table(LOG)
            .map_err(|e| db_err("creating the log table")(&e))?;
        txn.open_table(META)
            .map_err(|e| db_err("creating the meta table")(&e))?;
        txn.commit().map_err(|e| db_err("commit")(&e))?;
        Ok(Store { db: Arc::new(db) })
    }

    /// A metadata value.
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_err("begin read")(&e))?;
        let table = txn.open_table(META).map_err(|e| db_err("open meta")(&e))?;
        let v = table.get(key).map_err(|e| db_err("read meta")(&e))?;
        Ok(v.map(|g| g.value().to_vec()))
    }

    /// Set (or with `None`, remove) a metadata value, durably.
    pub fn put_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| db_err("begin write")(&e))?;
        {
            let mut table = txn.open_table(META).map_err(|e| db_err("open meta")(&e))?;
            match value {
                Some(v) => table.insert(key, v).map(|_| ()),
                None => table.remove(key).map(|_| ()),
            }
            .map_err(|e| db_err("write meta")(&e))?;
        }
        txn.commit().map_err(|e| db_err("commit meta")(&e))
    }

    fn get_typed<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.get_meta(key)?.map(|b| from_cbor(&b)).transpose()
    }

    /// Whether this database has ever held Raft state (a vote or a log entry).
    pub fn has_raft_state(&self) -> Result<bool, StoreError> {
        if self.get_meta(VOTE)?.is_some() {
            return Ok(true);
        }
        let txn = self.db.begin_read().map_err(|e| db_err("begin read")(&e))?;
        let table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
        let first = table.first().map_err(|e| db_err("read log")(&e))?;
        Ok(first.is_some())
    }

    /// The log and vote store openraft drives.
    pub fn log_store(&self) -> LogStore {
        LogStore {
            store: self.clone(),
        }
    }
}

/// openraft's log storage over the node's database.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    fn db(&self) -> &Database {
        &self.store.db
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(*x),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(x) => Some(x - 1),
            Bound::Unbounded => None,
        };
        if end.is_some_and(|e| e < start) {
            return Ok(Vec::new());
        }
        let txn = self
            .db()
            .begin_read()
            .map_err(|e| db_err("begin read")(&e))?;
        let table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
        let iter = match end {
            Some(e) => table.range(start..=e),
            None => table.range(start..),
        }
        .map_err(|e| db_err("read log")(&e))?;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(|e| db_err("read log")(&e))?;
            out.push(from_cbor(v.value())?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.store.get_typed(VOTE)?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.store.get_typed(PURGED)?;
        let txn = self
            .db()
            .begin_read()
            .map_err(|e| db_err("begin read")(&e))?;
        let table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
        let last = table.last().map_err(|e| db_err("read log")(&e))?;
        let last_log_id = match last {
            Some((_, v)) => Some(from_cbor::<Entry>(v.value())?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.store.put_meta(VOTE, Some(&to_cbor(vote)))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = committed.map(|c| to_cbor(&c));
        Ok(self.store.put_meta(COMMITTED, bytes.as_deref())?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.store.get_typed(COMMITTED)?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| db_err("begin write")(&e))?;
        {
            let mut table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
            for entry in entries {
                table
                    .insert(entry.log_id.index, to_cbor(&entry).as_slice())
                    .map_err(|e| db_err("append")(&e))?;
            }
        }
        let result = txn
            .commit()
            .map_err(|e| io::Error::other(format!("commit log: {e}")));
        let failed = result
            .as_ref()
            .err()
            .map(|e| io::Error::other(e.to_string()));
        callback.io_completed(result);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| db_err("begin write")(&e))?;
        {
            let mut table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
            table
                .retain_in(from.., |_, _| false)
                .map_err(|e| db_err("truncate")(&e))?;
        }
        txn.commit().map_err(|e| db_err("commit truncate")(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let txn = self
            .db()
            .begin_write()
            .map_err(|e| db_err("begin write")(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| db_err("open meta")(&e))?;
            meta.insert(PURGED, to_cbor(&log_id).as_slice())
                .map_err(|e| db_err("purge")(&e))?;
            let mut table = txn.open_table(LOG).map_err(|e| db_err("open log")(&e))?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(|e| db_err("purge")(&e))?;
        }
        txn.commit().map_err(|e| db_err("commit purge")(&e))?;
        Ok(())
    }
}
