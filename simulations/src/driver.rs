//! One run, from boot to verdict: the machines boot, the client submits, the injector
//! crashes, kills, partitions and degrades the network, then everything heals and every job
//! must end; the checker runs beside it all along.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Config, Fault, Outcome};
use crate::node::{self, World};
use crate::world::{lock, Machine, NetFaults, Stats, Trace};
use crate::{invariants, rng, workload};

pub(crate) async fn simulate(config: Config) -> Outcome {
    let world = make_world(&config);
    if world.machines.len() != config.nodes
        || world.peers.len() != config.nodes
        || config.nodes == 0
    {
        return Outcome::failed_to_start(&config, "could not make the machines".into());
    }
    if let Err(e) = boot(&world, config.learners).await {
        return Outcome::failed_to_start(&config, e);
    }
    // Each node's load counts from here: the membership's first entries go once.
    let booted = world.start.elapsed();
    {
        let mut s = lock(&world.stats);
        s.node_messages.clear();
        s.node_bytes.clear();
        s.assigned_ms.clear();
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
    let (succeeded, on_workers) = succeeded_and_on_workers(&world);
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
        booted,
        acked,
        succeeded,
        on_workers,
        stats,
    }
}

/// The world of `config`: its machines with empty stores, their peer ids, a network that
/// delays every message 5 ms.
fn make_world(config: &Config) -> Arc<World> {
    let peers = (0..config.nodes)
        .map(|i| {
            // Distinct for every index (the last byte tells apart each run of 256).
            let mut seed = [(i as u8).wrapping_add(1); 32];
            seed[31] = seed[31].wrapping_add((i / 256) as u8);
            let kp = shoal_net::Keypair::ed25519_from_bytes(seed);
            kp.map(|kp| kp.public().to_peer_id())
        })
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_default();
    Arc::new(World {
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
        heartbeats_to_all: config.heartbeats_to_all,
    })
}

/// On the most advanced node: the jobs that succeeded, and the attempts run on plain
/// workers.
fn succeeded_and_on_workers(world: &World) -> (usize, usize) {
    invariants::most_advanced(world).map_or((0, 0), |n| {
        let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
        let state = &a.state.state;
        let jobs = &state.jobs.jobs;
        let succeeded = jobs
            .values()
            .filter(|j| j.state == shoal_jobs::cluster::JobState::Succeeded)
            .count();
        let on_workers = jobs
            .values()
            .flat_map(|j| j.maps.iter().chain(&j.reduces))
            .flat_map(|t| &t.attempts)
            .filter(|at| state.workers.contains_key(&at.node))
            .count();
        (succeeded, on_workers)
    })
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

/// Voters a simulated cluster starts with, as a real one keeps (DESIGN's rules).
pub const VOTERS: usize = 5;

/// Start every node; node 1 initialises the cluster with the first [`VOTERS`] as voters,
/// the leader adds the next `most_learners` as learners, in one membership change, and
/// records the rest as plain workers (`Command::Worker`), as a real cluster's leader does
/// when nodes join past `--learners`.
async fn boot(world: &Arc<World>, most_learners: usize) -> Result<(), String> {
    let mut voters = BTreeMap::new();
    let mut learners = BTreeMap::new();
    let mut workers = Vec::new();
    for i in 0..world.machines.len() {
        let node = node::start(world, i).await?;
        node.spawn(invariants::watch_leadership(Arc::clone(&node)));
        let info = shoal_raft::NodeInfo {
            peer_id: world.peers[i].to_string(),
            addrs: Vec::new(),
            http: String::new(),
        };
        if i < VOTERS {
            voters.insert(node.id, info);
        } else if i < VOTERS + most_learners {
            learners.insert(node.id, info);
        } else {
            workers.push((node.id, info));
        }
        lock(&world.machines[i]).live = Some(node);
    }
    let first = world.live(0).ok_or("node 1 is not up")?;
    first
        .raft
        .initialize(voters)
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    world.trace("cluster initialised");
    if learners.is_empty() && workers.is_empty() {
        return Ok(());
    }
    // No fault runs yet: a leader is elected within seconds.
    for _ in 0..120 {
        let leader = (0..VOTERS)
            .filter_map(|i| world.live(i))
            .find(|n| n.metrics().current_leader == Some(n.id));
        if let Some(leader) = leader {
            let change = shoal_raft::ChangeMembers::AddNodes(learners.clone());
            if learners.is_empty() || leader.raft.change_membership(change, false).await.is_ok() {
                world.trace(format!("{} learners added", learners.len()));
                return add_workers(&leader, workers).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err("no leader added the learners within 60 simulated s".into())
}

/// Record `workers` as plain workers through `leader`, all proposals in flight at once.
async fn add_workers(
    leader: &Arc<node::SimNode>,
    workers: Vec<(u64, shoal_raft::NodeInfo)>,
) -> Result<(), String> {
    if workers.is_empty() {
        return Ok(());
    }
    let count = workers.len();
    let ids: Vec<u64> = workers.iter().map(|(id, _)| *id).collect();
    let writes: Vec<_> = workers
        .into_iter()
        .map(|(node_id, info)| {
            let cmd = shoal_node::cluster::state::Command::Worker { node_id, info };
            let leader = Arc::clone(leader);
            tokio::spawn(async move {
                shoal_node::cluster::propose::write_local(&*leader, shoal_net::codec::encode(&cmd))
                    .await
                    .map_err(|e| format!("recording plain worker {node_id}: {e}"))
            })
        })
        .collect();
    for w in writes {
        w.await.map_err(|e| e.to_string())??;
    }
    leader
        .world
        .trace(format!("{count} plain workers recorded"));
    // The cluster has formed once every worker holds the leader's first push (the roster
    // and its jobs: the one push per term that carries everything).
    let world = &leader.world;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ids {
        let Some(w) = world.live(World::index(id)) else {
            return Err(format!("plain worker {id} is not up"));
        };
        let mut changes = w.pushed.changes();
        while w.pushed.leader().is_none() {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(format!(
                        "plain worker {id} got no push within 60 simulated s"
                    ))
                }
            }
        }
    }
    world.trace(format!(
        "{count} plain workers hold the leader's first push"
    ));
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
            n.spawn(invariants::watch_leadership(Arc::clone(&n)));
            world.trace(format!("n{} restarts", i + 1));
            lock(&world.machines[i]).live = Some(n);
        }
        Err(e) => world.violate("restart", format!("node {} did not restart: {e}", i + 1)),
    }
}

