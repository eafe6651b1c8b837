//! Behaviour every `AnnotationStore` backend must have.
//!
//! Included as a module by `store_sqlite.rs` and `store_postgres.rs`
//! (`#[path = "store_contract.rs"] mod contract;`) so both backends are held
//! to the same assertions; compiled on its own it contains no tests.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumbl::store::{AnnotationStore, Post, StoreError};

pub type Store = Arc<dyn AnnotationStore>;

/// Migrating a second time changes nothing and reports every migration as
/// already applied.
pub async fn migrations_idempotent(store: &Store) {
    let first = store.migrate().await.expect("first migrate");
    let second = store.migrate().await.expect("second migrate");
    assert!(second.is_noop(), "second run changed something: {second:?}");
    assert_eq!(second.already_applied.len(), 4, "{second:?}");
    assert!(second.adopted_tables.is_empty(), "{second:?}");
    // The first call either applied everything or (auto-migrated store)
    // found it applied already.
    assert_eq!(first.applied.len() + first.already_applied.len(), 4);
    let third = store.migrate().await.expect("third migrate");
    assert_eq!(third, second);
}

/// Annotations come back ordered by (at, id), ties broken by id.
pub async fn ordering_by_at_then_id(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(1).await.expect("video");
    let ats = [500, 100, 500, 0, 100, 500, 250];
    let mut inserted = Vec::new();
    for (i, at) in ats.iter().enumerate() {
        let a = store
            .insert_annotation(1, 1, &format!("note {i}"), *at)
            .await
            .expect("insert");
        inserted.push((a.at, a.id));
    }
    let listed: Vec<(i64, i64)> = store
        .annotations(1, 0, 200)
        .await
        .expect("list")
        .iter()
        .map(|a| (a.at, a.id))
        .collect();
    let mut expected = inserted.clone();
    expected.sort();
    assert_eq!(listed, expected);
    // ids strictly increase in insertion order, so ties really were broken by id
    assert!(inserted.windows(2).all(|w| w[0].1 < w[1].1));
}

/// At most `limit` rows; the first page is the first 200 by (at, id) and
/// `after_id` continues from the last seen id.
pub async fn limit_200_of_250(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(3).await.expect("video");
    let mut ids = Vec::new();
    for i in 0..250 {
        let a = store
            .insert_annotation(3, 1, &format!("n{i}"), i * 10)
            .await
            .expect("insert");
        ids.push(a.id);
    }
    let page = store.annotations(3, 0, 200).await.expect("page 1");
    assert_eq!(page.len(), 200);
    assert_eq!(
        page.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[..200].to_vec()
    );
    let last = page.last().map(|a| a.id).expect("non-empty");
    let rest = store.annotations(3, last, 200).await.expect("page 2");
    assert_eq!(
        rest.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[200..].to_vec()
    );
    assert_eq!(store.annotations(3, 0, 0).await.expect("limit 0").len(), 0);
    assert_eq!(store.annotations(3, 0, -5).await.expect("neg").len(), 0);
}

/// `after_id` (the client's last_seen_id) filters by id, not by position.
pub async fn after_id_filters(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(4).await.expect("video");
    store.ensure_video(5).await.expect("other video");
    let mut ids = Vec::new();
    for i in 0..5 {
        // descending `at`: id order and list order differ
        let a = store
            .insert_annotation(4, 1, &format!("x{i}"), 1000 - i * 100)
            .await
            .expect("insert");
        ids.push(a.id);
        // interleave rows of another video that must never show up
        store
            .insert_annotation(5, 1, "other", 1)
            .await
            .expect("insert other");
    }
    let after = store.annotations(4, ids[2], 200).await.expect("list");
    let got: HashSet<i64> = after.iter().map(|a| a.id).collect();
    assert_eq!(got, HashSet::from([ids[3], ids[4]]));
    // ordered by at: ids[4] (at 600) before ids[3] (at 700)
    assert_eq!(after[0].id, ids[4]);
    assert!(after.iter().all(|a| a.video_id == 4));
    let none = store.annotations(4, ids[4], 200).await.expect("list");
    assert!(none.is_empty());
    assert_eq!(store.annotations(4, 0, 200).await.expect("all").len(), 5);
}

