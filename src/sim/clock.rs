//! The simulator's virtual clock.
//!
//! Virtual time = `start + real elapsed × time_scale + manual advances`. Everything that moves
//! on its own in the simulator (device upgrades, campaign states, token and session lifetimes)
//! reads this clock, so a test can run a week-long campaign in seconds either with a large
//! `--time-scale` or with `POST /_sim/clock/advance`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// A clock that runs `time_scale` times faster than real time and can be advanced by hand.
#[derive(Debug)]
pub struct SimClock {
    start_virtual: Timestamp,
    start_real: Instant,
    time_scale: f64,
    /// Manual advances, in nanoseconds.
    advanced_nanos: AtomicI64,
}

impl SimClock {
    /// A clock that starts at `start` and runs `time_scale` times faster than real time.
    /// A non-finite or negative scale is treated as 0 (time only moves by [`SimClock::advance`]).
    pub fn new(start: Timestamp, time_scale: f64) -> Self {
        let time_scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            0.0
        };
        Self {
            start_virtual: start,
            start_real: Instant::now(),
            time_scale,
            advanced_nanos: AtomicI64::new(0),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        let real = self.start_real.elapsed().as_secs_f64() * self.time_scale;
        let scaled = SignedDuration::try_from_secs_f64(real).unwrap_or(SignedDuration::MAX);
        let advanced = SignedDuration::from_nanos(self.advanced_nanos.load(Ordering::Relaxed));
        self.start_virtual
            .saturating_add(scaled)
            .and_then(|t| t.saturating_add(advanced))
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves virtual time forward by `by` (negative values are ignored) and returns the new time.
    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        if by.is_positive() {
            let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
            self.advanced_nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(old.saturating_add(nanos))
                })
                .ok();
        }
        self.now()
    }

    /// How many virtual seconds pass per real second.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// The virtual time the clock started at.
    pub fn started_at(&self) -> Timestamp {
        self.start_virtual
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_by_advance() {
        let start: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        let clock = SimClock::new(start, 0.0);
        assert_eq!(clock.now(), start);
        let later = clock.advance(SignedDuration::from_hours(2));
        assert_eq!(later, start + SignedDuration::from_hours(2));
        clock.advance(SignedDuration::from_secs(-50));
        assert_eq!(clock.now(), later);
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let start: Timestamp = "2024-06-01T00:00:00Z".parse().unwrap();
        let clock = SimClock::new(start, 10_000.0);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.now() >= start + SignedDuration::from_secs(50));
    }
}
