//! [`RateWindow`]: job ends per minute, for the totals.

/// Job ends per second over the last minute, in 60 one-second buckets.
#[derive(Clone, Debug)]
pub(crate) struct RateWindow {
    /// (second, job ends in it), at index second % 60.
    buckets: [(u64, u32); 60],
    /// When the oldest counted second leaves the window (ms), so the
    /// per-minute figure changes; `u64::MAX` if nothing is counted.
    next_expiry_ms: u64,
}

impl RateWindow {
    pub(crate) fn new() -> RateWindow {
        RateWindow {
            buckets: [(u64::MAX, 0); 60],
            next_expiry_ms: u64::MAX,
        }
    }

    pub(crate) fn add(&mut self, now_ms: u64) {
        let sec = now_ms / 1000;
        let b = &mut self.buckets[(sec % 60) as usize];
        if b.0 != sec {
            *b = (sec, 0);
        }
        b.1 = b.1.saturating_add(1);
        self.next_expiry_ms = self.next_expiry_ms.min((sec + 60) * 1000);
    }

    pub(crate) fn per_minute(&self, now_ms: u64) -> u64 {
        let sec = now_ms / 1000;
        self.buckets
            .iter()
            .filter(|(s, _)| *s <= sec && sec - *s < 60)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Moves the window to `now_ms`; true if the per-minute figure changed.
    pub(crate) fn advance(&mut self, now_ms: u64) -> bool {
        if now_ms < self.next_expiry_ms {
            return false;
        }
        let sec = now_ms / 1000;
        self.next_expiry_ms = self
            .buckets
            .iter()
            .filter(|(s, n)| *n > 0 && *s <= sec && sec - *s < 60)
            .map(|(s, _)| (s + 60) * 1000)
            .min()
            .unwrap_or(u64::MAX);
        true
    }
}