/// Every annotation carries its own user.
pub async fn user_preloaded(store: &Store) {
    store.ensure_video(6).await.expect("video");
    for uid in [11, 12] {
        store.ensure_user(uid).await.expect("user");
    }
    let a = store
        .insert_annotation(6, 11, "from eleven", 5)
        .await
        .expect("insert");
    assert_eq!(a.user.id, 11);
    assert_eq!(a.user.username, "user11");
    assert_eq!(a.body, "from eleven");
    assert_eq!(a.at, 5);
    assert_eq!(a.video_id, 6);
    store
        .insert_annotation(6, 12, "from twelve", 6)
        .await
        .expect("insert");
    let listed = store.annotations(6, 0, 200).await.expect("list");
    let names: Vec<(i64, &str)> = listed
        .iter()
        .map(|a| (a.user.id, a.user.username.as_str()))
        .collect();
    assert_eq!(names, vec![(11, "user11"), (12, "user12")]);
    assert_eq!(listed[0], a, "listed row equals the row insert returned");
}

/// 8 tasks × 50 inserts: 400 distinct ids, all listed, each visible right
/// after its insert returned (insert returns only after commit).
pub async fn concurrent_inserts(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(7).await.expect("video");
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50i64 {
                let a = store
                    .insert_annotation(7, 1, &format!("t{t} i{i}"), t * 1000 + i)
                    .await
                    .expect("concurrent insert");
                ids.push(a.id);
            }
            // committed: visible through another connection
            let last = *ids.last().expect("50 ids");
            let seen = store.annotations(7, last - 1, 1000).await.expect("list");
            assert!(seen.iter().any(|a| a.id == last), "insert not visible");
            ids
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.expect("task") {
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 400);
    let listed = store.annotations(7, 0, 1000).await.expect("list");
    assert_eq!(listed.len(), 400);
    let listed_ids: HashSet<i64> = listed.iter().map(|a| a.id).collect();
    assert_eq!(listed_ids, all);
}

/// Unknown rows give None / empty / NotFound; bad input gives Invalid.
pub async fn unknown_and_invalid(store: &Store) {
    assert_eq!(store.video(987_654).await.expect("video"), None);
    assert_eq!(store.user(987_654).await.expect("user"), None);
    assert!(store
        .annotations(987_654, 0, 200)
        .await
        .expect("list")
        .is_empty());
    store.ensure_user(1).await.expect("user");
    store.ensure_video(8).await.expect("video");
    let e = store.insert_annotation(987_654, 1, "hi", 0).await;
    assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
    let e = store.insert_annotation(8, 987_654, "hi", 0).await;
    assert!(matches!(e, Err(StoreError::NotFound(_))), "{e:?}");
    let e = store.insert_annotation(8, 1, "   ", 0).await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = store.insert_annotation(8, 1, "hi", -1).await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    let e = store
        .insert_annotation(8, 1, "hi", i64::from(i32::MAX) + 1)
        .await;
    assert!(matches!(e, Err(StoreError::Invalid(_))), "{e:?}");
    // the maximum itself is accepted
    let ok = store
        .insert_annotation(8, 1, "hi", i64::from(i32::MAX))
        .await
        .expect("max at");
    assert_eq!(ok.at, i64::from(i32::MAX));
    // failed inserts left nothing behind
    assert_eq!(store.annotations(8, 0, 200).await.expect("list").len(), 1);
}

