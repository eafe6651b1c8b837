//! A post: one annotation to insert, and the acknowledgement contract both backends keep
//! for it.
//!
//! The video channel answers a `new_annotation` push from the store's result, so the
//! contract lives with the request rather than in either backend: the deadline travels with
//! the row, and so does the hook that broadcasts it. Postgres keeps it in its group commit
//! (`postgres/batcher.rs`), SQLite in its single writer (`sqlite/post.rs`). The input checks
//! are here too, so both backends reject exactly the same posts before touching a database.

use std::time::Duration;

use super::{Annotation, StoreError};

/// How long a post may take, counted from its arrival: well inside phoenix.js's 10 s push
/// timeout, so the client hears the answer (ok or error) itself instead of timing out.
pub const POST_DEADLINE: Duration = Duration::from_secs(5);

/// Runs once for a committed row, in the code path that learned of the commit — the video
/// channel broadcasts the row here, so no row is committed unbroadcast even when its caller
/// was cancelled or gave up.
pub type OnCommit = Box<dyn FnOnce(&Annotation) + Send + 'static>;

/// One annotation to insert, with what the acknowledgement contract needs:
///
/// * a caller that gets `Ok` has its row;
/// * a caller that gets an error (or gives up at its deadline) does not, and never will: the
///   store checks `deadline` before COMMIT and leaves a row whose deadline passed uncommitted;
/// * nothing commits unbroadcast: `on_commit` runs for every committed row.
pub struct Post {
    /// The video annotated.
    pub video_id: i64,
    /// The author (the socket's user).
    pub user_id: i64,
    /// The text.
    pub body: String,
    /// Player time in milliseconds.
    pub at: i64,
    /// Past this instant the row is not committed any more (the caller gets an error).
    pub deadline: tokio::time::Instant,
    /// Runs once if (and only if) the row is committed.
    pub on_commit: Option<OnCommit>,
}

impl Post {
    /// A post with a deadline [`POST_DEADLINE`] from now and no commit hook.
    pub fn new(video_id: i64, user_id: i64, body: &str, at: i64) -> Self {
        Post {
            video_id,
            user_id,
            body: body.to_string(),
            at,
            deadline: tokio::time::Instant::now() + POST_DEADLINE,
            on_commit: None,
        }
    }

    /// Runs the commit hook (at most once).
    pub(crate) fn committed(&mut self, ann: &Annotation) {
        if let Some(f) = self.on_commit.take() {
            f(ann);
        }
    }
}

/// The error for a post whose deadline passed before its row could be committed.
pub(crate) fn deadline_passed() -> StoreError {
    StoreError::Unavailable(format!(
        "no commit within the post deadline ({POST_DEADLINE:?} from arrival)"
    ))
}

/// Input checks shared by both backends, so they reject the same things.
pub(crate) fn validate_annotation(body: &str, at: i64) -> Result<(), StoreError> {
    if body.trim().is_empty() {
        return Err(StoreError::Invalid("body can't be blank".into()));
    }
    if body.chars().count() > super::MAX_BODY_CHARS {
        return Err(StoreError::Invalid(format!(
            "body should be at most {} character(s)",
            super::MAX_BODY_CHARS
        )));
    }
    if !(0..=i64::from(i32::MAX)).contains(&at) {
        return Err(StoreError::Invalid(format!(
            "at must be between 0 and {} milliseconds, got {at}",
            i32::MAX
        )));
    }
    Ok(())
}
