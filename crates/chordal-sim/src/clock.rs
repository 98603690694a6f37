//! Each simulated node's wall clock: what it passes its core as `now`.
//!
//! Real nodes' clocks are off by seconds to hours (a missing NTP sync, a
//! VM resumed from a snapshot), run a little fast or slow, and get stepped
//! back or forward. The store's versions are read from these clocks, so
//! the simulator gives each node its own: `local = virtual × (1 + drift) +
//! offset`, never below zero. [`Sim::set_clock`](crate::Sim::set_clock)
//! changes it at any moment (a step); a restarted node keeps its clock.

use chordal_core::Time;

/// A node's clock relative to virtual time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Added to the (drifted) virtual time, in microseconds.
    pub offset_micros: i64,
    /// Rate error in parts per million (positive: runs fast). Must be
    /// above -1,000,000 (a clock that runs forward).
    pub drift_ppm: i64,
}

impl Clock {
    /// A clock `offset_micros` ahead of virtual time (behind if negative).
    pub fn offset(offset_micros: i64) -> Clock {
        Clock {
            offset_micros,
            drift_ppm: 0,
        }
    }

    /// The time this clock shows at virtual time `t`.
    pub fn read(&self, t: Time) -> Time {
        if *self == Clock::default() {
            return t;
        }
        let v = t.as_micros() as i128;
        let local = v + v * self.drift_ppm as i128 / 1_000_000 + self.offset_micros as i128;
        Time::from_micros(local.clamp(0, u64::MAX as i128) as u64)
    }

    /// The earliest virtual time at which this clock shows `local` or
    /// later (for turning a node's wake-up time into the simulator's).
    pub fn to_virtual(&self, local: Time) -> Time {
        if *self == Clock::default() {
            return local;
        }
        let rate = 1_000_000 + self.drift_ppm as i128;
        let want = local.as_micros() as i128 - self.offset_micros as i128;
        // Smallest v with v * rate / 1e6 >= want (rounded up), then fix up
        // the integer rounding of `read`.
        let mut v = (want * 1_000_000 + rate - 1).div_euclid(rate).max(0);
        while self.read(Time::from_micros(v as u64)) < local {
            v += 1;
        }
        while v > 0 && self.read(Time::from_micros(v as u64 - 1)) >= local {
            v -= 1;
        }
        Time::from_micros(v.clamp(0, u64::MAX as i128) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_clock_is_virtual_time() {
        let c = Clock::default();
        assert_eq!(c.read(Time::from_micros(123)), Time::from_micros(123));
        assert_eq!(c.to_virtual(Time::from_micros(123)), Time::from_micros(123));
    }

    #[test]
    fn to_virtual_inverts_read() {
        for clock in [
            Clock::offset(3_600_000_000),
            Clock::offset(-5_000),
            Clock {
                offset_micros: 7,
                drift_ppm: 250,
            },
            Clock {
                offset_micros: 1_000_000,
                drift_ppm: -300,
            },
        ] {
            for v in [0u64, 1, 999, 1_000_000, 86_400_000_000] {
                let local = clock.read(Time::from_micros(v));
                let back = clock.to_virtual(local);
                assert!(back.as_micros() <= v, "{clock:?} {v}");
                assert_eq!(clock.read(back), local, "{clock:?} {v}");
            }
        }
        // Before the clock's zero: the earliest virtual time.
        assert_eq!(
            Clock::offset(-50).to_virtual(Time::from_micros(0)),
            Time::ZERO
        );
        assert_eq!(
            Clock::offset(-50).to_virtual(Time::from_micros(10)),
            Time::from_micros(60)
        );
    }
}
