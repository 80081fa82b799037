//! What a run is given — its seed, size, faults and planted bugs — and what it reports.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use crate::world::{Stats, Violation};

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
    /// A byte of a stored object flips on one node's disk (a split or part with another
    /// intact copy, or a map output, which can be made again).
    Rot,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 8] = [
        Fault::Crash,
        Fault::Kill,
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::Dup,
        Fault::Delay,
        Fault::Rot,
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
            Fault::Rot => "rot",
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
    pub const ALL: [(Plant, &'static str, &'static str); 9] = {
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
            (
                Plant::Jobs(J::TrustCorruptCopies),
                "trust-corrupt-copies",
                "reads_match_checksums",
            ),
            (
                Plant::Jobs(J::ProposalGivesUp),
                "proposal-gives-up",
                "every_job_ends",
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

    pub(crate) fn set(self, on: bool) {
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
    /// Most learners (`--learners`): past the voters and these, nodes are plain workers.
    pub learners: usize,
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
    /// Answer every heartbeat with every heartbeat heard (the rule before protocol 1.2):
    /// the scale benchmark's baseline.
    pub heartbeats_to_all: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            nodes: 5,
            learners: shoal_node::cluster::node::DEFAULT_LEARNERS,
            jobs: 4,
            faults: Fault::ALL.into_iter().collect(),
            steps: 60,
            deadline: 300,
            plant: Vec::new(),
            tail: 60,
            heartbeats_to_all: false,
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
        if self.learners != shoal_node::cluster::node::DEFAULT_LEARNERS {
            let _ = write!(c, " --learners {}", self.learners);
        }
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
    /// Simulated time the boot took (the cluster formed, its learners added).
    pub booted: Duration,
    /// Jobs acknowledged to the client.
    pub acked: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Task attempts, in the final table, that ran on plain workers.
    pub on_workers: usize,
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
            "seed {:>5}: {} — {} jobs succeeded ({} acknowledged, {} attempts on plain workers) in {:.0} simulated s; {} messages ({} lost, {} duplicated), {} crashes, {} kills, {} partitions, {} rotted ({} caught); trace {:016x}",
            self.config.seed,
            if self.ok() {
                "ok".to_string()
            } else {
                let names: Vec<&str> = self.violations.iter().map(|v| v.invariant).collect();
                format!("VIOLATION of {}", names.join(", "))
            },
            self.succeeded,
            self.acked,
            self.on_workers,
            self.simulated.as_secs_f64(),
            s.messages,
            s.dropped,
            s.duplicated,
            s.crashes,
            s.kills,
            s.partitions,
            s.rotted,
            s.corrupt_caught,
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

impl Outcome {
    /// The outcome of a run that could not start.
    pub fn failed_to_start(config: &Config, why: String) -> Outcome {
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
            booted: Duration::ZERO,
            acked: 0,
            succeeded: 0,
            on_workers: 0,
            stats: Stats::default(),
        }
    }
}
