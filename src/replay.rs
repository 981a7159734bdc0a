//! Pacing a recording's replay: [`Pacer`] says when each entry is due, at a
//! speed and with a bound on every wait, for every way of playing one.
//!
//! A long quiet spell plays as [`MAX_WAIT`] at most (as asciinema's idle
//! limit does), so that no recording, however damaged its times, stalls a
//! replay; and no speed, however small, overflows the arithmetic.

use std::time::Duration;
use tokio::time::Instant;

/// The longest a replay waits between two entries, whatever the recorded
/// gap and the speed: a longer gap is shortened to this.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What an instant that never comes is clamped to: about 30 years.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `ms` of recorded time played at `speed`, as wall time: saturates instead
/// of failing for a speed so small that the result does not fit. `speed`
/// must be positive.
pub(crate) fn played(ms: u64, speed: f64) -> Duration {
    Duration::try_from_secs_f64(ms as f64 / 1000.0 / speed).unwrap_or(Duration::MAX)
}

/// `start + d`, an instant that never comes (30 years on) for a `d` too
/// large to add.
pub(crate) fn later(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(FAR)).unwrap_or(start)
}

/// Whether `speed` paces a replay: a positive, finite factor. Anything else
/// (0, NaN, negative, infinite) plays as fast as the reader goes.
fn paces(speed: f64) -> bool {
    speed.is_finite() && speed > 0.0
}

/// When each entry of a recording is due, played at `speed`: the recorded
/// gap between two entries, divided by the speed and shortened to
/// `max_wait`, after the previous entry was due.
///
/// Counting from the previous entry's due time (not from the wall clock)
/// keeps the pace: a player that fell behind catches up, entry after entry.
#[derive(Clone, Debug)]
pub struct Pacer {
    speed: f64,
    max_wait: Duration,
    /// The entry before the latest: its time and when it was due.
    prev: (u64, Instant),
    /// The latest entry: its time and when it is due.
    last: (u64, Instant),
}

impl Pacer {
    /// A pacer whose time 0 is due now.
    pub fn new(speed: f64, max_wait: Duration) -> Pacer {
        let now = Instant::now();
        Pacer {
            speed,
            max_wait,
            prev: (0, now),
            last: (0, now),
        }
    }

    /// When the entry recorded `at_ms` after the start is due; `None` for
    /// at once (no time, or a speed that does not pace: 0, NaN, negative
    /// or infinite). A time earlier than the latest counts as the latest.
    pub fn due(&mut self, at_ms: Option<u64>) -> Option<Instant> {
        let at = at_ms?.max(self.last.0);
        if !paces(self.speed) {
            self.last.0 = at;
            return None;
        }
        let gap = played(at - self.last.0, self.speed).min(self.max_wait);
        let due = later(self.last.1, gap);
        self.prev = self.last;
        self.last = (at, due);
        Some(due)
    }

    /// The recorded time at `now`, while waiting for the latest entry: the
    /// time of the one before, moved on at the speed since it was due, but
    /// never past the latest entry's (a gap shortened to the longest wait
    /// jumps at its end).
    pub fn recorded_at(&self, now: Instant) -> u64 {
        let (from, since) = self.prev;
        let to = self.last.0;
        if !paces(self.speed) {
            return to;
        }
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        // A float to integer cast saturates (and NaN gives 0).
        let ms = (elapsed * 1000.0 * self.speed) as u64;
        from.saturating_add(ms).min(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pace_too_slow_to_count_saturates_instead_of_panicking() {
        assert_eq!(played(1_500, 1.0), Duration::from_millis(1_500));
        assert_eq!(played(1_000, 4.0), Duration::from_millis(250));
        assert_eq!(played(1, 1e-300), Duration::MAX);
        assert_eq!(played(u64::MAX, f64::MIN_POSITIVE), Duration::MAX);
        assert_eq!(played(0, 1e-300), Duration::ZERO);
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        assert_eq!(later(now, Duration::MAX), now + FAR);
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_is_the_recorded_gap_at_the_speed_and_at_most_the_longest() {
        let max = Duration::from_secs(60);
        let mut pacer = Pacer::new(2.0, max);
        let t0 = Instant::now();
        let dues: Vec<Duration> = [1_000, 3_000, 2_000, 3_000 + 3_600_000, 3_600_000 + 3_100]
            .into_iter()
            .map(|at| pacer.due(Some(at)).unwrap() - t0)
            .collect();
        let ms = Duration::from_millis;
        // Half the gaps; a time that goes back waits nothing; an hour
        // waits a minute; the catch-up keeps the pace after it.
        assert_eq!(
            dues,
            [ms(500), ms(1_500), ms(1_500), ms(61_500), ms(61_550)]
        );

        let mut slow = Pacer::new(1e-300, max);
        assert_eq!(slow.due(Some(1)).unwrap() - t0, max);
        assert_eq!(slow.due(Some(1)).unwrap() - t0, max, "no gap, no wait");

        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut fast = Pacer::new(speed, max);
            assert_eq!(fast.due(Some(5_000)), None, "{speed}");
        }
        assert_eq!(Pacer::new(1.0, max).due(None), None, "a raw capture");
    }

    #[tokio::test(start_paused = true)]
    async fn the_recorded_time_moves_at_the_speed_up_to_the_entry_waited_for() {
        let mut pacer = Pacer::new(4.0, Duration::from_secs(60));
        let t0 = Instant::now();
        pacer.due(Some(1_000));
        let due = pacer.due(Some(9_000)).unwrap();
        assert_eq!(due - t0, Duration::from_millis(2_250));
        let at = |ms| pacer.recorded_at(t0 + Duration::from_millis(ms));
        assert_eq!(at(0), 1_000, "before the previous entry was due");
        assert_eq!(at(250), 1_000);
        assert_eq!(at(1_250), 5_000);
        assert_eq!(at(2_250), 9_000);
        assert_eq!(at(60_000), 9_000, "never past the entry waited for");

        // A shortened gap: the clock moves at the speed, then jumps.
        let mut pacer = Pacer::new(1.0, Duration::from_secs(1));
        pacer.due(Some(0));
        let due = pacer.due(Some(3_600_000)).unwrap();
        assert_eq!(pacer.recorded_at(due - Duration::from_millis(1)), 999);
        assert_eq!(pacer.recorded_at(due + Duration::from_secs(5)), 6_000);
    }
}
