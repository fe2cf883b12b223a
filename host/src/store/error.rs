//! The store's one error type: where the store is, what went wrong, and the kind a
//! caller branches on.

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be opened: its directory is locked by another hostd, or its
    /// files or schema cannot be created. Startup stops.
    Open,
    /// A read or write failed now (I/O, a full or read-only disk, a stopped writer):
    /// nothing of the operation was stored; worth a retry later (HTTP 503).
    Unavailable,
    /// The delivery is held by another owner (its lease expired and another node claimed
    /// it): the caller must stop attempting it. A single-node store never answers this.
    LeaseLost,
}

/// A store failure, shown as `spool {location}: {message}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("spool {location}: {message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// Where the store is: its file, or its server.
    pub location: String,
    pub message: String,
}
