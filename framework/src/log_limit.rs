//! Rate-limited logging for lines a client can cause.
//!
//! A malformed frame, a refused connect or a rate-limited message is worth one log line — but
//! a client that sends a hundred thousand of them must not write a hundred thousand lines:
//! the log is a shared resource, and filling a disk is a denial of service too. Each call site
//! gets its own [`LogLimiter`]: at most one line per second, and the next line that does get
//! through says how many were suppressed in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the first call, from a monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// One call site's budget: one line per [`LogLimiter::PERIOD_MS`].
#[derive(Debug, Default)]
pub struct LogLimiter {
    /// When the last line was let through (ms since start, 0 = never).
    last: AtomicU64,
    /// Lines suppressed since then.
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// At most one line per this many milliseconds.
    pub const PERIOD_MS: u64 = 1000;

    /// A limiter that has let nothing through yet.
    pub const fn new() -> Self {
        LogLimiter {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` if a line may be written now (with how many were dropped since the
    /// last one), `None` if it must be dropped.
    pub fn allow(&self) -> Option<u64> {
        let now = now_ms();
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::PERIOD_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One winner per period when several threads race here.
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// `tracing::warn!` at most once a second per call site; the line carries `suppressed = N`
/// when lines were dropped since the previous one.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimiter = $crate::log_limit::LogLimiter::new();
        if let Some(suppressed) = LIMIT.allow() {
            if suppressed > 0 {
                ::tracing::warn!(suppressed, $($arg)+);
            } else {
                ::tracing::warn!($($arg)+);
            }
        }
    }};
}

/// `tracing::error!` at most once a second per call site (for errors a client can trigger at
/// will, such as a channel crashing on an unknown event).
#[macro_export]
macro_rules! error_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimiter = $crate::log_limit::LogLimiter::new();
        if let Some(suppressed) = LIMIT.allow() {
            if suppressed > 0 {
                ::tracing::error!(suppressed, $($arg)+);
            } else {
                ::tracing::error!($($arg)+);
            }
        }
    }};
}

/// `tracing::info!` at most once a second per call site.
#[macro_export]
macro_rules! info_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimiter = $crate::log_limit::LogLimiter::new();
        if let Some(suppressed) = LIMIT.allow() {
            if suppressed > 0 {
                ::tracing::info!(suppressed, $($arg)+);
            } else {
                ::tracing::info!($($arg)+);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_then_the_count_of_the_dropped_ones() {
        let l = LogLimiter::new();
        assert_eq!(l.allow(), Some(0), "the first line goes through");
        for _ in 0..99 {
            assert_eq!(l.allow(), None);
        }
        // Pretend the period passed (0 = "never let a line through").
        let earlier = now_ms().saturating_sub(LogLimiter::PERIOD_MS);
        l.last.store(earlier, Ordering::Relaxed);
        assert_eq!(
            l.allow(),
            Some(99),
            "the next line reports what was dropped"
        );
        assert_eq!(l.allow(), None);
    }
}
