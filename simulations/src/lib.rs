//! # shoal-sim — fault-injection simulations
//!
//! Seeded runs of many Shoal nodes in one process over a simulated network and clock.
//!
//! Not built yet: this crate is filled in once distributed jobs exist.
