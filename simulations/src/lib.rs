//! # shoal-sim — fault-injection simulations
//!
//! Many Shoal nodes in one process, over a simulated network and clock, with faults drawn
//! from one seed, and invariants checked all along. A run ([`run`]) is:
//!
//! 1. N machines, each with an in-memory redb store and object store (its "disk"); node 1
//!    initialises a Raft cluster of all N.
//! 2. The fault phase, `steps` simulated seconds: a client submits `jobs` word-count jobs
//!    at seeded times to random nodes, while once per second the injector may crash a node
//!    (it restarts 1–20 s later with its disk), kill one for good, partition the network
//!    (symmetric or one-way), or open a window of message loss, duplication or long delays.
//! 3. The liveness phase: faults stop, crashed nodes restart, the network heals; every job
//!    must end within [`Config::deadline`].
//!
//! The same seed gives the same trace: a current-thread tokio runtime with a paused clock
//! and a seeded scheduler (`--cfg tokio_unstable`, set for the whole workspace in
//! `.cargo/config.toml`), openraft's random choices from a seeded generator, and every
//! random choice of the simulator from one [`rng::Rng`].
//!
//! # Layout
//! - [`world`]: machines, the faulty network, the trace.
//! - [`node`]: one simulated node: real openraft, state machine, job table, manager
//!   decision and worker assignment logic; tasks computed in memory.
//! - [`workload`]: jobs, their reference answers, the client.
//! - [`invariants`]: one function per invariant.
//! - [`rng`]: the seeded generator.
//! - [`cli`]: `shoal sim`; [`mod@bench`]: its figures.

pub mod bench;
pub mod cli;
pub mod invariants;
pub mod node;
pub mod rng;
pub mod workload;
pub mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::world::{lock, Machine, NetFaults, Stats, Trace, Violation, World};

/// A kind of fault the injector may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A node crashes and restarts 1–20 s later with its disk.
    Crash,
    /// A node crashes for good, its disk lost (at most one per run).
    Kill,
    /// The network splits in two for 2–20 s.
    Partition,
    /// One direction of one link drops everything for 2–15 s.
    OneWay,
    /// 2–20% of messages are lost for 5–30 s.
    Loss,
    /// 2–20% of requests are delivered twice for 5–30 s.
    Dup,
    /// Messages take up to 20–400 ms each way for 5–30 s (and so reorder).
    Delay,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 7] = [
        Fault::Crash,
        Fault::Kill,
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::Dup,
        Fault::Delay,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Kill => "kill",
            Fault::Partition => "partition",
            Fault::OneWay => "oneway",
            Fault::Loss => "loss",
            Fault::Dup => "dup",
            Fault::Delay => "delay",
        }
    }
}

/// A bug planted on purpose, to show the invariants catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plant {
    /// In the Raft layer.
    Raft(shoal_raft::planted::Bug),
    /// In the job table or the scheduler.
    Jobs(shoal_jobs::planted::Bug),
}

impl Plant {
    /// Every plantable bug, with its name and the invariant it should break.
    pub const ALL: [(Plant, &'static str, &'static str); 7] = {
        use shoal_jobs::planted::Bug as J;
        use shoal_raft::planted::Bug as R;
        [
            (
                Plant::Raft(R::SilenceIsConsent),
                "silence-is-consent",
                "one_leader_per_term",
            ),
            (
                Plant::Raft(R::ApplyOutOfOrder),
                "apply-out-of-order",
                "logs_agree",
            ),
            (
                Plant::Raft(R::SnapshotIgnored),
                "snapshot-ignored",
                "acknowledged_jobs_kept",
            ),
            (
                Plant::Jobs(J::PartialReduceInput),
                "partial-reduce-input",
                "outputs_match",
            ),
            (
                Plant::Jobs(J::FinishAnyAttempt),
                "finish-any-attempt",
                "one_accepted_finish",
            ),
            (Plant::Jobs(J::NoRerun), "no-rerun", "every_job_ends"),
            (
                Plant::Jobs(J::WorkerDeletesParts),
                "worker-deletes-parts",
                "outputs_match",
            ),
        ]
    };

