//! Batch time: milliseconds since the Unix epoch, always a multiple of the batch interval (as in Spark).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time that identifies a batch: the end of the interval whose data it holds, in epoch milliseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// The current wall-clock time.
    pub fn now() -> Time {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Time(since.as_millis() as u64)
    }

    /// The first multiple of `interval` strictly after `self`.
    pub fn next_multiple(self, interval: Duration) -> Time {
        let step = interval_millis(interval);
        Time((self.0 / step + 1) * step)
    }

    /// `self + interval`.
    pub fn plus(self, interval: Duration) -> Time {
        Time(self.0 + interval_millis(interval))
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// As a `SystemTime`, for sleeping until it.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

/// A batch interval in whole milliseconds; never zero (configuration validation rejects zero earlier).
pub(crate) fn interval_millis(interval: Duration) -> u64 {
    (interval.as_millis() as u64).max(1)
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_multiple_is_strictly_after() {
        let second = Duration::from_secs(1);
        assert_eq!(Time(1_500).next_multiple(second), Time(2_000));
        assert_eq!(Time(2_000).next_multiple(second), Time(3_000));
        assert_eq!(Time(0).next_multiple(Duration::from_millis(10)), Time(10));
    }
}
