//! The task pool: `--slots` OS threads that run user code (native apps, process pumping),
//! never on an async runtime, so a node whose slots are all busy still answers heartbeats.
//!
//! The invariant: at most `slots` tasks run at once, and at most the pool's limit
//! ([`TaskPool::set_limit`], the slots unless lowered); dropping the pool waits for the ones
//! already started.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of task threads fed from one queue.
pub struct TaskPool {
    tx: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

/// How many tasks may run at once, and how many do: a task thread holding a task waits here
/// while the limit is reached.
#[derive(Default)]
struct Gate {
    /// (running, limit).
    counts: Mutex<(usize, usize)>,
    changed: Condvar,
}

impl Gate {
    fn enter(&self) {
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        while c.0 >= c.1 {
            c = match self.changed.wait(c) {
                Ok(c) => c,
                Err(_) => return,
            };
        }
        c.0 += 1;
    }

    fn leave(&self) {
        if let Ok(mut c) = self.counts.lock() {
            c.0 = c.0.saturating_sub(1);
        }
        self.changed.notify_all();
    }
}

impl TaskPool {
    /// A pool of `slots` threads (at least one).
    pub fn new(slots: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let busy = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate {
            counts: Mutex::new((0, slots.max(1))),
            changed: Condvar::new(),
        });
        let workers = (0..slots.max(1))
            .map(|i| {
                let rx = Arc::clone(&rx);
                let busy = Arc::clone(&busy);
                let gate = Arc::clone(&gate);
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
                                    gate.enter();
                                    busy.fetch_add(1, Ordering::Relaxed);
                                    job();
                                    busy.fetch_sub(1, Ordering::Relaxed);
                                    gate.leave();
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
            gate,
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

    /// Run at most `limit` tasks at once from now on (between one and the slots): tasks
    /// already running finish, queued ones wait for the running count to drop under it.
    pub fn set_limit(&self, limit: usize) {
        let limit = limit.clamp(1, self.slots().max(1));
        if let Ok(mut c) = self.gate.counts.lock() {
            if c.1 == limit {
                return;
            }
            c.1 = limit;
        }
        self.gate.changed.notify_all();
    }

    /// How many tasks may run at once now.
    pub fn limit(&self) -> usize {
        self.gate.counts.lock().map_or(self.slots(), |c| c.1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Wait, at most ten seconds, until `f` holds.
    fn until(f: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Queue `n` tasks that each run until released; the most that ran at once is counted.
    fn blocking_tasks(pool: &TaskPool, n: usize) -> (mpsc::Sender<()>, Arc<AtomicUsize>) {
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        for _ in 0..n {
            let (released, running, most) = (
                Arc::clone(&released),
                Arc::clone(&running),
                Arc::clone(&most),
            );
            pool.execute(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                if let Ok(r) = released.lock() {
                    let _ = r.recv();
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        (release, most)
    }

    #[test]
    fn a_lowered_limit_bounds_the_tasks_running_at_once_and_a_raised_one_starts_the_waiting() {
        let pool = TaskPool::new(4);
        pool.set_limit(1);
        assert_eq!(pool.limit(), 1);
        let (release, most) = blocking_tasks(&pool, 4);
        assert!(until(|| pool.busy() == 1), "one task starts");
        pool.set_limit(3);
        assert!(
            until(|| pool.busy() == 3),
            "raising the limit starts two more"
        );
        for _ in 0..4 {
            release.send(()).expect("a task waits for it");
        }
        drop(pool);
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "never more than the limit at once"
        );
    }

    #[test]
    fn the_limit_stays_between_one_and_the_slots() {
        let pool = TaskPool::new(2);
        pool.set_limit(0);
        assert_eq!(pool.limit(), 1);
        pool.set_limit(9);
        assert_eq!(pool.limit(), 2);
        let (release, most) = blocking_tasks(&pool, 2);
        assert!(until(|| pool.busy() == 2));
        for _ in 0..2 {
            release.send(()).expect("a task waits for it");
        }
        drop(pool);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
