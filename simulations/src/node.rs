//! One simulated Shoal node: real openraft over the real state machine and job table
//! (wrapped to record a hash chain of what it applied), the real manager decision
//! ([`shoal_node::control::manager::decide`]), the daemon's own worker loop
//! ([`shoal_node::control::worker::run_on`]: what to start, stop, report lost and clean up,
//! the report batching), Raft RPCs through the node's own [`NetRpc`] over a simulated
//! [`Transport`] — and, in place of the processes and files a daemon has, tasks that run
//! the job's native app in memory after a seeded delay, over an in-memory object store.
//!
//! The invariant: a crash aborts every task this node spawned and shuts its Raft down;
//! what survives is exactly what a disk would keep — the redb store and the objects.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_jobs::cluster::{Applied as JobsApplied, NodeId};
use shoal_jobs::partition::stable_hash;
use shoal_net::wire::{CtlRequest, CtlResponse, Heartbeat, RaftRequest, RaftResponse, Reason};
use shoal_net::{codec, NetError, PeerRef, Transport};
use shoal_node::cluster::answers;
use shoal_node::cluster::heartbeats::HeartbeatBook;
use shoal_node::cluster::propose::Proposer;
use shoal_node::cluster::pushed::{Pushed, Pushes};
use shoal_node::cluster::rpc::{answer_raft, peer_ref, NetRpc};
use shoal_node::cluster::state::{ClusterState, Command};
use shoal_node::cluster::workers::Leads;
use shoal_node::control::work::Running;
use shoal_node::control::worker::run_on;
use shoal_node::supervisor::Stop;
use shoal_node::sync::ReadWrite;
use shoal_raft::{AppState, Applied, Raft, Timing};
use tokio::task::AbortHandle;

use crate::rng::mix;
use crate::world::{lock, Answer, Blobs, Handle, Msg};

/// The simulated world, with simulated nodes in it.
pub type World = crate::world::World<SimNode>;

/// The simulated cluster's id.
pub const CLUSTER_ID: u64 = 0x5348_4f41_4c53_494d;
/// Tasks a node runs at once.
pub const SLOTS: u32 = 2;
/// `--node-timeout` of the simulated nodes.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a worker heartbeats the leader.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a data request may take.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Raft timing of the simulated nodes: the daemon's defaults, and a snapshot every 40
/// entries with no log kept behind it, so that snapshots are built, installed and
/// restarted from in every run.
pub fn timing() -> Timing {
    Timing {
        snapshot_every: 40,
        keep_behind_snapshot: 0,
        ..Timing::default()
    }
}

/// The replicated state as the simulator runs it: the node's [`ClusterState`], plus a hash
/// chain over every command applied — `history[i]` after the first `i + 1` — so the
/// checker can tell whether two nodes applied the same commands in the same order.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SimState {
    /// The real state.
    pub state: ClusterState,
    /// The chain after every command.
    pub history: Vec<u64>,
}

impl AppState for SimState {
    type Command = Command;
    type Response = JobsApplied;

    fn apply(&mut self, cmd: Command) -> JobsApplied {
        let last = self.history.last().copied().unwrap_or(0);
        self.history
            .push(mix(last ^ stable_hash(&codec::encode(&cmd))));
        self.state.apply(cmd)
    }

    fn panicked(why: String) -> JobsApplied {
        ClusterState::panicked(why)
    }
}

/// The simulated network, as one node sees it.
#[derive(Clone)]
pub struct SimNet {
    world: Arc<World>,
    from: usize,
}

impl SimNet {
    async fn send(&self, to: &PeerRef, msg: Msg, timeout: Duration) -> Result<Answer, NetError> {
        let i = self
            .world
            .index_of(&to.peer)
            .ok_or_else(|| NetError::Request(format!("no route to {}", to.peer)))?;
        self.world
            .exchange(self.from, i, msg, timeout)
            .await
            .ok_or(NetError::Timeout(timeout))
    }
}

