//! The retry schedule of a route.

use rand::Rng;
use std::time::Duration;

/// The longest a `Retry-After` may push an attempt back.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Each scheduled delay is moved by up to ±20 % so retries of a burst spread out.
const JITTER: f64 = 0.2;

#[derive(Debug, Clone)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        RetrySchedule { delays }
    }

    /// How long to wait after the `attempts`-th failed attempt (1-based), or `None`
    /// when the schedule is exhausted. A `Retry-After` is honoured but clamped to
    /// [the scheduled delay, 10 min].
    pub fn delay_after(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get((attempts as usize).checked_sub(1)?)?;
        let factor = 1.0 + rand::rng().random_range(-JITTER..=JITTER);
        let scheduled = base.mul_f64(factor);
        Some(match retry_after {
            Some(asked) => asked.max(scheduled).min(MAX_RETRY_AFTER.max(scheduled)),
            None => scheduled,
        })
    }

    /// Attempts in all: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_with_jitter_and_exhaustion() {
        let s = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(5), Duration::from_secs(30)]);
        for _ in 0..100 {
            let d = s.delay_after(2, None).unwrap();
            assert!(d >= Duration::from_secs(4) && d <= Duration::from_secs(6), "{d:?}");
        }
        assert!(s.delay_after(4, None).is_none());
        assert!(s.delay_after(0, None).is_none());
        assert_eq!(s.max_attempts(), 4);
    }

    #[test]
    fn retry_after_is_clamped() {
        let s = RetrySchedule::new(vec![Duration::from_secs(1)]);
        let d = s.delay_after(1, Some(Duration::from_secs(3))).unwrap();
        assert_eq!(d, Duration::from_secs(3));
        assert_eq!(s.delay_after(1, Some(Duration::from_secs(99_999))).unwrap(), MAX_RETRY_AFTER);
        assert!(s.delay_after(1, Some(Duration::ZERO)).unwrap() >= Duration::from_millis(800));
    }
}
