//! The jobs crate's tests in one binary (each file once was one): the job table under any
//! sequence of commands, failing programs, and the local pipeline against references.

// An end-to-end scenario reads best as one script: `scripts/structure` holds the functions
// of the test directories to 200 lines of code, not clippy's 100.
#![allow(clippy::too_many_lines)]

mod apply_fuzz;
mod failures;
mod pipeline;
