//! Why a node refused a request, as a type the asker decides on; the text beside it is for
//! people. Protocol 1.6 sends both (`Declined`); a node of an older minor reads only a
//! refusal's text (`Refused`), so an answer to it carries the text alone, and the three
//! sentences of protocol 1.5 that askers acted on are read back as their reasons.

use serde::{Deserialize, Serialize};

use crate::version::Protocol;

/// What kind of refusal: the only thing a protocol or scheduling decision looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The answering node has no cluster yet.
    NoCluster,
    /// The asker belongs to another cluster.
    Foreign,
    /// The asker is not a member of the cluster, or spoke in another node's name.
    NotAMember,
    /// The two nodes' wire protocols differ in their major.
    Incompatible,
    /// (`Adopt`) The answering node is not among the voters named: no objection.
    NotAVoter,
    /// (`Adopt`) Adopting the cluster could split it: the asker defers.
    WouldSplit,
    /// (`Push`) The worker is out of step with the leader's pushes: send everything.
    OutOfStep,
    /// (`Push`) The worker lacks the roster the push names: send it.
    RosterWanted,
    /// (`Push`) The sender is not the leader this worker follows, or is behind it.
    NotTheLeader,
    /// No leader is known yet, or the answering node cannot reach it.
    NoLeader,
    /// The answering node is not ready (Raft not running yet): ask again later.
    NotReady,
    /// Asked again sooner than the answering node allows: ask later.
    TooSoon,
    /// The rules refuse what was asked (a proposal a member may not make).
    Forbidden,
    /// The request does not decode or breaks the protocol's bounds.
    Malformed,
    /// The answering node tried and failed (its disk, its Raft).
    Failed,
    /// A reason this build does not know (from a newer node), or none given.
    #[serde(other)]
    Other,
}

/// A refusal: its kind, and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What kind.
    pub reason: Reason,
    /// The explanation, for logs and people.
    pub why: String,
}

impl Refusal {
    /// A refusal of kind `reason`, explained by `why`.
    pub fn new(reason: Reason, why: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            why: why.into(),
        }
    }

    /// A refusal from a node that sent its text alone (protocol 1.5 or older): the three
    /// sentences askers acted on, as that protocol defined them, are their reasons; any other
    /// text is [`Reason::Other`].
    pub fn from_text(why: String) -> Refusal {
        let reason = match why.as_str() {
            legacy::NOT_A_VOTER => Reason::NotAVoter,
            legacy::OUT_OF_STEP => Reason::OutOfStep,
            legacy::ROSTER_WANTED => Reason::RosterWanted,
            _ => Reason::Other,
        };
        Refusal { reason, why }
    }

    /// The text a node of protocol 1.5 or older reads for this refusal: for the reasons it
    /// acted on, its own sentence.
    pub fn into_text(self) -> String {
        match self.reason {
            Reason::NotAVoter => legacy::NOT_A_VOTER.into(),
            Reason::OutOfStep => legacy::OUT_OF_STEP.into(),
            Reason::RosterWanted => legacy::ROSTER_WANTED.into(),
            _ => self.why,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for Refusal {}

/// Whether a node of protocol `p` reads typed refusals (`Declined`): 1.6 and every later
/// version, a later major too (the hello that refuses it must stay readable to it); `None`
/// (it has not said) reads text alone.
pub fn reads_reasons(p: Option<Protocol>) -> bool {
    p.is_some_and(|p| p >= Protocol { major: 1, minor: 6 })
}

/// The sentences protocol 1.5 sent as the whole of a refusal that askers acted on.
mod legacy {
    pub const NOT_A_VOTER: &str = "this node is not among the voters";
    pub const OUT_OF_STEP: &str = "out of step with the leader's pushes; send everything";
    pub const ROSTER_WANTED: &str = "this worker does not hold the roster the push names; send it";
}
