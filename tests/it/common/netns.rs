//! "Separate machines" on one host: Linux network namespaces the test creates itself (it is
//! root), joined by veth pairs to bridges in a switch namespace of their own, so nothing
//! touches the host's network. Links can be cut and healed, and loss and delay added with
//! `tc netem`. Everything is deleted when the [`Lan`] is dropped, even when a test fails,
//! and namespaces left by a test process that died are deleted by the next one.
//!
//! Needs root and `ip`. Without them the tests skip with a visible message — unless
//! `SHOAL_REQUIRE_NETNS=1` (CI sets it), when they fail instead.

use std::path::Path;
use std::process::Command;

use super::cluster::{one_at_a_time, NodeProc, TestNode};
use super::{run, shoal, text};

/// Run `ip` with `args`; panic with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Whether namespaces can be made here; when not, skip (or fail under SHOAL_REQUIRE_NETNS=1).
pub fn available(test: &str) -> bool {
    let probe = format!("shoal-{}-probe{}", std::process::id(), next_id());
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        return true;
    }
    super::skip(
        test,
        "needs root and iproute2 (`ip netns add` failed)",
        "SHOAL_REQUIRE_NETNS",
    )
}

/// Run `f` on a thread inside namespace `ns` (sockets it opens live there).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    shoal::demo::local_cluster::in_netns(ns, f).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A host in the LAN: its namespace, subnet and address.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its interface's address.
    pub addr: String,
    /// Index of its switch port (`p{i}` in the switch namespace).
    port: usize,
}

/// Namespaces, bridges and links made for one test.
pub struct Lan {
    prefix: String,
    switch: String,
    namespaces: Vec<String>,
    /// The hosts, in creation order.
    pub hosts: Vec<Host>,
    subnets: usize,
}

