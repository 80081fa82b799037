//! The ports a node takes on its machine.
//!
//! - `--local`: the first free pair of loopback ports from 7070 (the API) and 7071 (p2p)
//!   up, two by two, and the other pairs as peers to dial, so nodes started the same way on
//!   one machine find each other with nothing chosen by the user.
//! - No two nodes share a p2p port. libp2p listens with `SO_REUSEPORT`, so a second
//!   listener on a taken port would start and silently take half of the first one's
//!   connections; after listening, a node looks at the machine's listening sockets
//!   (`/proc/net/tcp`, `/proc/net/tcp6`) and refuses to run beside another on its port.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// The pairs of ports `--local` tries, so the most local nodes one machine runs that way.
pub const LOCAL_NODES: u16 = 16;

/// What `--local` took: the API's listener, the p2p port, and the other nodes' p2p
/// addresses to dial.
#[derive(Debug)]
pub struct Local {
    /// The API's listener, bound.
    pub http: TcpListener,
    /// The p2p port.
    pub p2p: u16,
    /// The other pairs' p2p ports.
    pub peers: Vec<u16>,
    /// The ports tried first and found taken, if any (for the message).
    pub skipped: Vec<u16>,
}

/// The first pair of free loopback ports from `base` (API) and `base + 1` (p2p) up, two by
/// two; `None` when all [`LOCAL_NODES`] pairs are taken.
pub fn pick_local(base: u16) -> Option<Local> {
    let port = |i: u16| base.checked_add(i.checked_mul(2)?);
    let pairs: Vec<(u16, u16)> = (0..LOCAL_NODES)
        .filter_map(|i| Some((port(i)?, port(i)?.checked_add(1)?)))
        .collect();
    let mut skipped = Vec::new();
    for &(http, p2p) in &pairs {
        let taken_p2p = !listeners_on(SocketAddr::from((Ipv4Addr::LOCALHOST, p2p))).is_empty();
        // The API's port is bound and kept, so two nodes starting at once cannot both take
        // one pair: the second finds the API's port taken.
        match (taken_p2p, TcpListener::bind((Ipv4Addr::LOCALHOST, http))) {
            (false, Ok(listener)) => {
                return Some(Local {
                    http: listener,
                    p2p,
                    peers: pairs.iter().map(|p| p.1).filter(|&p| p != p2p).collect(),
                    skipped,
                })
            }
            _ => skipped.push(http),
        }
    }
    None
}

/// The inodes of the sockets listening where `addr` would listen: on its port and its
/// address, or either of them a wildcard.
pub fn listeners_on(addr: SocketAddr) -> Vec<u64> {
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        found.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| parse_listener(l, v6))
                .filter(|(at, _)| at.port() == addr.port() && overlaps(at.ip(), addr.ip()))
                .map(|(_, inode)| inode),
        );
    }
    found
}

/// Whether two listeners on one port take each other's connections: one address, or a
/// wildcard of the same family (libp2p listens on IPv6 with `IPV6_V6ONLY`).
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
}

/// A listening socket's address and inode from a line of `/proc/net/tcp` (or `tcp6`).
pub fn parse_listener(line: &str, v6: bool) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 {
        if ip.len() != 32 {
            return None;
        }
        // Four 32-bit words, each in the machine's byte order.
        let mut bytes = [0u8; 16];
        for (w, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip.get(w * 8..w * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        ))
    };
    let inode = fields.get(9)?.parse().ok()?;
    Some((SocketAddr::new(ip, port), inode))
}

/// The inodes of this process's sockets.
fn own_sockets() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Whether another process listens where this one does on `addr` (a p2p address it
/// listens on): two listeners with `SO_REUSEPORT` share a port without an error.
pub fn shared_with_another(addr: SocketAddr) -> bool {
    let own = own_sockets();
    listeners_on(addr).iter().any(|inode| !own.contains(inode))
}