impl Transport for SimNet {
    async fn raft(
        &self,
        to: &PeerRef,
        req: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, NetError> {
        match self.send(to, Msg::Raft(req), timeout).await? {
            Answer::Raft(r) => Ok(r),
            other => Err(NetError::Request(format!("unexpected answer {other:?}"))),
        }
    }

    async fn ctl(
        &self,
        to: &PeerRef,
        req: CtlRequest,
        timeout: Duration,
    ) -> Result<CtlResponse, NetError> {
        match self.send(to, Msg::Ctl(req), timeout).await? {
            Answer::Ctl(r) => Ok(r),
            other => Err(NetError::Request(format!("unexpected answer {other:?}"))),
        }
    }
}

/// A running node.
pub struct SimNode {
    /// Index in the world.
    pub idx: usize,
    /// Raft id.
    pub id: NodeId,
    /// Raft.
    pub raft: Raft<SimState>,
    /// The applied state.
    pub applied: Arc<RwLock<Applied<SimState>>>,
    pub(crate) world: Arc<World>,
    net: SimNet,
    pub(crate) blobs: Blobs,
    pub(crate) boot_ms: u64,
    /// The last heartbeat of each node, when it leads.
    pub(crate) heartbeats: HeartbeatBook,
    tasks: Mutex<Vec<AbortHandle>>,
    running: Running,
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    inbound: shoal_raft::Inbound,
    /// On a plain worker: the table the leader pushes it.
    pub(crate) pushed: Pushed,
    /// On the leader: what each plain worker acknowledged.
    pushes: Pushes,
}

/// Start node `idx` from its durable state.
pub async fn start(world: &Arc<World>, idx: usize) -> Result<Arc<SimNode>, String> {
    let id = World::id(idx);
    let (store, blobs) = {
        let m = lock(&world.machines[idx]);
        (m.store.clone(), Arc::clone(&m.blobs))
    };
    let net = SimNet {
        world: Arc::clone(world),
        from: idx,
    };
    let rpc = NetRpc {
        net: net.clone(),
        cluster: Arc::new(RwLock::new(Some(CLUSTER_ID))),
    };
    let seed = world.rng(|r| r.next_u64());
    let (raft, applied) = shoal_raft::start::<SimState, _>(id, &store, timing(), rpc, seed)
        .await
        .map_err(|e| e.to_string())?;
    let node = Arc::new(SimNode {
        idx,
        id,
        raft,
        applied,
        world: Arc::clone(world),
        net,
        blobs,
        boot_ms: world.now_ms(),
        heartbeats: HeartbeatBook::new(id),
        tasks: Mutex::new(Vec::new()),
        running: Running::default(),
        stopping: Default::default(),
        inbound: Default::default(),
        pushed: Pushed::default(),
        pushes: Pushes::default(),
    });
    // A simulated node is killed, not stopped: its loops never see a stop.
    node.spawn(shoal_node::control::manager::run_on(
        Arc::clone(&node),
        Stop::never(),
    ));
    node.spawn(run_on(
        Arc::clone(&node),
        Arc::clone(&node.running),
        Stop::never(),
    ));
    node.spawn(heartbeats(Arc::clone(&node)));
    node.spawn(shoal_node::cluster::workers::run(
        Arc::clone(&node),
        Stop::never(),
    ));
    Ok(node)
}

impl SimNode {
    /// Spawn a task that dies with this node.
    pub fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(f).abort_handle();
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    /// The crash: every task stops, Raft shuts down.
    pub async fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.raft.shutdown()).await;
    }

    /// Raft's metrics now.
    pub fn metrics(&self) -> shoal_raft::Metrics {
        shoal_raft::metrics(&self.raft)
    }

    /// Whether this node is a plain worker, as the daemon tells: not a Raft member, and
    /// the leader pushes it its table.
    pub fn is_plain(&self) -> bool {
        !self.is_member() && self.pushed.leader().is_some()
    }

    /// Whether this node is in Raft's membership (a voter or a learner).
    pub fn is_member(&self) -> bool {
        let m = self.metrics();
        let member = m.membership_config.nodes().any(|(id, _)| *id == self.id);
        member
    }

    /// The leader as this node knows it: Raft's, or on a plain worker the one that pushes.
    pub fn leader(&self) -> Option<NodeId> {
        self.metrics()
            .current_leader
            .or_else(|| self.pushed.leader())
    }

    /// Where member `id` is reached, from the Raft membership — or on a plain worker the
    /// roster pushed — as the daemon does.
    fn member(&self, id: NodeId) -> Option<PeerRef> {
        let m = self.metrics();
        let info = m
            .membership_config
            .get_node(&id)
            .cloned()
            .or_else(|| self.pushed.record(id))?;
        peer_ref(&info).ok()
    }

    /// An object: from this node's store, else from the first of `holders` that has it.
    /// Store `bytes` under `key` here and on up to `copies` other members; the holders.
    pub async fn store_replicated(
        &self,
        key: &str,
        bytes: Arc<Vec<u8>>,
        copies: usize,
    ) -> Vec<NodeId> {
        lock(&self.blobs).insert(key.to_string(), Arc::clone(&bytes));
        let mut holders = vec![self.id];
        let n = self.world.machines.len();
        for step in 1..n {
            if holders.len() > copies {
                break;
            }
            let to = (self.idx + step) % n;
            let msg = Msg::Push(key.to_string(), Arc::clone(&bytes));
            if let Some(Answer::Pushed) =
                self.world.exchange(self.idx, to, msg, FETCH_TIMEOUT).await
            {
                holders.push(World::id(to));
            }
        }
        holders
    }
}

