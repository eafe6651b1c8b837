//! The one ordering the Rumbl channel needs between posts and joins of the same video.
//!
//! A post commits its row and then broadcasts it; a join reads the rows and then has its held
//! broadcasts released (the framework subscribes the channel before `join` runs, see
//! `ChannelSocket::skip_held_broadcasts`). Between a post's COMMIT and its broadcast there is a
//! window: a join that reads in that window gets the row in its reply, and — if its gate has
//! opened by the time the post broadcasts — the broadcast too, so the watcher sees the
//! annotation twice. So a post holds its video's lock shared from before its insert until
//! after its broadcast, and a join's read holds it exclusively: every row a join reads has
//! either been broadcast already (while the joiner was subscribed: a held broadcast, dropped as
//! covered) or is broadcast after the read (not in the reply). Posts never wait for each other.
//!
//! The locks are a fixed set of stripes hashed by video id, so the table never grows with the
//! number of videos (fixture mode accepts any id); two videos sharing a stripe only means a
//! join of one waits for in-flight posts of the other.

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Stripes: enough that unrelated videos rarely share one, few enough to be nothing in memory.
const STRIPES: usize = 64;

/// The per-video post/join ordering, shared by every VideoChannel of a router.
#[derive(Clone)]
pub struct JoinBoundary {
    stripes: Arc<[Arc<RwLock<()>>]>,
}

impl Default for JoinBoundary {
    fn default() -> Self {
        JoinBoundary {
            stripes: (0..STRIPES).map(|_| Arc::new(RwLock::new(()))).collect(),
        }
    }
}

impl JoinBoundary {
    fn stripe(&self, video_id: i64) -> Arc<RwLock<()>> {
        let i = (video_id.unsigned_abs() % STRIPES as u64) as usize;
        self.stripes[i].clone()
    }

    /// Held by a post from before its insert until after its broadcast.
    pub async fn post(&self, video_id: i64) -> OwnedRwLockReadGuard<()> {
        self.stripe(video_id).read_owned().await
    }

    /// Held by a join while it reads the video's annotations.
    pub async fn read(&self, video_id: i64) -> OwnedRwLockWriteGuard<()> {
        self.stripe(video_id).write_owned().await
    }
}
