//! A simulated node as the host of the daemon's manager and worker loops: its Raft, its
//! heartbeats heard, and tasks as the simulator runs them — a seeded delay, then the job's
//! native app in memory over objects in the node's in-memory store, fetched from and copied
//! to other nodes over simulated data messages.

use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{self, Applied as JobsApplied, NodeId, TaskKind};
use shoal_jobs::counters::Counters;
use shoal_jobs::scheduler::NodeSlots;
use shoal_node::cluster::propose::ProposeError;
use shoal_node::cluster::state::Command;
use shoal_node::control::manager::{ManagerHost, Outlook};
use shoal_node::control::work::{AttemptState, Done, Failure, Work};
use shoal_node::control::worker::WorkerHost;
use shoal_raft::ServerState;
use std::collections::BTreeMap;

use crate::compute::{map_split, reduce};
use crate::node::{
    map_key, part_key, split_key, SimNode, World, FETCH_TIMEOUT, NODE_TIMEOUT, SLOTS,
};
use crate::world::lock;
use crate::world::{Answer, Msg};

/// The simulator's worker host: the daemon's worker loop ([`run_on`](shoal_node::control::worker::run_on)) over the simulated
/// network, the node's in-memory object store, and tasks that run the job's native app in
/// memory after a seeded delay.
impl WorkerHost for SimNode {
    fn id_and_boot(&self) -> (NodeId, u64) {
        (self.id, self.boot_ms)
    }

    fn now_ms(&self) -> u64 {
        self.world.now_ms()
    }

    async fn table_changes(&self) -> shoal_node::cluster::node::TableChanges {
        shoal_node::cluster::node::TableChanges::new(
            self.raft.metrics(),
            Some(self.pushed.changes()),
        )
    }

    /// The applied table on a member, the pushed one on a plain worker (as the daemon's).
    fn read_table<T>(&self, f: impl FnOnce(&cluster::Cluster, Option<u64>) -> T) -> T {
        if self.is_plain() {
            return self.pushed.read(|t| match t {
                Some(t) => f(&t.jobs, Some(t.index)),
                None => f(&cluster::Cluster::default(), None),
            });
        }
        let a = self.applied.read().unwrap_or_else(|p| p.into_inner());
        f(&a.state.state.jobs, a.last_applied.map(|l| l.index))
    }

    async fn propose(
        &self,
        cmd: &Command,
        patience: Duration,
    ) -> Result<JobsApplied, ProposeError> {
        shoal_node::cluster::propose::propose(self, cmd, patience)
            .await
            .map(|(a, _)| a)
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        SimNode::spawn(self, f)
    }

    async fn execute(self: Arc<Self>, w: Work, st: Arc<AttemptState>) -> Result<Done, Failure> {
        let k = &w.key;
        let waited = self.world.now_ms().saturating_sub(w.assigned_ms);
        self.world.count(|s| s.assigned_ms.push(waited));
        let slow = self.world.rng(|r| r.chance(0.03));
        let ms = self.world.rng(|r| {
            if slow {
                r.between(15_000, 30_000)
            } else {
                r.between(200, 2_500)
            }
        });
        self.world.trace(format!(
            "n{} starts {} {:?} {} attempt {} ({ms} ms)",
            self.id, k.job, k.kind, k.index, k.attempt
        ));
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if st.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Failure::lost("stopped".into()));
        }
        let app = match &w.spec.kind {
            shoal_jobs::spec::JobKind::App(name) => shoal_jobs::apps::by_name(name, &w.spec.env)
                .map_err(|e| Failure::from(e.to_string()))?,
            _ => return Err("the simulator runs native apps only".into()),
        };
        match k.kind {
            TaskKind::Map => self.map_attempt(&w, app.as_ref()).await,
            TaskKind::Reduce => self.reduce_attempt(&w, app.as_ref()).await,
        }
    }

    fn clean(self: Arc<Self>, job: String, keep: Option<Vec<(u32, u32)>>) {
        // The store's own rule of what stays, over the simulated store's keys.
        let keep = keep.unwrap_or_default();
        lock(&self.blobs).retain(|key, _| shoal_node::storage::kept_after_job(&job, key, &keep));
    }
}

/// The daemon's manager loop on a simulated node: every member counts with `SLOTS` slots,
/// nothing is forgotten, and each proposal is counted and traced.
impl ManagerHost for SimNode {
    fn leads(&self) -> bool {
        let m = self.metrics();
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }

    fn outlook(&self) -> Outlook {
        let workers: Vec<NodeId> = {
            let a = self.applied.read().unwrap_or_else(|p| p.into_inner());
            a.state.state.workers.keys().copied().collect()
        };
        Outlook {
            me: self.id,
            members: self
                .metrics()
                .membership_config
                .membership()
                .nodes()
                .map(|(&id, _)| id)
                .chain(workers)
                .map(|node| NodeSlots { node, slots: SLOTS })
                .collect(),
            node_timeout: NODE_TIMEOUT,
            retain_jobs: usize::MAX,
            now_ms: self.world.now_ms(),
        }
    }

