//! The job control loops: the manager (on the Raft leader: plan, propose assignments) and
//! the worker (on every node: run assigned attempts, report, clean up).

mod attempt;
pub mod drain;
pub mod jobdir;
pub mod jobdirs;
pub mod manager;
pub mod work;
pub mod worker;
