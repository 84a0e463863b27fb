//! How a metered request ended, as the ledger records it. One enum owned by metering, so the
//! gateway reports an end and metering decides what it means (only a `Complete` answer's usage
//! settles below its reservation); the spellings are the ledger's `outcome` column.

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted, not yet settled (the row as the admission journals it).
    Reserved,
    /// The answer was relayed whole.
    Complete,
    /// The client hung up before the answer ended.
    ClientGone,
    /// The provider failed after the answer had started (or its answer could not be relayed).
    UpstreamFailed,
    /// No provider served it.
    Failed,
    /// Found admitted and never settled when the ledger was opened (a crash).
    Interrupted,
}

impl Outcome {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Complete => "complete",
            Self::ClientGone => "client_gone",
            Self::UpstreamFailed => "upstream_failed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}
