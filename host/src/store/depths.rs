//! Pending deliveries and DLQ entries, counted in the store, and the last count kept
//! for `/readyz`.

use super::StoreError;
use std::sync::Mutex;
use std::time::Instant;

/// Pending deliveries and DLQ entries, counted in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depths {
    pub pending: u64,
    pub dead: u64,
}

/// The last count of [`Depths`], or why it failed, and when it was taken.
#[derive(Debug, Clone)]
pub struct DepthSample {
    pub depths: Result<Depths, String>,
    pub at: Instant,
}

/// The last [`DepthSample`] a store took, for any implementation to keep.
#[derive(Debug, Default)]
pub struct DepthCache(Mutex<Option<DepthSample>>);

impl DepthCache {
    /// Keeps `depths` (or its error) as the last sample and hands it back.
    pub fn keep(&self, depths: Result<Depths, StoreError>) -> Result<Depths, StoreError> {
        let sample = DepthSample { depths: depths.clone().map_err(|e| e.message), at: Instant::now() };
        if let Ok(mut last) = self.0.lock() {
            *last = Some(sample);
        }
        depths
    }

    pub fn last(&self) -> Option<DepthSample> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}
