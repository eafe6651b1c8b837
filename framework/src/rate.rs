//! Token buckets for per-socket rate limits (joins, messages).
//!
//! A bucket holds up to `burst` tokens and refills at `per_sec` tokens a second; each event
//! takes one. Kept to eight bytes (a float and a millisecond stamp), since every socket carries
//! two of them.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the process's first bucket, wrapping after ~49 days (the subtraction in
/// `take` is wrapping too, so a wrap only costs one refill computed from a short interval).
fn now_ms() -> u32 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// The limit a bucket enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second; 0 disables the limit.
    pub per_sec: u32,
    /// Most tokens held (and the size of the first burst).
    pub burst: u32,
}

impl Rate {
    /// `per_sec` a second after a burst of `burst` (0 = unlimited).
    pub fn new(per_sec: u32, burst: u32) -> Rate {
        Rate {
            per_sec,
            burst: burst.max(1),
        }
    }
}

/// One bucket. Starts full.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    /// Tokens left.
    tokens: f32,
    /// When `tokens` was last brought up to date.
    stamp: u32,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub fn full(rate: Rate) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst as f32,
            stamp: now_ms(),
        }
    }

    /// Takes a token if there is one; false when the caller is over `rate`.
    pub fn take(&mut self, rate: Rate) -> bool {
        if rate.per_sec == 0 {
            return true;
        }
        let now = now_ms();
        let elapsed = now.wrapping_sub(self.stamp);
        if elapsed > 0 {
            let refill = elapsed as f32 * rate.per_sec as f32 / 1000.0;
            self.tokens = (self.tokens + refill).min(rate.burst as f32);
            self.stamp = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_nothing_until_it_refills() {
        let rate = Rate::new(1, 3);
        let mut b = TokenBucket::full(rate);
        assert!(b.take(rate) && b.take(rate) && b.take(rate), "the burst");
        assert!(!b.take(rate), "empty");
        // A second later (pretend) one token is back.
        b.stamp = b.stamp.wrapping_sub(1000);
        assert!(b.take(rate));
        assert!(!b.take(rate));
    }

    #[test]
    fn zero_means_unlimited() {
        let rate = Rate::new(0, 1);
        let mut b = TokenBucket::full(rate);
        assert!((0..10_000).all(|_| b.take(rate)));
    }
}
