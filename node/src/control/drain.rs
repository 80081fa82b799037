//! A node's own drain as it stops: told to stop (SIGTERM, Ctrl-C) while attempts run here,
//! it marks itself draining in the table — the manager gives it nothing new — lets those
//! attempts finish and report, and the reduces fetch the map outputs only it holds, for at
//! most `--drain-secs`, and then stops; whatever still runs then is ended with the process
//! and runs again elsewhere (as do maps whose output was still needed). When it starts again it takes
//! tasks again (an operator's drain, `shoal drain`, stays until `shoal undrain`).

use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{Command, DrainCause};
use tracing::{info, warn};

use crate::cluster::node::{next_change, with_jobs, Node};
use crate::cluster::state::Command as StateCommand;

/// What this node is still needed for: attempts running here (in the table — assigned, not
/// yet reported — or in the pool), and map outputs only it holds that reduces still need.
fn running(node: &Node) -> usize {
    let table = with_jobs(node, |t| t.needed_on(node.id)).unwrap_or(0);
    table.max(node.pool.busy())
}

/// Drain this node before it stops: returns once nothing runs here, or after `grace`.
pub async fn before_stop(node: &Arc<Node>, grace: Duration) {
    let Some(h) = node.raft.get() else { return };
    let n = running(node);
    if n == 0 || grace.is_zero() {
        return;
    }
    info!(running = n, grace = ?grace, "stopping: this node takes no new task; its running attempts may finish first (--drain-secs)");
    let deadline = tokio::time::Instant::now() + grace;
    let mut changes = h.raft.metrics();
    let cmd = StateCommand::Jobs(Command::Drain {
        node: node.id,
        cause: DrainCause::Stopping,
        at_ms: crate::clock::now_ms(),
    });
    let propose = tokio::time::timeout_at(deadline, node.propose(&cmd, grace));
    if let Ok(Err(e)) = propose.await {
        warn!(error = %e, "could not mark this node draining; its attempts still get the grace period");
    }
    while running(node) > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                running = running(node),
                "the grace period ended while attempts ran here or reduces still needed map outputs here; they run again elsewhere"
            );
            return;
        }
        next_change(&mut changes, Duration::from_millis(200)).await;
    }
    info!("nothing here is needed any more (attempts finished and reported, map outputs fetched); stopping");
}

/// Undrain this node whenever the table says it drained itself as an earlier process
/// stopped (a stopping drain from before this process started): it takes tasks again. An
/// operator's drain is left alone. Forever.
pub async fn undrain_after_restart(node: Arc<Node>) {
    let h = node.raft_started().await;
    let mut changes = h.raft.metrics();
    loop {
        let stale = with_jobs(&node, |t| {
            t.draining
                .get(&node.id)
                .is_some_and(|d| d.cause == DrainCause::Stopping && d.since_ms < node.started_ms)
        })
        .unwrap_or(false);
        if stale {
            let cmd = StateCommand::Jobs(Command::Undrain { node: node.id });
            match node.propose(&cmd, Duration::from_secs(10)).await {
                Ok(_) => {
                    info!("this node drained itself when it last stopped; it takes tasks again")
                }
                Err(e) => warn!(error = %e, "could not undrain this node; will retry"),
            }
        }
        next_change(&mut changes, Duration::from_secs(1)).await;
    }
}
