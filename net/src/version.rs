//! Which build a node runs and which wire protocol it speaks: named in every hello and
//! heartbeat, so a node of an incompatible protocol is refused naming both versions, and a
//! cluster that runs several builds (a rolling upgrade) shows it.

use serde::{Deserialize, Serialize};

/// A wire protocol version. Nodes whose majors differ are refused at the hello; a minor
/// only adds what nodes of the same major and an older minor ignore (serde defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Protocol {
    /// Changes that older nodes cannot read.
    pub major: u32,
    /// Additions older nodes of the same major ignore.
    pub minor: u32,
}

/// This build's wire protocol: 1.0 is what nodes spoke before they said; 1.1 added the
/// versions to hellos and heartbeats; 1.2 answers only voters' heartbeats with everyone's
/// (others ask, `Heard`, when they show the cluster; a 1.1 leader answers that with an
/// error, and such a node shows what it last heard); 1.3 has plain workers, which the
/// leader pushes their table (`Push`; a leader makes only a 1.3 node a plain worker); 1.4
/// lets nodes of one host store each other's objects by a hard link (`Link`; a 1.3 node
/// cannot read it, and is sent the bytes); 1.5 says in the hello which host a node shares
/// the cores of (an older node's hello says none, and it keeps its slots); 1.6 says why a
/// request was refused as a type (`Declined`, a `Reason`) beside the text,
/// and answers a node that has not said it speaks 1.6 with the text alone (`Refused`); 1.7
/// has splits that are another job's part file (`SplitInfo::part_of`, `shoal://JOB` read
/// where it is stored), made only while every member speaks 1.7 (a 1.6 node would read the
/// split as one of the job's own objects, which do not exist).
pub const PROTOCOL: Protocol = Protocol { major: 1, minor: 7 };

/// This build's version (the workspace's, `shoal --version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Protocol {
    /// Whether this is `major`.`minor` or a later minor of that major: what a feature added
    /// in that minor needs of a peer (another major is refused at the hello).
    pub const fn at_least(self, major: u32, minor: u32) -> bool {
        self.major == major && self.minor >= minor
    }
}

impl Default for Protocol {
    /// What a hello or heartbeat without one means: a node from before versions were sent.
    fn default() -> Self {
        Protocol { major: 1, minor: 0 }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a protocol version MAJOR.MINOR");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(Protocol {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// A build and the wire protocol it speaks, as a hello or heartbeat names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// `shoal --version` of the sender; empty from a node before 1.1.
    pub version: String,
    /// Its wire protocol.
    pub protocol: Protocol,
}

impl Build {
    /// This build, speaking `protocol`.
    pub fn this(protocol: Protocol) -> Build {
        Build {
            version: VERSION.to_owned(),
            protocol,
        }
    }

    /// Why a node of build `theirs` and one of `self` cannot talk, naming both (`theirs`
    /// first); `None` when they can.
    pub fn incompatible(&self, theirs: &Build) -> Option<String> {
        (self.protocol.major != theirs.protocol.major).then(|| {
            format!(
                "wire protocol {} (shoal {}) and wire protocol {} (shoal {}) differ in their \
                 major: such nodes cannot form or join one cluster; run one protocol major on \
                 every node (docs/operations.md, versions and upgrades)",
                theirs.protocol,
                or_unknown(&theirs.version),
                self.protocol,
                or_unknown(&self.version)
            )
        })
    }
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (protocol {})",
            or_unknown(&self.version),
            self.protocol
        )
    }
}

fn or_unknown(v: &str) -> &str {
    if v.is_empty() {
        "before 0.1.0"
    } else {
        v
    }
}
