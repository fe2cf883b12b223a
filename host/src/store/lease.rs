//! Leases on claimed deliveries: who holds a delivery, and until when (see the
//! [`Store`](super::Store) docs).

use crate::record::Delivery;
use std::sync::Arc;
use std::time::Duration;

/// How long a lease taken by [`Store::claim_pending`](super::Store::claim_pending)
/// runs before its holder must renew it.
pub const LEASE_TERM: Duration = Duration::from_secs(300);

/// The node holding a lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseOwner(Arc<str>);

impl LeaseOwner {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        LeaseOwner(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds a set of deliveries, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: LeaseOwner,
    /// When the lease ends unless renewed (ms since the epoch); `None` while the owner
    /// runs (a single-node store, whose lease is the process).
    pub expires_ms: Option<u64>,
}

/// What one claim took.
#[derive(Debug)]
pub struct Claimed {
    pub lease: Lease,
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
}

/// What one renewal did.
#[derive(Debug)]
pub struct Renewal {
    /// The lease the renewed deliveries are now held under.
    pub lease: Lease,
    /// Ids no longer held: delivered or dead-lettered meanwhile, released, or claimed
    /// by another node after the lease expired. Stop attempting them.
    pub lost: Vec<i64>,
}
