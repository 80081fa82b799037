//! The node's loops under one supervisor. A loop that panics, or one meant to run for the
//! life of the node that returns, stops the node with an error (and a non-zero exit): a node
//! whose worker died must not keep heartbeating as if it ran its tasks — the manager would
//! wait on it forever — while a node that stops is declared lost and its work goes elsewhere.
//!
//! Stopping is a request every loop watches ([`Stop`]), never an abort first: each loop ends
//! at its next wait, after the step it is in, and the supervisor waits for them (a bounded
//! time) and logs each as it stops, in order. Only the network is stopped last and by force:
//! the others may need it to finish their step.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

/// The node's request to stop, as a loop watches it: cheap to clone, one per loop.
#[derive(Debug, Clone)]
pub struct Stop(Option<watch::Receiver<bool>>);

impl Stop {
    /// A request that never comes (a loop run by the simulator, whose node is killed).
    pub fn never() -> Stop {
        Stop(None)
    }

    /// Whether the node was asked to stop.
    pub fn is_requested(&self) -> bool {
        self.0.as_ref().is_some_and(|r| *r.borrow())
    }

    /// Resolves once the node is asked to stop (or its supervisor is gone).
    pub async fn requested(&mut self) {
        match &mut self.0 {
            Some(r) => {
                let _ = r.wait_for(|s| *s).await;
            }
            None => std::future::pending().await,
        }
    }

    /// `f`'s output, unless the node is asked to stop first: `None` then.
    pub async fn or<T>(&mut self, f: impl Future<Output = T>) -> Option<T> {
        if self.is_requested() {
            return None;
        }
        tokio::select! {
            () = self.requested() => None,
            out = f => Some(out),
        }
    }
}

/// A loop of the node stopped.
#[derive(Debug, thiserror::Error)]
#[error("the {name} loop {how}; the node stops so that the cluster runs its work elsewhere")]
pub struct LoopStopped {
    /// Which loop.
    pub name: &'static str,
    /// "panicked: MESSAGE" or "returned".
    pub how: String,
}

/// The node's loops.
pub struct Supervisor {
    loops: JoinSet<()>,
    names: HashMap<Id, (&'static str, bool)>,
    /// Loops that do not watch the request (the network): stopped after every other one.
    last: JoinSet<()>,
    last_names: HashMap<Id, &'static str>,
    stop: watch::Sender<bool>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor {
            loops: JoinSet::new(),
            names: HashMap::new(),
            last: JoinSet::new(),
            last_names: HashMap::new(),
            stop: watch::channel(false).0,
        }
    }
}

impl Supervisor {
    /// The request to stop, for a loop to watch.
    pub fn stop(&self) -> Stop {
        Stop(Some(self.stop.subscribe()))
    }

    /// A loop that runs for the life of the node but does not watch the request (the
    /// network): its end stops the node as a [`Supervisor::forever`] loop's does, and when
    /// the node stops it runs until every other loop has stopped.
    pub fn last(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        let h = self.last.spawn(f);
        self.last_names.insert(h.id(), name);
    }

    /// A loop that runs for the life of the node: its end, by return or panic, stops it.
    pub fn forever(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        let h = self.loops.spawn(f);
        self.names.insert(h.id(), (name, true));
    }

    /// A loop that ends when its work is done (bootstrap): only a panic stops the node.
    pub fn until_done(&mut self, name: &'static str, f: impl Future<Output = ()> + Send + 'static) {
        let h = self.loops.spawn(f);
        self.names.insert(h.id(), (name, false));
    }

    /// Wait until a loop stops the node. Pending forever while every loop runs.
    pub async fn stopped(&mut self) -> LoopStopped {
        loop {
            let r = tokio::select! {
                Some(r) = self.loops.join_next_with_id() => r,
                Some(r) = self.last.join_next_with_id() => r,
                else => return std::future::pending().await,
            };
            // `how` is None for a loop that returned.
            let (id, how) = match r {
                Ok((id, ())) => (id, None),
                Err(e) => {
                    let id = e.id();
                    let how = if e.is_panic() {
                        let payload = e.into_panic();
                        let msg = payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "(no message)".into());
                        format!("panicked: {msg}")
                    } else {
                        "was cancelled".to_string()
                    };
                    (id, Some(how))
                }
            };
            let (name, forever) = self
                .names
                .remove(&id)
                .or_else(|| self.last_names.remove(&id).map(|n| (n, true)))
                .unwrap_or(("unnamed", true));
            match how {
                Some(how) => return LoopStopped { name, how },
                None if forever => {
                    return LoopStopped {
                        name,
                        how: "returned".into(),
                    }
                }
                None => {}
            }
            tracing::debug!(loop_name = name, "a loop finished its work");
        }
    }

    /// Ask every loop to stop and wait for each, at most `bound` in all, logging each as it
    /// stops; loops still running then are aborted, named. Then the last loops. The names of
    /// the loops in the order they stopped.
    pub async fn shutdown(mut self, bound: Duration) -> Vec<&'static str> {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + bound;
        let mut order = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.loops.join_next_with_id()).await {
                Ok(Some(r)) => {
                    let id = match &r {
                        Ok((id, ())) => *id,
                        Err(e) => e.id(),
                    };
                    let name = self.names.remove(&id).map_or("unnamed", |(n, _)| n);
                    tracing::info!(loop_name = name, "loop stopped");
                    order.push(name);
                }
                Ok(None) => break,
                Err(_) => {
                    let left: Vec<&str> = self.names.values().map(|(n, _)| *n).collect();
                    tracing::warn!(
                        ?left,
                        ?bound,
                        "loops still running when the node must stop; aborting them"
                    );
                    self.loops.shutdown().await;
                    break;
                }
            }
        }
        self.last.shutdown().await;
        tracing::info!(order = ?order, "every loop stopped");
        order
    }
}
