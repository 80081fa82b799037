//! The Raft state machine, generic over the application's state. Commands arrive as CBOR
//! bytes in committed log order and are applied to `S`; a snapshot is the CBOR of `S`
//! (persisted in the node's database, so a restarted node resumes from it and re-applies
//! only the committed entries after it).
//!
//! The invariant: the state is exactly the snapshot plus the committed entries after it,
//! applied in order — on every node.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::planted::{active, Bug};
use crate::store::{from_cbor, to_cbor, Store, StoreError, SNAPSHOT};
use crate::types::{LogId, Reply, SnapshotMeta, StoredMembership, TypeConfig};

/// What a replicated application state is: a deterministic function of its commands.
pub trait AppState: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// A change to the state.
    type Command: Serialize + DeserializeOwned + Send;
    /// What applying a command answers.
    type Response: Serialize + DeserializeOwned + Default + Send;
    /// Apply one committed command. Must be deterministic: the same commands in the same
    /// order give the same state on every node, and total: no command may panic.
    fn apply(&mut self, cmd: Self::Command) -> Self::Response;

    /// The answer for a command whose `apply` panicked anyway (see [`apply_caught`]).
    fn panicked(why: String) -> Self::Response {
        let _ = why;
        Self::Response::default()
    }
}

/// Apply `cmd`, catching a panic: a bug that lets one command panic would otherwise stop
/// every replica on the same entry, and again at each restart as the log replays — a
/// cluster that only a hand-edited database could bring back. Caught, the command is logged
/// as an error and answered as refused, and the replica applies the next one. What the
/// command changed before it panicked stays changed, alike on every replica (apply is
/// deterministic), so replicas still agree.
pub fn apply_caught<S: AppState>(state: &mut S, cmd: S::Command, index: u64) -> S::Response {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.apply(cmd))) {
        Ok(r) => r,
        Err(p) => {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            tracing::error!(index, panic = %why, "applying a committed command panicked; it is skipped on every replica alike (a bug: please report it)");
            S::panicked(format!("applying this command panicked: {why}"))
        }
    }
}

/// The applied state and where in the log it stands.
#[derive(Debug, Default)]
pub struct Applied<S> {
    /// The application state.
    pub state: S,
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership,
}

#[derive(Serialize, Deserialize)]
struct PersistedSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// openraft's state machine over `S`.
pub struct StateMachine<S: AppState> {
    applied: Arc<RwLock<Applied<S>>>,
    store: Store,
}

impl<S: AppState> StateMachine<S> {
    /// Open the state machine from the last persisted snapshot (or empty).
    pub fn open(store: Store) -> Result<Self, StoreError> {
        let mut applied = Applied::<S>::default();
        if let Some(bytes) = store.get_meta(SNAPSHOT)? {
            let snap: PersistedSnapshot = from_cbor(&bytes)?;
            if !active(Bug::SnapshotIgnored) {
                applied.state = from_cbor(&snap.data)?;
            }
            applied.last_applied = snap.meta.last_log_id;
            applied.membership = snap.meta.last_membership;
        }
        Ok(StateMachine {
            applied: Arc::new(RwLock::new(applied)),
            store,
        })
    }

    /// A shared handle on the applied state, for readers outside Raft.
    pub fn applied(&self) -> Arc<RwLock<Applied<S>>> {
        Arc::clone(&self.applied)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied<S>> {
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied<S>> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds a snapshot of the state as it is when the builder is made.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    data: Vec<u8>,
    store: Store,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>, io::Error> {
        let persisted = PersistedSnapshot {
            meta: self.meta.clone(),
            data: self.data.clone(),
        };
        self.store.put_meta(SNAPSHOT, Some(&to_cbor(&persisted)))?;
        Ok(openraft::Snapshot {
            meta: self.meta.clone(),
            snapshot: Cursor::new(self.data.clone()),
        })
    }
}

impl<S: AppState> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let a = self.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Planted (simulator only): the first command of a batch waits for the next one.
        let mut held: Option<S::Command> = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = {
                let mut a = self.write();
                a.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Reply::default(),
                    EntryPayload::Normal(cmd) => match from_cbor::<S::Command>(&cmd.0) {
                        Ok(cmd) if active(Bug::ApplyOutOfOrder) => match held.take() {
                            None => {
                                held = Some(cmd);
                                Reply(to_cbor(&S::Response::default()))
                            }
                            Some(first) => {
                                let index = entry.log_id.index;
                                let reply = apply_caught(&mut a.state, cmd, index);
                                apply_caught(&mut a.state, first, index);
                                Reply(to_cbor(&reply))
                            }
                        },
                        Ok(cmd) => Reply(to_cbor(&apply_caught(
                            &mut a.state,
                            cmd,
                            entry.log_id.index,
                        ))),
                        Err(e) => {
                            // A command this build cannot read (a newer node's?) changes nothing
                            // here; say so loudly rather than diverge silently.
                            tracing::error!(index = entry.log_id.index, error = %e, "skipping a command that does not decode");
                            Reply(to_cbor(&S::Response::default()))
                        }
                    },
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        Reply::default()
                    }
                }
            };
            if let Some(r) = responder {
                r.send(reply);
            }
        }
        if let Some(first) = held {
            let index = self.read().last_applied.map_or(0, |l| l.index);
            apply_caught(&mut self.write().state, first, index);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let a = self.read();
        SnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id: a.last_applied,
                last_membership: a.membership.clone(),
            },
            data: to_cbor(&a.state),
            store: self.store.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Cursor<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let state: S = from_cbor(&data)?;
        let persisted = PersistedSnapshot {
            meta: meta.clone(),
            data,
        };
        self.store.put_meta(SNAPSHOT, Some(&to_cbor(&persisted)))?;
        let mut a = self.write();
        if !active(Bug::SnapshotIgnored) {
            a.state = state;
        }
        a.last_applied = meta.last_log_id;
        a.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>, io::Error> {
        let Some(bytes) = self.store.get_meta(SNAPSHOT)? else {
            return Ok(None);
        };
        let snap: PersistedSnapshot = from_cbor(&bytes)?;
        Ok(Some(openraft::Snapshot {
            meta: snap.meta,
            snapshot: Cursor::new(snap.data),
        }))
    }
}
