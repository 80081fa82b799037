//! A usage error: flags that cannot work together. `shoal node` exits 2 (bad usage) with
//! its message.

/// Flags that cannot work together: `shoal node` exits 2 (bad usage) with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
