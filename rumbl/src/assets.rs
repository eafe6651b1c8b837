//! `GET /assets/*`: the watch page's built bundle (`vendor-js/dist`: `app.js`, `app.css`,
//! `app.js.map`), read from disk on each request so a rebuild shows without a restart, through
//! tower-http's `ServeFile` (HEAD, conditional GETs, ranges, streamed bodies).
//!
//! Only plain relative paths are served (no `..`, no hidden files, a small character set), so
//! a request can never read outside the assets directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// The route, serving files of `dir`.
pub fn routes(dir: PathBuf) -> axum::Router {
    axum::Router::new()
        .route("/assets/{*path}", get(asset))
        .with_state(Arc::new(dir))
}

/// `ASSETS_DIR` when unset: `./vendor-js/dist` (the server is normally started from the
/// repository root), else the checkout this binary was built from — so `cargo run` works from
/// anywhere.
pub fn default_assets_dir() -> PathBuf {
    let local = PathBuf::from("vendor-js/dist");
    if local.is_dir() {
        return local;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor-js/dist");
    if built.is_dir() {
        return built;
    }
    local
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "map" | "json" => "application/json",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A relative asset path made only of plain segments (no `..`, no hidden files, no odd
/// characters), so a request can never leave the assets directory.
fn clean_asset_path(path: &str) -> Option<&str> {
    let ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    ok.then_some(path)
}

async fn asset(
    State(dir): State<Arc<PathBuf>>,
    UrlPath(path): UrlPath<String>,
    req: Request,
) -> Response {
    let Some(rel) = clean_asset_path(&path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let file = dir.join(rel);
    // tower-http's ServeFile does the HTTP side: HEAD, If-Modified-Since → 304, ranges, and a
    // streamed body instead of the whole file in memory. Our own content types keep the
    // `charset=utf-8` a browser needs for the bundle's text.
    let mime: mime::Mime = content_type(rel)
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let served = ServeFile::new_with_mime(&file, &mime).oneshot(req).await;
    match served {
        Ok(resp) if resp.status() != StatusCode::NOT_FOUND => {
            let mut resp = resp.map(Body::new);
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        _ => {
            tracing::warn!(
                "asset {} not found; build it with vendor-js/build.sh or set ASSETS_DIR",
                file.display()
            );
            (
                StatusCode::NOT_FOUND,
                format!(
                    "asset not found: /assets/{rel} (looked in {}; run vendor-js/build.sh or set ASSETS_DIR)",
                    dir.display()
                ),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_paths() {
        assert_eq!(clean_asset_path("app.js"), Some("app.js"));
        assert_eq!(clean_asset_path("img/logo.png"), Some("img/logo.png"));
        assert_eq!(clean_asset_path("../Cargo.toml"), None);
        assert_eq!(clean_asset_path("a//b"), None);
        assert_eq!(clean_asset_path(".env"), None);
        assert_eq!(clean_asset_path(""), None);
    }
}
