//! Shared by the tests that need real Postgres: where the admin connection is, and the URL of
//! a throwaway database next to it. The test command (scripts/test.sh) sets `DATABASE_URL`;
//! without a reachable server these tests fail, they are never skipped.
#![allow(dead_code)]

/// The admin URL: `DATABASE_URL` when it names Postgres, else the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `admin` with its database name replaced by `db` (query string kept).
pub fn url_for(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}
