//! The task pool: `--slots` OS threads that run user code (native apps, process pumping),
//! never on an async runtime, so a node whose slots are all busy still answers heartbeats.
//!
//! The invariant: at most `slots` tasks run at once; dropping the pool waits for the ones
//! already started.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of task threads fed from one queue.
pub struct TaskPool {
    tx: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
}

impl TaskPool {
    /// A pool of `slots` threads (at least one).
    pub fn new(slots: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let workers = (0..slots.max(1))
            .map(|i| {
                let rx = Arc::clone(&rx);
                let busy = Arc::clone(&busy);
                std::thread::Builder::new()
                    .name(format!("shoal-task-{i}"))
                    .spawn(move || {
                        lower_priority();
                        loop {
                            let job = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            match job {
                                Ok(job) => {
                                    busy.fetch_add(1, Ordering::Relaxed);
                                    job();
                                    busy.fetch_sub(1, Ordering::Relaxed);
                                }
                                Err(_) => return,
                            }
                        }
                    })
                    .expect("spawning a task thread")
            })
            .collect();
        TaskPool {
            tx: Some(tx),
            workers,
            busy,
        }
    }

    /// Queue a task; it runs when a slot is free.
    pub fn execute(&self, f: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            // Send fails only when every worker is gone, i.e. during drop.
            let _ = tx.send(Box::new(f));
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.workers.len()
    }

    /// Tasks running right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Task threads (and the processes they start) run at nice 10, so under contention the
/// node's own threads — Raft heartbeats, libp2p — run first, and a node whose slots are all
/// busy keeps its role.
fn lower_priority() {
    // SAFETY: gettid and setpriority on the calling thread only; a failure leaves it as is.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// The default number of slots: the machine's cores.
pub fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}
