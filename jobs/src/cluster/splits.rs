//! A job's splits: where each lies (stored segments and their copies, or in place) and
//! what it holds.

use serde::{Deserialize, Serialize};

use super::NodeId;

/// A split of the job's input and the nodes that hold a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Its index (= its map task).
    pub index: u32,
    /// The input file's name as the mapper sees it (the first file's, for a combined split).
    pub name: String,
    /// Bytes.
    pub len: u64,
    /// Nodes holding a copy.
    pub holders: Vec<NodeId>,
    /// A combined split (`--combine-files`): the files it holds one after another, each
    /// with its bytes in this split. Empty: the split is part of one file, `name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, u64)>,
    /// The stored object that holds it, when splits are packed into segments: segment
    /// `s` of the job, from byte `offset`. `None`: the split is an object of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    /// Where it starts in its segment.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The checksum of its bytes ([`crate::checksum`]), taken when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u32>,
    /// Read where it lies, never stored by Shoal (`node:` and `shared:` inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place: Option<InPlace>,
    /// A finished job's part file, read where the cluster stores it (`shoal://JOB`
    /// inputs, protocol 1.7): the split is the whole part, and `holders` and `checksum` are
    /// the part's as the table had them when the job was submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of: Option<PartOf>,
}

impl SplitInfo {
    /// Whether Shoal stored it for this job: uploaded, not read where it lies nor in
    /// another job's part file.
    pub fn uploaded(&self) -> bool {
        self.in_place.is_none() && self.part_of.is_none()
    }

    /// The one node that may run its map: the node whose own disk has it (`node:`).
    pub fn pinned(&self) -> Option<NodeId> {
        self.in_place.as_ref().and_then(|p| p.node)
    }
}

/// The part file a split is ([`SplitInfo::part_of`]): part `part` of job `job` as attempt
/// `attempt` wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartOf {
    /// The job that wrote it.
    pub job: String,
    /// Its index (its reduce, or its map in a map-only job).
    pub part: u32,
    /// The accepted attempt (its object's key names it).
    pub attempt: u32,
}

/// Where an in-place split lies ([`crate::inplace`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InPlace {
    /// `node:`: the only node that has the file; `None` (`shared:`): every node has it.
    pub node: Option<NodeId>,
    /// The file, relative to the input root.
    pub path: String,
    /// Where the split starts in it.
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
