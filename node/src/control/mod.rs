//! The job control loops: the manager (on the Raft leader: plan, propose assignments) and
//! the worker (on every node: run assigned attempts, report, clean up).
//!
//! Control is a service over the two others: [`Control`] holds the membership's handle (the
//! node among its peers: Raft, proposing, the job table) and the store's, and owns what only
//! it uses — the task pool and the jobs' directories here.

use std::sync::Arc;

use shoal_jobs::pool::TaskPool;

use crate::cluster::node::Node;
use crate::storage::Storage;

mod attempt;
pub mod drain;
pub mod jobdir;
pub mod jobdirs;
pub mod manager;
pub mod reconcile;
pub mod submit;
pub mod work;
pub mod worker;

/// The control service of one node.
pub struct Control {
    /// The membership: identity, peers, Raft, proposing, the job table.
    pub node: Arc<Node>,
    /// The store: objects, links, the disk reserve, the data plane.
    pub store: Arc<Storage>,
    /// The threads that run tasks (never the runtime's).
    pub pool: TaskPool,
    /// Jobs' directories here (`--archive`, `--setup`).
    pub job_dirs: jobdirs::JobDirs,
}

impl Control {
    /// Control over `node` and `store`, running at most `slots` tasks at once.
    pub fn new(node: Arc<Node>, store: Arc<Storage>, slots: u32) -> Control {
        Control {
            node,
            store,
            pool: TaskPool::new(slots as usize),
            job_dirs: Default::default(),
        }
    }
}