/// Every second, tell the leader this node is alive.
async fn heartbeats(node: Arc<SimNode>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(leader) = node.leader() else {
            continue;
        };
        if leader == node.id {
            continue;
        }
        // What the daemon sends (its elapsed times would read the real clock), in a fixed
        // order (the trace hashes every message).
        let running = shoal_node::control::work::running_attempts(&node.running, |_| 0);
        let hb = Heartbeat {
            cluster_id: CLUSTER_ID,
            node_id: node.id,
            slots: SLOTS,
            busy: lock(&node.running).len() as u32,
            running,
            disk_bytes: 0,
            disk_low: false,
            build: shoal_net::wire::Build::this(shoal_net::wire::PROTOCOL),
        };
        if let Some(to) = node.member(leader) {
            let _ = node
                .net
                .ctl(&to, CtlRequest::Heartbeat(hb), HEARTBEAT)
                .await;
        }
    }
}

/// The store's own key names (the daemon's), and for a map's output one object per
/// partition: the simulator keeps partitions apart where the daemon keeps byte ranges of one.
pub use shoal_node::storage::{part_key, split_key};

pub(crate) fn map_key(job: &str, map: u32, attempt: u32, p: u32) -> String {
    format!(
        "{}.p-{p:05}",
        shoal_node::storage::map_output_key(job, map, attempt)
    )
}

/// The membership's own proposing runs here, over the simulated network and clock.
impl Proposer for SimNode {
    type Net = SimNet;
    type State = SimState;

    fn id(&self) -> NodeId {
        self.id
    }

    fn transport(&self) -> &SimNet {
        &self.net
    }

    fn raft(&self) -> Option<&Raft<SimState>> {
        Some(&self.raft)
    }

    fn cluster(&self) -> Option<u64> {
        Some(CLUSTER_ID)
    }

    fn leader(&self) -> Option<NodeId> {
        SimNode::leader(self)
    }

    fn reach(&self, id: NodeId) -> Option<PeerRef> {
        self.member(id)
    }

    fn applies_log(&self) -> bool {
        self.is_member()
    }

    fn with_jobs<R>(&self, f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> R) -> Option<R> {
        Some(f(&self.applied.read_now().state.state.jobs))
    }
}

/// The leader's push loop runs here too.
impl Leads for SimNode {
    fn pushes(&self) -> &Pushes {
        &self.pushes
    }

    fn with_applied<R>(&self, f: impl FnOnce(u64, &ClusterState) -> R) -> Option<R> {
        let a = self.applied.read_now();
        Some(f(a.last_applied.map_or(0, |l| l.index), &a.state.state))
    }

    fn spawn_request(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.spawn(f);
    }
}

impl Handle for SimNode {
    /// Answer a message from a peer.
    async fn handle(&self, from: u64, msg: Msg) -> Answer {
        match msg {
            Msg::Raft(req) if req.cluster_id != CLUSTER_ID => {
                Answer::Raft(RaftResponse::declined(Reason::Foreign, "foreign cluster"))
            }
            Msg::Raft(req) => {
                Answer::Raft(answer_raft(&self.raft, &self.inbound, from, &req).await)
            }
            Msg::Ctl(CtlRequest::Propose { command, .. }) => {
                Answer::Ctl(answers::propose(self, from, command).await)
            }
            Msg::Ctl(CtlRequest::Heartbeat(hb)) => {
                // Everyone's heartbeats for a voter, else an acknowledgement (or everyone's
                // for all: the benchmark's baseline).
                let voter = self
                    .metrics()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == from);
                let to_all = voter || self.world.heartbeats_to_all;
                Answer::Ctl(answers::heartbeat(&self.heartbeats, hb, to_all))
            }
            Msg::Ctl(CtlRequest::Push { push, .. }) => {
                Answer::Ctl(answers::push(self.is_member(), &self.pushed, from, &push))
            }
            Msg::Ctl(_) => Answer::Ctl(CtlResponse::declined(Reason::Other, "not simulated")),
            Msg::Fetch(key) => Answer::Fetched(lock(&self.blobs).get(&key).cloned()),
            Msg::Push(key, bytes) => {
                lock(&self.blobs).insert(key, bytes);
                Answer::Pushed
            }
        }
    }
}