/// Flip one byte of one stored object on one machine: a map output (it can be made again),
/// or a split or part of which enough other intact copies remain — one, or two when a disk
/// may also be lost — so rot alone never destroys data that exists only once.
fn rot(world: &Arc<World>, rotted: &mut BTreeSet<(usize, String)>, kills: bool) {
    let n = world.machines.len();
    let i = world.rng(|r| r.below(n as u64)) as usize;
    let keys: Vec<String> = {
        let m = lock(&world.machines[i]);
        let b = lock(&m.blobs);
        b.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    };
    if keys.is_empty() {
        return;
    }
    let key = keys[world.rng(|r| r.below(keys.len() as u64)) as usize].clone();
    let intact_elsewhere = (0..n)
        .filter(|&o| o != i && !rotted.contains(&(o, key.clone())))
        .filter(|&o| {
            let m = lock(&world.machines[o]);
            !m.killed && lock(&m.blobs).contains_key(&key)
        })
        .count();
    let remakeable = key.starts_with("map/");
    if !remakeable && intact_elsewhere < 1 + usize::from(kills) {
        return;
    }
    if !rotted.insert((i, key.clone())) {
        return;
    }
    let m = lock(&world.machines[i]);
    let mut blobs = lock(&m.blobs);
    let Some(bytes) = blobs.get(&key) else {
        return;
    };
    let mut flipped = bytes.as_ref().clone();
    let at = world.rng(|r| r.below(flipped.len() as u64)) as usize;
    flipped[at] ^= 1 << world.rng(|r| r.below(8));
    blobs.insert(key.clone(), Arc::new(flipped));
    drop(blobs);
    drop(m);
    world.trace(format!("FAULT a byte of {key} flips on n{}", i + 1));
    world.count(|s| s.rotted += 1);
}

/// Crash one of the nodes `up` at a moment of the coming second, for 1 to 20 s (a third of
/// crashes are quick reboots), then restart it.
fn crash_soon(world: &Arc<World>, up: &[usize]) {
    // At any moment of the coming second; a third of crashes are quick reboots.
    let i = up[world.rng(|r| r.below(up.len() as u64)) as usize];
    let at = Duration::from_millis(world.rng(|r| r.below(1000)));
    let down = if world.rng(|r| r.chance(0.33)) {
        Duration::from_millis(world.rng(|r| r.between(50, 1000)))
    } else {
        Duration::from_secs(world.rng(|r| r.between(1, 20)))
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

/// The fault phase: one decision per simulated second.
async fn inject(world: &Arc<World>, config: &Config) {
    let n = config.nodes;
    let has = |f: Fault| config.faults.contains(&f);
    let mut heal_at: Option<Instant> = None;
    let mut unblock: Vec<(Instant, (usize, usize))> = Vec::new();
    let mut calm_at: [Option<Instant>; 3] = [None; 3];
    let mut rotted: BTreeSet<(usize, String)> = BTreeSet::new();
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
            crash_soon(world, &up);
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
        if has(Fault::Rot) && world.rng(|r| r.chance(0.1)) {
            rot(world, &mut rotted, has(Fault::Kill));
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
