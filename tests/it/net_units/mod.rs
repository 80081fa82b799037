//! The wire library's unit tests (`shoal-net`), one module per module they test. They live
//! in this binary, not in the library (`[lib] test = false` in net/Cargo.toml), so the
//! library is compiled once.

mod codec;
mod refusal;
mod version;
mod wire;