impl Lan {
    /// A switch namespace with `subnets` bridges (10.77.S.0/24, S from 1); with more than one,
    /// a router namespace joins them (at 10.77.S.254) and mDNS cannot cross.
    pub fn new(subnets: usize) -> Lan {
        sweep_dead();
        let prefix = format!("shoal-{}-{}", std::process::id(), next_id());
        let switch = format!("{prefix}-sw");
        let mut lan = Lan {
            prefix,
            switch: switch.clone(),
            namespaces: Vec::new(),
            hosts: Vec::new(),
            subnets,
        };
        lan.add_ns(&switch);
        for s in 1..=subnets {
            let br = format!("br{s}");
            ip(&["-n", &switch, "link", "add", &br, "type", "bridge"]);
            ip(&["-n", &switch, "link", "set", &br, "up"]);
        }
        if subnets > 1 {
            let router = format!("{}-rt", lan.prefix);
            lan.add_ns(&router);
            ip(&[
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
            for s in 1..=subnets {
                let (inside, port) = (format!("eth{s}"), format!("r{s}"));
                ip(&[
                    "-n", &router, "link", "add", &inside, "type", "veth", "peer", "name", &port,
                    "netns", &switch,
                ]);
                ip(&[
                    "-n",
                    &router,
                    "addr",
                    "add",
                    &format!("10.77.{s}.254/24"),
                    "dev",
                    &inside,
                ]);
                ip(&["-n", &router, "link", "set", &inside, "up"]);
                lan.plug(&port, s);
            }
        }
        lan
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// A new host on subnet `subnet` (from 1): its own namespace, `eth0` with the next
    /// address, a multicast route (mDNS needs one), and a default route via the router.
    pub fn host(&mut self, subnet: usize) -> Host {
        assert!((1..=self.subnets).contains(&subnet));
        let i = self.hosts.len() + 1;
        let ns = format!("{}-h{i}", self.prefix);
        self.add_ns(&ns);
        let port = format!("p{i}");
        let addr = format!("10.77.{subnet}.{i}");
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        if self.subnets > 1 {
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{subnet}.254"),
            ]);
        }
        self.plug(&port, subnet);
        let h = Host { ns, addr, port: i };
        self.hosts.push(h.clone());
        h
    }

    /// Attach switch-side `port` to subnet `subnet`'s bridge, and turn it on.
    fn plug(&self, port: &str, subnet: usize) {
        let bridge = format!("br{subnet}");
        ip(&["-n", &self.switch, "link", "set", port, "master", &bridge]);
        ip(&["-n", &self.switch, "link", "set", port, "up"]);
    }

    /// Pull `host`'s cable (its switch port goes down) or plug it back.
    pub fn link(&self, host: &Host, up: bool) {
        let port = format!("p{}", host.port);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ]);
    }

    /// Loss and delay on `host`'s side of its link: `tc netem` where the kernel has it;
    /// where it does not (no `sch_netem`), the loss alone, by nftables (`numgen random`).
    /// Returns what was applied, for the test to print.
    pub fn impair(&self, host: &Host, loss_pct: u32, delay_ms: u32) -> String {
        let netem = Command::new("tc")
            .args([
                "-n", &host.ns, "qdisc", "replace", "dev", "eth0", "root", "netem", "loss",
            ])
            .arg(format!("{loss_pct}%"))
            .args(["delay", &format!("{delay_ms}ms")])
            .output()
            .expect("tc runs");
        if netem.status.success() {
            return format!("{loss_pct}% loss and {delay_ms} ms delay (tc netem)");
        }
        let nft = |rule: &str| {
            let o = Command::new("ip")
                .args(["netns", "exec", &host.ns, "nft"])
                .args(rule.split(' '))
                .output()
                .expect("nft runs");
            assert!(
                o.status.success(),
                "nft {rule}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        nft("add table inet impair");
        for hook in ["input", "output"] {
            nft(&format!(
                "add chain inet impair {hook} {{ type filter hook {hook} priority 0 ; }}"
            ));
            // Half the loss each way: about loss_pct% of round trips lose a packet.
            nft(&format!(
                "add rule inet impair {hook} iifname != lo oifname != lo numgen random mod 200 < {loss_pct} counter drop"
            ));
        }
        format!(
            "{loss_pct}% loss (nftables; this kernel has no sch_netem, so no added delay: {})",
            String::from_utf8_lossy(&netem.stderr).trim()
        )
    }
}

/// Packets nftables dropped on `host` (0 where netem does the work).
pub fn dropped(host: &Host) -> u64 {
    let o = Command::new("ip")
        .args([
            "netns", "exec", &host.ns, "nft", "list", "table", "inet", "impair",
        ])
        .output();
    let Ok(o) = o else { return 0 };
    let text = String::from_utf8_lossy(&o.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "packets")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn next_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Delete namespaces a test process that is gone left behind (`shoal-PID-…`).
fn sweep_dead() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("shoal-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// A LAN with `hosts[s]` hosts on subnet `s + 1`, for the test named `test`, with the
/// cluster-test lock and a scratch directory; None (the test skips) without namespaces.
pub fn setup(
    test: &str,
    hosts: &[usize],
) -> Option<(std::sync::MutexGuard<'static, ()>, tempfile::TempDir, Lan)> {
    let serial = one_at_a_time();
    if !available(test) {
        return None;
    }
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("SHOAL_KEEP_TEST_DIRS").is_some())
        .tempdir()
        .unwrap();
    let mut lan = Lan::new(hosts.len());
    for (s, &n) in hosts.iter().enumerate() {
        for _ in 0..n {
            lan.host(s + 1);
        }
    }
    Some((serial, dir, lan))
}

/// Start a node on each of `hosts` with `args` — and, unless `args` name a key or
/// `--insecure`, the LAN's cluster key (`dir/lan.key`, made on first use), as every machine
/// of a real LAN is started.
pub fn start_on(dir: &Path, lan: &Lan, hosts: &[usize], args: &[&str]) -> Vec<NodeProc> {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if !args
        .iter()
        .any(|a| a == "--cluster-key" || a == "--insecure")
    {
        let key = dir.join("lan.key");
        if !key.exists() {
            let o = run(shoal().arg("keygen").arg(&key));
            assert!(o.status.success(), "{}", text(&o));
        }
        args.push("--cluster-key".into());
        args.push(key.to_string_lossy().into_owned());
    }
    hosts
        .iter()
        .map(|&h| {
            let host = &lan.hosts[h];
            NodeProc::start_in(Some(&host.ns), dir, &format!("h{}", h + 1), &args)
        })
        .collect()
}
