//! # shoal-net — the wire
//!
//! Message types, CBOR framing with a length prefix and a maximum frame size, the `Transport`
//! trait the node's loops talk through, and its libp2p implementation.
//!
//! Not built yet: this crate is filled in by the foundation work.
