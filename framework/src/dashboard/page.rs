//! The dashboard's HTTP side: the page at `/dashboard` (HTML written here; the charts are the
//! esbuild bundle from `vendor-js/dashboard/`, served from `DASHBOARD_ASSETS_DIR` under
//! `/dashboard/assets/`), and what it says instead when it cannot work: `ADMIN_TOKEN` unset
//! (403) or the bundle not built (503, with the command that builds it).

use std::path::{Path, PathBuf};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The bundle's files, the only names `/dashboard/assets/` serves (no path from the request
/// ever reaches the filesystem).
const ASSETS: [(&str, &str); 4] = [
    ("dashboard.js", "text/javascript; charset=utf-8"),
    ("dashboard.css", "text/css; charset=utf-8"),
    ("dashboard.js.map", "application/json"),
    ("dashboard.css.map", "application/json"),
];

/// Where the page loads its script, styles and socket from.
const SCRIPT: &str = "/dashboard/assets/dashboard.js";
const STYLES: &str = "/dashboard/assets/dashboard.css";

/// Headers every dashboard page carries: nothing cached (it is live), no framing, no referrer
/// (the address may hold `?token=` until the script takes it out), scripts only from here.
fn page_headers(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

/// A plain page with a title and one paragraph of HTML.
fn notice(status: StatusCode, title: &str, body_html: &str) -> Response {
    page_headers(
        status,
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
             <body><main id=\"dashboard-notice\"><h1>{title}</h1>\n<p>{body_html}</p></main></body></html>\n"
        ),
    )
}

/// `GET /dashboard` with no `ADMIN_TOKEN` configured: everyone is refused, and told why.
pub fn disabled() -> Response {
    notice(
        StatusCode::FORBIDDEN,
        "Dashboard disabled",
        "The dashboard is off because <code>ADMIN_TOKEN</code> is not set. Set \
         <code>ADMIN_TOKEN</code> to a long random secret in the server's environment, restart it, \
         and open <code>/dashboard?token=…</code> on the admin listener (<code>ADMIN_PORT</code>).",
    )
}

/// `GET /dashboard` when the bundle is not in `dir`: how to build it.
pub fn not_built(dir: &Path) -> Response {
    let dir = html_escape(&dir.display().to_string());
    notice(
        StatusCode::SERVICE_UNAVAILABLE,
        "Dashboard not built",
        &format!(
            "The dashboard's script is not built: there is no <code>dashboard.js</code> in \
             <code>{dir}</code>. Run <code>bash vendor-js/build.sh</code> in the repository \
             (it needs Node.js and npm), or point <code>DASHBOARD_ASSETS_DIR</code> at a built \
             <code>vendor-js/dist/dashboard</code>, and reload."
        ),
    )
}

/// `GET /dashboard`: the shell the bundle fills in. The token form works without the script's
/// help (it reloads with `?token=`); the script keeps the token in `sessionStorage` and gives
/// it to the socket as its `token` param.
pub fn page(dir: &Path) -> Response {
    if !dir.join("dashboard.js").is_file() {
        return not_built(dir);
    }
    page_headers(
        StatusCode::OK,
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>phx-server dashboard</title>
<link rel="stylesheet" href="{STYLES}">
</head>
<body>
<header>
  <h1>phx-server dashboard</h1>
  <form id="token-form" method="get" action="/dashboard">
    <label for="token">ADMIN_TOKEN</label>
    <input id="token" name="token" type="password" autocomplete="off" required>
    <button type="submit">Open</button>
  </form>
  <p id="status" role="status">Not connected.</p>
</header>
<main id="dashboard" data-socket="/dashboard/socket" data-topic="{topic}" data-event="{event}">
  <section id="nodes"></section>
  <section id="charts"></section>
</main>
<script src="{SCRIPT}"></script>
</body>
</html>
"#,
            topic = super::socket::TOPIC,
            event = super::socket::EVENT,
        ),
    )
}

/// `GET /dashboard/assets/{name}`: one of the bundle's files from `dir`, or 404.
pub async fn asset(dir: PathBuf, name: &str) -> Response {
    let Some((file, content_type)) = ASSETS.iter().find(|(f, _)| *f == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(dir.join(file)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `s` safe inside HTML text.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bundle_says_how_to_build_it() {
        let r = page(Path::new("/nonexistent/<dir>"));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn escapes_the_directory() {
        assert_eq!(html_escape("a<b>&\""), "a&lt;b&gt;&amp;&quot;");
    }

    #[test]
    fn disabled_is_forbidden() {
        assert_eq!(disabled().status(), StatusCode::FORBIDDEN);
    }
}