    fn heard(&self) -> BTreeMap<NodeId, tokio::time::Instant> {
        self.heartbeats
            .locked()
            .iter()
            .map(|(id, (at, _))| (*id, *at))
            .collect()
    }

    async fn propose_here(&self, cmd: &Command) -> Result<(), ProposeError> {
        self.world.count(|s| s.proposals += 1);
        self.world
            .trace(format!("n{} manager proposes {}", self.id, describe(cmd)));
        // The daemon's manager proposes once, as here.
        shoal_node::cluster::propose::propose_once(self, cmd)
            .await
            .map(|_| ())
    }
}

fn describe(cmd: &Command) -> String {
    match cmd {
        Command::Batch(cs) => format!("{} assignments", cs.len()),
        Command::Jobs(cluster::Command::NodeLost { node, .. }) => format!("node {node} lost"),
        Command::Jobs(c) => format!("{c:?}").chars().take(60).collect(),
        Command::Init { .. } => "init".into(),
        Command::Worker { node_id, .. } => format!("plain worker {node_id}"),
        Command::DropWorker { node_id } => format!("drop plain worker {node_id}"),
    }
}

impl SimNode {
    /// A copy of `key` whose bytes match `want` (the checksum the job table recorded): this
    /// node's own, or one fetched from a holder. A copy that does not match is passed over,
    /// as the daemon's readers do.
    pub(crate) async fn object(
        &self,
        key: &str,
        holders: &[NodeId],
        want: Option<u32>,
    ) -> Option<Arc<Vec<u8>>> {
        let trust = shoal_jobs::planted::active(shoal_jobs::planted::Bug::TrustCorruptCopies);
        let intact = |b: &Arc<Vec<u8>>| {
            let ok = trust || want.is_none_or(|w| w == shoal_jobs::checksum::of(b));
            if !ok {
                self.world.count(|s| s.corrupt_caught += 1);
                self.world
                    .trace(format!("n{} passes over a corrupt copy of {key}", self.id));
            }
            ok
        };
        let local = lock(&self.blobs).get(key).cloned();
        let mut found = local.filter(intact);
        for &h in holders.iter().filter(|&&h| h != self.id) {
            if found.is_some() {
                break;
            }
            let to = World::index(h);
            let msg = Msg::Fetch(key.to_string());
            if let Some(Answer::Fetched(Some(b))) =
                self.world.exchange(self.idx, to, msg, FETCH_TIMEOUT).await
            {
                found = Some(b).filter(intact);
            }
        }
        if let Some(b) = &found {
            crate::invariants::reads_match_checksums(&self.world, key, want, b);
        }
        found
    }

    async fn map_attempt(
        &self,
        w: &Work,
        app: &dyn shoal_jobs::apps::App,
    ) -> Result<Done, Failure> {
        let k = &w.key;
        let split = w.split.as_ref().ok_or("no such split")?;
        let Some(text) = self
            .object(&split_key(&k.job, k.index), &split.holders, split.checksum)
            .await
        else {
            // As the node's map: a split no holder gives counts against the task's attempts.
            return Err(Failure::from("its split could not be read"));
        };
        let parts = map_split(
            app,
            split.name.as_bytes(),
            &text,
            &w.partitioner,
            w.spec.reducers,
        );
        let (mut sizes, mut checksums) = (Vec::new(), Vec::new());
        for (p, bytes) in parts.into_iter().enumerate() {
            sizes.push(bytes.len() as u64);
            checksums.push(shoal_jobs::checksum::of(&bytes));
            lock(&self.blobs).insert(
                map_key(&k.job, k.index, k.attempt, p as u32),
                Arc::new(bytes),
            );
        }
        Ok(Done {
            sizes,
            checksums,
            holders: Vec::new(),
            counters: Counters::default(),
        })
    }

    async fn reduce_attempt(
        &self,
        w: &Work,
        app: &dyn shoal_jobs::apps::App,
    ) -> Result<Done, Failure> {
        let k = &w.key;
        let outputs = w
            .inputs
            .as_ref()
            .map_err(|why| Failure::lost(why.clone()))?;
        let mut inputs = Vec::new();
        for mo in outputs {
            let key = map_key(&k.job, mo.map, mo.attempt, k.index);
            match self.object(&key, &[mo.node], mo.checksum).await {
                Some(b) => inputs.push(b),
                None => {
                    let why = format!(
                        "map {} attempt {} output could not be fetched",
                        mo.map, mo.attempt
                    );
                    return Err(Failure {
                        lost_map: Some((mo.map, mo.attempt)),
                        ..Failure::lost(why)
                    });
                }
            }
        }
        let part = Arc::new(reduce(app, &inputs));
        let (size, checksum) = (part.len() as u64, shoal_jobs::checksum::of(&part));
        let holders = self
            .store_replicated(&part_key(&k.job, k.index, k.attempt), part, 1)
            .await;
        if holders.len() == 1 && self.world.machines.len() > 1 {
            // As the daemon's worker: a part file on one disk only is not a finished reduce.
            return Err(Failure::lost("the part file could not be copied".into()));
        }
        Ok(Done {
            sizes: vec![size],
            checksums: vec![checksum],
            holders,
            counters: Counters::default(),
        })
    }
}
