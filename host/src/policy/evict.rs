//! The sweeper that frees idle instances of tenants that went quiet, and the least
//! recently used ones first when idle instances exceed the memory budget.

use super::live::LivePolicy;
use crate::clock::now_ms;

/// One sweep over every tenant's live policy: frees the idle instances of tenants
/// unused for `ttl_ms` and of previous versions, then, while idle instances hold more
/// than three quarters of `budget`, those of the least recently used tenants — so
/// tenants that are busy now find room to keep theirs (an instance is only kept if it
/// fits the budget: see `IdleBudget`). Returns the instances freed.
pub fn sweep<'a>(lives: impl IntoIterator<Item = &'a LivePolicy>, ttl_ms: u64, budget: u64) -> usize {
    let now = now_ms();
    let mut freed = 0;
    let mut live = Vec::new();
    for l in lives {
        if let Some(previous) = l.previous() {
            freed += previous.evict_idle();
        }
        let version = l.current();
        if now.saturating_sub(version.last_used_ms()) > ttl_ms {
            freed += version.evict_idle();
        } else {
            live.push((version.last_used_ms(), version.idle_memory(), version));
        }
    }
    let mut held: u64 = live.iter().map(|(_, m, _)| m).sum();
    let target = budget - budget / 4;
    if held > target {
        live.sort_by_key(|(used, _, _)| *used);
        for (_, memory, version) in live {
            if held <= target {
                break;
            }
            freed += version.evict_idle();
            held = held.saturating_sub(memory);
        }
    }
    if freed > 0 {
        tracing::debug!("freed {freed} idle policy instance(s)");
    }
    freed
}