    fn entry(self) -> (&'static str, &'static str) {
        Plant::ALL
            .iter()
            .find(|(p, _, _)| *p == self)
            .map_or(("?", "?"), |(_, n, i)| (*n, *i))
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        self.entry().0
    }

    /// The invariant it should break.
    pub fn breaks(self) -> &'static str {
        self.entry().1
    }

    fn set(self, on: bool) {
        match self {
            Plant::Raft(b) => shoal_raft::planted::set(b, on),
            Plant::Jobs(b) => shoal_jobs::planted::set(b, on),
        }
    }
}

impl FromStr for Plant {
    type Err = String;
    fn from_str(s: &str) -> Result<Plant, String> {
        Plant::ALL
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(p, _, _)| *p)
            .ok_or_else(|| {
                let names: Vec<&str> = Plant::ALL.iter().map(|(_, n, _)| *n).collect();
                format!("unknown bug {s:?}; one of {}", names.join(", "))
            })
    }
}

/// Parse `crash,partition,…`, `all` or `none`.
pub fn parse_faults(s: &str) -> Result<BTreeSet<Fault>, String> {
    match s {
        "all" => return Ok(Fault::ALL.into_iter().collect()),
        "none" | "" => return Ok(BTreeSet::new()),
        _ => {}
    }
    s.split(',')
        .map(|f| {
            Fault::ALL
                .into_iter()
                .find(|k| k.name() == f.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Fault::ALL.iter().map(|k| k.name()).collect();
                    format!(
                        "unknown fault {f:?}; one of {}, all, none",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Jobs the client submits.
    pub jobs: usize,
    /// Faults the injector may cause.
    pub faults: BTreeSet<Fault>,
    /// Simulated seconds of the fault phase (one fault decision per second).
    pub steps: u64,
    /// Simulated seconds the liveness phase may take.
    pub deadline: u64,
    /// Bugs planted for this run.
    pub plant: Vec<Plant>,
    /// Lines of trace the report keeps.
    pub tail: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            nodes: 5,
            jobs: 4,
            faults: Fault::ALL.into_iter().collect(),
            steps: 60,
            deadline: 300,
            plant: Vec::new(),
            tail: 60,
        }
    }
}

impl Config {
    /// The command that runs this configuration again.
    pub fn command(&self) -> String {
        let faults: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
        let mut c = format!(
            "shoal sim --seed {} --nodes {} --jobs {} --faults {} --steps {} --deadline {}",
            self.seed,
            self.nodes,
            self.jobs,
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(",")
            },
            self.steps,
            self.deadline
        );
        for p in &self.plant {
            let _ = write!(c, " --plant {}", p.name());
        }
        c
    }
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The configuration.
    pub config: Config,
    /// Invariants that did not hold, the first time each was seen (the run stops
    /// ten simulated seconds after the first).
    pub violations: Vec<Violation>,
    /// Hash of the whole event trace.
    pub trace_hash: u64,
    /// Events traced.
    pub trace_lines: u64,
    /// The last events.
    pub trace_tail: Vec<String>,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Jobs acknowledged to the client.
    pub acked: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Counts.
    pub stats: Stats,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// One line: seed, result, figures.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "seed {:>5}: {} — {} jobs succeeded ({} acknowledged) in {:.0} simulated s; {} messages ({} lost, {} duplicated), {} crashes, {} kills, {} partitions; trace {:016x}",
            self.config.seed,
            if self.ok() {
                "ok".to_string()
            } else {
                let names: Vec<&str> = self.violations.iter().map(|v| v.invariant).collect();
                format!("VIOLATION of {}", names.join(", "))
            },
            self.succeeded,
            self.acked,
            self.simulated.as_secs_f64(),
            s.messages,
            s.dropped,
            s.duplicated,
            s.crashes,
            s.kills,
            s.partitions,
            self.trace_hash
        )
    }

    /// The failure report: the violations, the command that reproduces the run, the trace tail.
    pub fn report(&self) -> String {
        let mut r = String::new();
        for v in &self.violations {
            let _ = writeln!(
                r,
                "invariant {} violated at {} ms: {}",
                v.invariant, v.at_ms, v.detail
            );
        }
        let _ = writeln!(r, "reproduce with: {}", self.config.command());
        let _ = writeln!(
            r,
            "last {} of {} trace lines:",
            self.trace_tail.len(),
            self.trace_lines
        );
        for l in &self.trace_tail {
            let _ = writeln!(r, "  {l}");
        }
        r
    }
}