/// Fixture mode creates missing rows and leaves existing ones alone.
pub async fn fixtures_create_rows(store: &Store) {
    assert_eq!(store.video(42).await.expect("video"), None);
    store.ensure_video(42).await.expect("ensure video");
    store.ensure_video(42).await.expect("ensure video again");
    let v = store.video(42).await.expect("video").expect("created");
    assert_eq!(v.id, 42);
    assert_eq!(v.title, "Video 42");
    assert_eq!(v.param(), "42-video-42");

    store.ensure_user(7).await.expect("ensure user");
    store.ensure_user(7).await.expect("ensure user again");
    let u = store.user(7).await.expect("user").expect("created");
    assert_eq!(u.username, "user7");
    assert_eq!(store.users().await.expect("users").len(), 1);
    assert_eq!(
        store
            .videos()
            .await
            .expect("videos")
            .iter()
            .map(|v| v.id)
            .collect::<Vec<_>>(),
        vec![42]
    );
    let a = store
        .insert_annotation(42, 7, "fixture works", 1)
        .await
        .expect("insert on fixture rows");
    assert_eq!(a.user.username, "user7");
}

/// Demo data goes into an empty database once, with /watch/2-elixir.
pub async fn seed_once(store: &Store) {
    let r = store.seed_demo_if_empty().await.expect("seed");
    assert!(r.seeded);
    assert_eq!((r.users, r.videos, r.categories), (3, 2, 2));
    let v2 = store.video(2).await.expect("video").expect("video 2");
    assert_eq!(v2.param(), "2-elixir");
    assert_eq!(v2.slug.as_deref(), Some("elixir"));
    assert!(v2.category_id.is_some());
    let v1 = store.video(1).await.expect("video").expect("video 1");
    assert!(v1.param().starts_with("1-"));
    let users: Vec<String> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(users, vec!["jose", "chris", "bruce"]);
    let anns = store.annotations(2, 0, 200).await.expect("list");
    assert!(anns.len() >= 2);
    assert_eq!(anns[0].user.username, "jose");
    let again = store.seed_demo_if_empty().await.expect("seed again");
    assert!(!again.seeded);
    assert_eq!(store.users().await.expect("users").len(), 3);
    // ids after the explicit ones stay usable
    store.ensure_user(4).await.expect("next user");
    let a = store
        .insert_annotation(2, 4, "after seed", 0)
        .await
        .expect("insert after seed");
    assert!(a.id > anns.iter().map(|a| a.id).max().unwrap_or(0));
}

/// Asserts `fut` fails with Unavailable within `within`.
pub async fn expect_unavailable<T: std::fmt::Debug>(
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
    within: Duration,
) {
    let started = Instant::now();
    let r = tokio::time::timeout(within + Duration::from_secs(5), fut)
        .await
        .expect("call hung instead of failing");
    let took = started.elapsed();
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {r:?}"
    );
    assert!(took <= within, "took {took:?}, expected at most {within:?}");
}

/// A post with a commit hook that counts how often it ran (and records the row it saw).
pub fn counted_post(
    video_id: i64,
    user_id: i64,
    body: &str,
    deadline: tokio::time::Instant,
) -> (Post, Arc<std::sync::Mutex<Vec<i64>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook_seen = seen.clone();
    let post = Post {
        video_id,
        user_id,
        body: body.to_string(),
        at: 0,
        deadline,
        on_commit: Some(Box::new(move |a| {
            hook_seen.lock().expect("hook lock").push(a.id)
        })),
    };
    (post, seen)
}

/// The acknowledgement contract's deadline: a post whose deadline has passed before the store
/// could commit it gets an error, its row never appears, and its commit hook never runs.
pub async fn deadline_passed_is_not_committed(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(9).await.expect("video");
    let past = tokio::time::Instant::now() - Duration::from_millis(1);
    let (post, hooks) = counted_post(9, 1, "too late", past);
    let r = store.post_annotation(post).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(
        hooks.lock().expect("hooks").is_empty(),
        "hook ran for an uncommitted row"
    );
    // A later post commits (a barrier): the late one is still not there.
    store
        .insert_annotation(9, 1, "in time", 0)
        .await
        .expect("in time");
    let bodies: Vec<String> = store
        .annotations(9, 0, 200)
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.body)
        .collect();
    assert_eq!(bodies, vec!["in time".to_string()]);
}

