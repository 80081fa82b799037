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
//! - `config`, `driver`: what a run is given and reports; one run from boot to verdict.
//! - [`workload`]: jobs, their reference answers, the client; [`compute`]: a task's work
//!   in memory (the app over a split, a reduce over map outputs).
//! - [`invariants`]: one function per invariant.
//! - [`rng`]: the seeded generator.
//! - [`cli`]: `shoal sim`; [`mod@bench`]: its figures.

pub mod bench;
pub mod cli;
pub mod compute;
mod config;
mod driver;
mod host;
pub mod invariants;
pub mod node;
pub mod rng;
pub mod workload;
pub mod world;

pub use config::{parse_faults, Config, Fault, Outcome, Plant};

use std::sync::Mutex;

use crate::world::lock;

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
        Err(e) => return Outcome::failed_to_start(config, format!("no runtime: {e}")),
    };
    for p in &config.plant {
        p.set(true);
    }
    // openraft logs every unreachable peer; a simulation makes thousands on purpose. The
    // trace is the record of a run.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let outcome =
        tracing::subscriber::with_default(quiet, || rt.block_on(driver::simulate(config.clone())));
    for p in &config.plant {
        p.set(false);
    }
    outcome
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
