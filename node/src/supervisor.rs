//! The node's loops under one supervisor. A loop that panics, or one meant to run for the
//! life of the node that returns, stops the node with an error (and a non-zero exit): a node
//! whose worker died must not keep heartbeating as if it ran its tasks — the manager would
//! wait on it forever — while a node that stops is declared lost and its work goes elsewhere.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

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
#[derive(Default)]
pub struct Supervisor {
    loops: JoinSet<()>,
    names: HashMap<Id, (&'static str, bool)>,
}

impl Supervisor {
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
            let Some(r) = self.loops.join_next_with_id().await else {
                return std::future::pending().await;
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
            let (name, forever) = self.names.remove(&id).unwrap_or(("unnamed", true));
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

    /// Stop every loop.
    pub async fn shutdown(mut self) {
        self.loops.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_loop_is_named_with_its_message_and_a_finished_one_is_not() {
        let mut s = Supervisor::default();
        s.until_done("bootstrap", async {});
        s.forever("idle", std::future::pending());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        s.forever("worker", async move {
            let _ = rx.await;
            panic!("planted");
        });
        tx.send(()).unwrap();
        let stopped = s.stopped().await;
        assert_eq!(stopped.name, "worker");
        assert_eq!(stopped.how, "panicked: planted");
        assert!(stopped
            .to_string()
            .contains("the worker loop panicked: planted"));
        s.shutdown().await;
    }

    #[tokio::test]
    async fn a_forever_loop_that_returns_stops_the_node() {
        let mut s = Supervisor::default();
        s.forever("manager", async {});
        let stopped = s.stopped().await;
        assert_eq!(
            (stopped.name, stopped.how.as_str()),
            ("manager", "returned")
        );
    }
}