/// Nothing commits unbroadcast: 200 concurrent posts (some to an unknown video, some whose
/// callers are cancelled at once) — every row in the table had its hook run exactly once
/// with its id, every `Ok` is in the table, and no error is.
pub async fn every_committed_row_ran_its_hook(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(10).await.expect("video");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut set = tokio::task::JoinSet::new();
    let mut hooks = Vec::new();
    for i in 0..200i64 {
        let video = if i % 40 == 39 { 987_001 } else { 10 };
        let (post, seen) = counted_post(video, 1, &format!("hook {i}"), deadline);
        hooks.push((format!("hook {i}"), seen));
        let store = store.clone();
        let handle = set.spawn(async move { (i, store.post_annotation(post).await) });
        if i % 25 == 0 {
            // The caller goes away (a drain, a dropped channel): the store still either
            // commits and runs the hook, or does neither.
            handle.abort();
        }
    }
    let mut answered = std::collections::HashMap::new();
    while let Some(j) = set.join_next().await {
        if let Ok((i, r)) = j {
            answered.insert(format!("hook {i}"), r);
        }
    }
    // A cancelled post's batch may still be between its COMMIT and its hook: poll until the
    // table and the hooks agree (a row without its hook, or a hook without its row, never
    // settles — the timeout only detects that).
    let settle_by = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.annotations(10, 0, 1000).await.expect("list");
        let in_table: std::collections::HashMap<String, i64> =
            rows.iter().map(|a| (a.body.clone(), a.id)).collect();
        let disagree: Vec<String> = hooks
            .iter()
            .filter_map(|(body, seen)| {
                let seen = seen.lock().expect("hooks").clone();
                let agrees = match in_table.get(body) {
                    Some(id) => seen == vec![*id],
                    None => seen.is_empty(),
                };
                (!agrees)
                    .then(|| format!("{body}: row {:?}, hook calls {seen:?}", in_table.get(body)))
            })
            .collect();
        if disagree.is_empty() {
            for (body, r) in &answered {
                match r {
                    Ok(a) => assert_eq!(
                        in_table.get(body),
                        Some(&a.id),
                        "{body} ok but not in the table"
                    ),
                    Err(e) => assert!(
                        !in_table.contains_key(body),
                        "{body} answered {e:?} but committed"
                    ),
                }
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < settle_by,
            "rows and commit hooks disagree: {disagree:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = answered.values().filter(|r| r.is_ok()).count();
    assert!(ok >= 180, "only {ok} of the uncancelled posts succeeded");
}

/// `body` is at most 1000 Unicode scalar values: 1001 × `a`/`é`/`😀` is Invalid, 1000 × `😀`
/// (4000 bytes) is stored whole.
pub async fn body_limit(store: &Store) {
    store.ensure_user(1).await.expect("user");
    store.ensure_video(11).await.expect("video");
    for c in ["a", "é", "😀"] {
        let e = store.insert_annotation(11, 1, &c.repeat(1001), 0).await;
        assert!(
            matches!(e, Err(StoreError::Invalid(_))),
            "1001 × {c}: {e:?}"
        );
    }
    let long = "😀".repeat(1000);
    let a = store
        .insert_annotation(11, 1, &long, 0)
        .await
        .expect("1000 scalars");
    assert_eq!(a.body, long);
    let listed = store.annotations(11, 0, 200).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].body.len(), 4000);
}

/// `users_by_ids`: the known ids among those asked, in one call; unknown ids are absent and
/// an empty list asks nothing.
pub async fn users_by_ids(store: &Store) {
    for id in [11, 12, 13] {
        store.ensure_user(id).await.expect("user");
    }
    let found = store
        .users_by_ids(&[13, 11, 999_999, 11])
        .await
        .expect("users_by_ids");
    let mut ids: Vec<i64> = found.keys().copied().collect();
    ids.sort_unstable();
    assert_eq!(ids, [11, 13]);
    assert_eq!(found[&13].id, 13);
    assert_eq!(
        Some(&found[&11]),
        store.user(11).await.expect("user").as_ref()
    );
    assert!(store.users_by_ids(&[]).await.expect("empty").is_empty());
}