/// Run one simulation on this thread (a current-thread runtime with a paused clock).
pub fn run(config: &Config) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(
            &config.seed.to_le_bytes(),
        ))
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => return failed_to_start(config, format!("no runtime: {e}")),
    };
    for p in &config.plant {
        p.set(true);
    }
    // openraft logs every unreachable peer; a simulation makes thousands on purpose. The
    // trace is the record of a run.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let outcome =
        tracing::subscriber::with_default(quiet, || rt.block_on(simulate(config.clone())));
    for p in &config.plant {
        p.set(false);
    }
    outcome
}

fn failed_to_start(config: &Config, why: String) -> Outcome {
    Outcome {
        config: config.clone(),
        violations: vec![Violation {
            invariant: "setup",
            detail: why,
            at_ms: 0,
        }],
        trace_hash: 0,
        trace_lines: 0,
        trace_tail: Vec::new(),
        simulated: Duration::ZERO,
        acked: 0,
        succeeded: 0,
        stats: Stats::default(),
    }
}

/// Run seeds `seeds` of `base` on `threads` threads; outcomes in seed order.
pub fn sweep(
    base: &Config,
    seeds: std::ops::Range<u64>,
    threads: usize,
    each: impl Fn(&Outcome) + Sync,
) -> Vec<Outcome> {
    let next = Mutex::new(seeds.clone());
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let Some(seed) = lock(&next).next() else {
                    return;
                };
                let o = run(&Config {
                    seed,
                    ..base.clone()
                });
                each(&o);
                lock(&out).push(o);
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|o| o.config.seed);
    out
}

