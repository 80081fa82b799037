//! How the client shows a cluster: the table of `shoal status`, `shoal status --watch` and
//! the demo.

use shoal_node::http::view::ClusterView;

/// Print a cluster view as a table.
pub fn print_view(v: &ClusterView) {
    print!("{}", view_text(v));
}

/// A cluster view as a table.
pub fn view_text(v: &ClusterView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = match &v.cluster_id {
        Some(c) => writeln!(
            out,
            "cluster {c}   term {}   applied {} (term {})   state {}",
            v.term, v.applied.index, v.applied.term, v.state_hash
        ),
        None => writeln!(
            out,
            "no cluster yet{}",
            v.status
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
    };
    let _ = match &v.leader {
        Some(l) => writeln!(out, "manager (leader): {}  {}", l.id, l.http),
        None => writeln!(out, "manager (leader): none yet"),
    };
    if v.mixed_versions {
        let _ = writeln!(
            out,
            "mixed versions: the nodes run more than one build (see VERSION); finish the \
             upgrade one node at a time"
        );
    }
    let _ = writeln!(
        out,
        "{:<17} {:<10} {:<10} {:<9} {:<10} {:>10} {:>6} {:>10} {:<14}  HTTP",
        "NODE",
        "MEMBER",
        "STATE",
        "SERVICE",
        "REACHABLE",
        "SEEN (ms)",
        "SLOTS",
        "DISK (MiB)",
        "VERSION"
    );
    for n in &v.nodes {
        let me = if n.id == v.this.id { "*" } else { " " };
        let slots = n
            .heartbeat
            .as_ref()
            .map(|h| format!("{}/{}", h.busy, h.slots))
            .unwrap_or_else(|| "-".into());
        let disk = n
            .heartbeat
            .as_ref()
            .map(|h| format!("{:.1}", h.disk_bytes as f64 / f64::from(1u32 << 20)))
            .unwrap_or_else(|| "-".into());
        let version = match (&n.version, &n.protocol) {
            (Some(v), Some(p)) => format!("{v}/{p}"),
            (None, Some(p)) => format!("?/{p}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{}{:<16} {:<10} {:<10} {:<9} {:<10} {:>10} {:>6} {:>10} {:<14}  {}",
            me,
            n.id,
            n.membership.as_deref().unwrap_or("-"),
            n.state,
            n.drain.as_deref().unwrap_or("active"),
            if n.reachable { "yes" } else { "no" },
            n.last_seen_ms_ago
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            slots,
            disk,
            version,
            n.http
        );
    }
    out
}
