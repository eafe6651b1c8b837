//! The error a request body fails with when it does not arrive within `HTTP_BODY_TIMEOUT_MS`:
//! made by the HTTP layer ([`crate::http::limits`]), recognised by whoever reads a body (the
//! LongPoll transport answers it `{"status":408}`). A module of its own so that neither of
//! the two has to import the other.

use std::error::Error as StdError;
use std::time::Duration;

/// The body did not arrive within `HTTP_BODY_TIMEOUT_MS` of the end of the request's head.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?} (HTTP_BODY_TIMEOUT_MS)")]
pub struct BodyTimeout(pub Duration);

/// Whether `err`, or an error it wraps (axum and `http_body_util` wrap body errors), is a
/// [`BodyTimeout`]: a handler that reads a body tells a slow client from a broken one with it.
pub fn is_body_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<BodyTimeout>() {
            return true;
        }
        next = e.source();
    }
    false
}
