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
    /// A control-plane change names a resource that is not there (HTTP 404); the
    /// message names it.
    NotFound,
    /// A control-plane change would create what exists already, or a duplicate of a
    /// unique value (a token's digest) (HTTP 409); the message names it.
    Conflict,
    /// A control-plane change expected another revision than the resource is at (HTTP
    /// 412): "tenant `acme` is at revision 3, not 2".
    PreconditionFailed,
    /// The at-rest key is missing (storing a signing secret without
    /// `server.secret_key_env` / `_file`) or is not the one the stored secrets were
    /// sealed with; the message names the setting, never the key.
    SecretKey,
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