async fn simulate(config: Config) -> Outcome {
    let peers = (0..config.nodes)
        .map(|i| {
            let kp = shoal_net::Keypair::ed25519_from_bytes([i as u8 + 1; 32]);
            kp.map(|kp| kp.public().to_peer_id())
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    let world = Arc::new(World {
        seed: config.seed,
        rng: Mutex::new(rng::Rng::new(config.seed)),
        machines: (0..config.nodes)
            .map(|_| {
                Ok(Mutex::new(Machine {
                    store: shoal_raft::Store::in_memory().map_err(|e| e.to_string())?,
                    blobs: Arc::default(),
                    live: None,
                    incarnation: 0,
                    killed: false,
                    booting: false,
                }))
            })
            .collect::<Result<Vec<_>, String>>()
            .unwrap_or_default(),
        peers,
        net: Mutex::new(NetFaults {
            delay_ms: 5,
            ..NetFaults::default()
        }),
        trace: Mutex::new(Trace::default()),
        stats: Mutex::new(Stats::default()),
        acked: Mutex::default(),
        expected: Mutex::default(),
        leaders: Mutex::default(),
        violations: Mutex::default(),
        start: Instant::now(),
        tail: config.tail.max(1),
    });
    if world.machines.len() != config.nodes
        || world.peers.len() != config.nodes
        || config.nodes == 0
    {
        return failed_to_start(&config, "could not make the machines".into());
    }
    if let Err(e) = boot(&world).await {
        return failed_to_start(&config, e);
    }
    let client = tokio::spawn(workload::client(
        Arc::clone(&world),
        config.jobs,
        Duration::from_secs(config.steps.max(2) / 2),
    ));
    let checker = tokio::spawn(check(Arc::clone(&world)));
    inject(&world, &config).await;
    heal(&world).await;
    let deadline = Instant::now() + Duration::from_secs(config.deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < deadline && !seen_enough(&world) {
        tick.tick().await;
        if client.is_finished() && invariants::all_ended(&world) {
            break;
        }
    }
    checker.abort();
    if !violated(&world) {
        invariants::acknowledged_jobs_kept(&world);
        invariants::logs_agree(&world);
        invariants::one_accepted_finish(&world);
        invariants::outputs_match(&world, &mut BTreeSet::new());
        invariants::every_job_ends(&world);
    }
    client.abort();
    let succeeded = (0..config.nodes)
        .find_map(|i| world.live(i))
        .map_or(0, |n| {
            let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
            let jobs = &a.state.state.jobs.jobs;
            jobs.values()
                .filter(|j| j.state == shoal_jobs::cluster::JobState::Succeeded)
                .count()
        });
    for i in 0..config.nodes {
        crash(&world, i, false).await;
    }
    let violations = lock(&world.violations).clone();
    let acked = lock(&world.acked).len();
    let stats = lock(&world.stats).clone();
    let trace = std::mem::take(&mut *lock(&world.trace));
    Outcome {
        config: config.clone(),
        violations,
        trace_hash: trace.hash,
        trace_lines: trace.lines,
        trace_tail: trace.tail.into(),
        simulated: world.start.elapsed(),
        acked,
        succeeded,
        stats,
    }
}

fn violated(world: &World) -> bool {
    !lock(&world.violations).is_empty()
}

/// Simulated time a run goes on after its first violation, so that the report shows every
/// invariant the fault broke, not only the quickest to notice.
const AFTER_VIOLATION: Duration = Duration::from_secs(10);

fn seen_enough(world: &World) -> bool {
    lock(&world.violations)
        .first()
        .is_some_and(|v| world.elapsed_ms() >= v.at_ms + AFTER_VIOLATION.as_millis() as u64)
}

/// Start every node; node 1 initialises the cluster with all of them as voters.
async fn boot(world: &Arc<World>) -> Result<(), String> {
    let mut members = BTreeMap::new();
    for i in 0..world.machines.len() {
        let node = node::start(world, i).await?;
        members.insert(
            node.id,
            shoal_raft::NodeInfo {
                peer_id: world.peers[i].to_string(),
                addrs: Vec::new(),
                http: String::new(),
            },
        );
        lock(&world.machines[i]).live = Some(node);
    }
    let first = world.live(0).ok_or("node 1 is not up")?;
    first
        .raft
        .initialize(members)
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    world.trace("cluster initialised");
    Ok(())
}

/// Crash node `i` (a no-op when down); `kill` loses its disk and keeps it down for good.
async fn crash(world: &Arc<World>, i: usize, kill: bool) {
    let node = {
        let mut m = lock(&world.machines[i]);
        m.incarnation += 1;
        if kill {
            m.killed = true;
            lock(&m.blobs).clear();
        }
        m.live.take()
    };
    if let Some(node) = node {
        node.stop().await;
    }
}

async fn restart(world: &Arc<World>, i: usize) {
    let incarnation = {
        let mut m = lock(&world.machines[i]);
        if m.killed || m.booting || m.live.is_some() {
            return;
        }
        m.booting = true;
        m.incarnation
    };
    let started = node::start(world, i).await;
    lock(&world.machines[i]).booting = false;
    match started {
        // Crashed again while it booted.
        Ok(n) if world.incarnation(i) != incarnation => n.stop().await,
        Ok(n) => {
            world.trace(format!("n{} restarts", i + 1));
            lock(&world.machines[i]).live = Some(n);
        }
        Err(e) => world.violate("restart", format!("node {} did not restart: {e}", i + 1)),
    }
}

/// The fault phase: one decision per simulated second.
async fn inject(world: &Arc<World>, config: &Config) {
    let n = config.nodes;
    let has = |f: Fault| config.faults.contains(&f);
    let mut heal_at: Option<Instant> = None;
    let mut unblock: Vec<(Instant, (usize, usize))> = Vec::new();
    let mut calm_at: [Option<Instant>; 3] = [None; 3];
    let secs = |lo: u64, hi: u64| Duration::from_secs(world.rng(|r| r.between(lo, hi)));
    for step in 0..config.steps {
        tokio::time::sleep_until(world.start + Duration::from_secs(step + 1)).await;
        if violated(world) {
            return;
        }
        let now = Instant::now();
        if heal_at.is_some_and(|t| t <= now) {
            heal_at = None;
            lock(&world.net).sides = None;
            world.trace("partition healed");
        }
        for (_, link) in unblock.iter().filter(|(t, _)| *t <= now) {
            lock(&world.net).blocked.remove(link);
        }
        unblock.retain(|(t, _)| *t > now);
        for (w, until) in calm_at.iter_mut().enumerate() {
            if until.is_some_and(|t| t <= now) {
                *until = None;
                let mut net = lock(&world.net);
                match w {
                    0 => net.loss = 0.0,
                    1 => net.dup = 0.0,
                    _ => net.delay_ms = 5,
                }
            }
        }
        let up: Vec<usize> = (0..n).filter(|&i| world.live(i).is_some()).collect();
        if has(Fault::Crash) && !up.is_empty() && world.rng(|r| r.chance(0.08)) {
            // At any moment of the coming second; a third of crashes are quick reboots.
            let i = up[world.rng(|r| r.below(up.len() as u64)) as usize];
            let at = Duration::from_millis(world.rng(|r| r.below(1000)));
            let down = if world.rng(|r| r.chance(0.33)) {
                Duration::from_millis(world.rng(|r| r.between(50, 1000)))
            } else {
                secs(1, 20)
            };
            let w = Arc::clone(world);
            tokio::spawn(async move {
                tokio::time::sleep(at).await;
                if w.live(i).is_none() {
                    return;
                }
                w.trace(format!(
                    "FAULT n{} crashes for {} ms",
                    i + 1,
                    down.as_millis()
                ));
                w.count(|s| s.crashes += 1);
                crash(&w, i, false).await;
                tokio::time::sleep(down).await;
                restart(&w, i).await;
            });
        }
        if has(Fault::Kill)
            && lock(&world.stats).kills == 0
            && up.len() == n
            && n >= 3
            && world.rng(|r| r.chance(0.01))
        {
            let i = world.rng(|r| r.below(n as u64)) as usize;
            world.trace(format!("FAULT n{} is killed, its disk lost", i + 1));
            world.count(|s| s.kills += 1);
            crash(world, i, true).await;
        }
        if has(Fault::Partition) && heal_at.is_none() && world.rng(|r| r.chance(0.03)) {
            let sides: Vec<u8> = (0..n).map(|_| world.rng(|r| r.below(2)) as u8).collect();
            if sides.contains(&0) && sides.contains(&1) {
                world.trace(format!("FAULT partition {sides:?}"));
                world.count(|s| s.partitions += 1);
                lock(&world.net).sides = Some(sides);
                heal_at = Some(now + secs(2, 20));
            }
        }
        if has(Fault::OneWay) && n >= 2 && world.rng(|r| r.chance(0.03)) {
            let a = world.rng(|r| r.below(n as u64)) as usize;
            let b = (a + 1 + world.rng(|r| r.below(n as u64 - 1)) as usize) % n;
            world.trace(format!("FAULT n{} -> n{} blocked", a + 1, b + 1));
            world.count(|s| s.partitions += 1);
            lock(&world.net).blocked.insert((a, b));
            unblock.push((now + secs(2, 15), (a, b)));
        }
        let windows = [(Fault::Loss, 0usize), (Fault::Dup, 1), (Fault::Delay, 2)];
        for (f, w) in windows {
            if has(f) && calm_at[w].is_none() && world.rng(|r| r.chance(0.05)) {
                let mut net = lock(&world.net);
                match w {
                    0 => net.loss = world.rng(|r| r.between(2, 20)) as f64 / 100.0,
                    1 => net.dup = world.rng(|r| r.between(2, 20)) as f64 / 100.0,
                    _ => net.delay_ms = world.rng(|r| r.between(20, 400)),
                }
                drop(net);
                world.trace(format!("FAULT {} window", f.name()));
                calm_at[w] = Some(now + secs(5, 30));
            }
        }
    }
}

/// The liveness phase begins: the network heals and every crashed node restarts.
async fn heal(world: &Arc<World>) {
    *lock(&world.net) = NetFaults {
        delay_ms: 5,
        ..NetFaults::default()
    };
    world.trace("faults stop; the network heals");
    for i in 0..world.machines.len() {
        restart(world, i).await;
    }
}

/// The continuous invariants, every 100 simulated ms.
async fn check(world: Arc<World>) {
    let mut checked = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        invariants::acknowledged_jobs_kept(&world);
        invariants::logs_agree(&world);
        invariants::one_accepted_finish(&world);
        invariants::outputs_match(&world, &mut checked);
    }
}
