//! The HTML side of Rumbl: a login (password, or the embedded demo's pick-a-user), the watch page that carries `window.userToken`, a
//! small index, and the built JS/CSS bundle.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the videos, each linking to `/watch/<id>-<slug>` |
//! | `GET /login` | [`LoginMode::Password`]: a username + password form; [`LoginMode::Demo`]: `login.html.example` with one `<option>` per user, labelled as the demo's password-less login |
//! | `POST /login` | `username=...&password=...` (Password) or `username=...` (Demo) → session cookie, 303 to `next` (a local path) or `/watch/2-elixir`; anything else → 401 and the form again, the same page for an unknown user and a wrong password |
//! | `GET /watch/:id` | `watch.html.example` for `2-elixir` (video 2); 404 for unknown videos; 303 to `/login?next=...` when not logged in |
//! | `GET /assets/*` | files of `vendor-js/dist` (`ASSETS_DIR`), see [`super::assets`] |
//!
//! The session is the book's `put_session(conn, :user_id, id)` reduced to what this app needs:
//! a cookie holding a `Phoenix.Token` of the user id with salt `"session"`, signed with the
//! endpoint's `SECRET_KEY_BASE` (so it cannot be forged, and it is useless as a socket token,
//! whose salt differs). The watch page then does what the book's `Auth` plug does:
//! `Phoenix.Token.sign(conn, "user socket", user.id)` into `window.userToken`.
//!
//! Every value put into a template is HTML-escaped; templates are rendered in one pass, so a
//! value that contains `{{...}}` is never expanded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, HOST, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use phx_protocol::etf::Term;
use phx_protocol::token::MaxAge;

use super::assets;
use super::password;
use super::store::{parse_video_param, AnnotationStore, StoreError, User, Video};
use super::user_socket::USER_SALT;
use phx_channels::config::CheckOrigin;
use phx_channels::endpoint::Endpoint;
use phx_channels::transport::origin;

/// `GET /watch/:id`'s template (placeholders: video_id, player_id, title, user_token, username).
const WATCH_TEMPLATE: &str = include_str!("../../vendor-js/watch.html.example");
/// `GET /login`'s template (placeholder: user_options).
const LOGIN_TEMPLATE: &str = include_str!("../../vendor-js/login.html.example");

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "_rumbl_session";
/// The salt of session tokens; distinct from [`USER_SALT`] so neither token works as the other.
pub const SESSION_SALT: &str = "session";
/// How long a login lasts (as long as the socket token: two weeks).
const SESSION_MAX_AGE_SECS: u64 = 1_209_600;
/// Where a login without `next` lands: the book's demo video.
pub const DEFAULT_NEXT: &str = "/watch/2-elixir";

/// How `POST /login` decides who you are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    /// The embedded demo (no `DATABASE_URL`): pick one of the seeded users, no password. Only
    /// for a local database nobody else uses.
    Demo,
    /// A configured database: the password is checked against `users.password_hash`
    /// (pbkdf2_elixir or bcrypt, see [`super::password`]).
    Password,
}

/// What the page handlers share.
pub struct Pages {
    /// Token signing and verification (SECRET_KEY_BASE).
    endpoint: Endpoint,
    /// Users and videos.
    store: Arc<dyn AnnotationStore>,
    /// Demo pick-a-user or password login.
    login: LoginMode,
}

/// The pages' routes, to merge into the endpoint's router.
pub fn routes(
    endpoint: Endpoint,
    store: Arc<dyn AnnotationStore>,
    assets_dir: PathBuf,
    login: LoginMode,
) -> axum::Router {
    let state = Arc::new(Pages {
        endpoint,
        store,
        login,
    });
    axum::Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login_post))
        .route("/watch/{id}", get(watch))
        .with_state(state)
        .merge(assets::routes(assets_dir))
}

/// Errors of the page handlers, turned into responses in one place.
#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                Html(simple_page("Not found", "<p>No such page.</p>")),
            )
                .into_response(),
            PageError::Store(e) => {
                tracing::error!("page failed: {e}");
                let status = if e.is_unavailable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                (
                    status,
                    Html(simple_page(
                        "Database unavailable",
                        "<p>The database cannot be reached right now. Try again shortly.</p>",
                    )),
                )
                    .into_response()
            }
        }
    }
}

/// HTML-escapes `s` for text and for double- or single-quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The templates open with a `<!-- Template for ... -->` comment documenting their
/// placeholders; it is dropped before rendering so no value (a token!) lands in a comment.
fn strip_template_doc(template: &str) -> String {
    if let Some(start) = template.find("<!-- Template for") {
        if let Some(len) = template[start..].find("-->") {
            let end = start + len + 3;
            let end = end + template[end..].len() - template[end..].trim_start().len();
            return format!("{}{}", &template[..start], &template[end..]);
        }
    }
    template.to_string()
}

/// Replaces `{{name}}` with `vars[name]` in one pass; values are inserted as given (callers
/// escape them), unknown placeholders are left as they are.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("{{");
                        out.push_str(name);
                        out.push_str("}}");
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The book's `player_id/1`:
/// `~r{^.*(?:youtu\.be/|\w+/|v=)(?<id>[^#&?]*)}` — whatever follows the last `v=` or
/// `<word char>/` in the URL, up to `#`, `&` or `?`. Empty when nothing matches.
pub fn player_id(url: &str) -> String {
    let bytes = url.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // The greedy `^.*` makes the regex pick the rightmost place an alternative matches.
    let start = (1..=bytes.len()).rev().find(|&i| {
        let prefix = &bytes[..i];
        prefix.ends_with(b"v=") || (prefix.ends_with(b"/") && i >= 2 && is_word(bytes[i - 2]))
    });
    match start {
        Some(i) => url[i..]
            .split(['#', '&', '?'])
            .next()
            .unwrap_or_default()
            .to_string(),
        None => String::new(),
    }
}

/// A page in the app's layout, for the index and error pages.
fn simple_page(title: &str, body_html: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n  \
         <title>{t} · Rumbl</title>\n  <link rel=\"stylesheet\" href=\"/assets/app.css\">\n\
         </head>\n<body>\n  <header class=\"header\">\n    <a class=\"logo\" href=\"/\">Rumbl</a>\n  \
         </header>\n  <main class=\"container narrow\">\n    <h2>{t}</h2>\n    {body_html}\n  \
         </main>\n</body>\n</html>\n",
        t = escape_html(title)
    )
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

impl Pages {
    /// The logged-in user: a valid session cookie naming a user that still exists.
    async fn current_user(&self, headers: &HeaderMap) -> Result<Option<User>, StoreError> {
        let Some(token) = cookie_value(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let Ok(term) = self.endpoint.verify_token(
            SESSION_SALT,
            token,
            Some(MaxAge::Seconds(SESSION_MAX_AGE_SECS)),
        ) else {
            return Ok(None);
        };
        match term.as_i64() {
            Some(id) => self.store.user(id).await,
            None => Ok(None),
        }
    }
}

/// Only local paths (`/watch/1`), never `//evil.example` or `https://...`: an open redirect
/// would let a crafted login link send people elsewhere.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n
        }
        _ => DEFAULT_NEXT,
    }
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(LOCATION, v)]).into_response(),
        Err(_) => (
            StatusCode::SEE_OTHER,
            [(LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response(),
    }
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn index(State(pages): State<Arc<Pages>>, headers: HeaderMap) -> Result<Response, PageError> {
    let videos = pages.store.videos().await?;
    let user = pages.current_user(&headers).await?;
    let mut body = String::new();
    match &user {
        Some(u) => body.push_str(&format!(
            "<p>Logged in as <b>{}</b> · <a href=\"/login\">Switch user</a></p>\n",
            escape_html(&u.username)
        )),
        None => body.push_str("<p><a href=\"/login\">Log in</a> to annotate.</p>\n"),
    }
    body.push_str("    <ul class=\"videos\">\n");
    for v in &videos {
        body.push_str(&format!(
            "      <li><a href=\"/watch/{}\">{}</a></li>\n",
            escape_html(&v.param()),
            escape_html(&v.title)
        ));
    }
    body.push_str("    </ul>");
    Ok(Html(simple_page("Videos", &body)).into_response())
}

/// Carries `next` through the form post (the templates' action has no query).
fn with_next(html: String, next: Option<&str>) -> String {
    match next {
        Some(n) => html.replace(
            "action=\"/login\"",
            &format!(
                "action=\"/login?next={}\"",
                escape_html(&percent_encode(safe_next(Some(n))))
            ),
        ),
        None => html,
    }
}

/// The demo's pick-a-user form, said to be the demo's password-less login.
fn render_demo_login(users: &[User], next: Option<&str>) -> String {
    let options: String = users
        .iter()
        .map(|u| {
            let name = escape_html(&u.username);
            format!("<option value=\"{name}\">{name}</option>")
        })
        .collect::<Vec<_>>()
        .join("\n          ");
    let html = render(
        &strip_template_doc(LOGIN_TEMPLATE),
        &[("user_options", &options)],
    )
    .replacen(
        "<h2>Log in</h2>",
        "<h2>Log in</h2>\n    <p class=\"demo-note\">This is the embedded demo: pick a seeded \
         user, no password is asked. With a <code>DATABASE_URL</code> the server asks for \
         passwords instead.</p>",
        1,
    );
    with_next(html, next)
}

/// The username + password form; `failed` adds the one message a failed login gets, the same
/// for an unknown user and a wrong password (nothing of what was typed is echoed).
fn render_password_login(next: Option<&str>, failed: bool) -> String {
    let error = if failed {
        "<p class=\"alert alert-danger\">Invalid username or password.</p>\n    "
    } else {
        ""
    };
    let body = format!(
        "{error}<form class=\"panel panel-default login-form\" method=\"post\" action=\"/login\">\n      \
         <div class=\"panel-body\">\n        \
         <label for=\"username\">Username</label>\n        \
         <input id=\"username\" name=\"username\" type=\"text\" class=\"form-control\" autocomplete=\"username\" required>\n        \
         <label for=\"password\">Password</label>\n        \
         <input id=\"password\" name=\"password\" type=\"password\" class=\"form-control\" autocomplete=\"current-password\" required>\n      \
         </div>\n      <div class=\"panel-footer\">\n        \
         <button type=\"submit\" class=\"btn btn-primary form-control\">Log in</button>\n      \
         </div>\n    </form>"
    );
    with_next(simple_page("Log in", &body), next)
}

async fn login_form(
    State(pages): State<Arc<Pages>>,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let params = query_params(query.as_deref());
    let next = params.get("next").map(String::as_str);
    let html = match pages.login {
        LoginMode::Demo => render_demo_login(&pages.store.users().await?, next),
        LoginMode::Password => render_password_login(next, false),
    };
    Ok(Html(html).into_response())
}

impl Pages {
    /// Who the form names, if it proves it: in the demo any existing username; otherwise a
    /// username whose stored hash matches the password.
    async fn authenticate(
        &self,
        params: &HashMap<String, String>,
    ) -> Result<Option<User>, PageError> {
        let username = params.get("username").map(String::as_str).unwrap_or("");
        match self.login {
            LoginMode::Demo => Ok(self
                .store
                .users()
                .await?
                .into_iter()
                .find(|u| u.username == username)),
            LoginMode::Password => {
                let Some(password) = params.get("password").filter(|p| !p.is_empty()).cloned()
                else {
                    return Ok(None);
                };
                let creds = self.store.credentials(username).await?;
                // An unknown user (or one without a hash) is checked against a dummy hash,
                // so it takes as long as a wrong password.
                let hash = creds
                    .as_ref()
                    .and_then(|c| c.password_hash.clone())
                    .unwrap_or_else(|| password::DUMMY_HASH.to_string());
                // Deliberately slow (pbkdf2 / bcrypt): off the async workers.
                let matches =
                    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
                        .await
                        .unwrap_or(false);
                Ok(creds
                    .filter(|c| matches && c.password_hash.is_some())
                    .map(|c| c.user))
            }
        }
    }
}

async fn login_post(
    State(pages): State<Arc<Pages>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, PageError> {
    let mut params = query_params(query.as_deref());
    // Form fields win over the query string.
    params.extend(form_urlencoded::parse(&body).into_owned());
    let next = params.get("next").map(String::as_str);
    let Some(user) = pages.authenticate(&params).await? else {
        let html = match pages.login {
            LoginMode::Demo => render_demo_login(&pages.store.users().await?, next),
            LoginMode::Password => render_password_login(next, true),
        };
        return Ok((StatusCode::UNAUTHORIZED, Html(html)).into_response());
    };
    tracing::info!(user_id = user.id, username = %user.username, "logged in");
    let token = pages.endpoint.sign_token_with(
        SESSION_SALT,
        &Term::Int(user.id),
        MaxAge::Seconds(SESSION_MAX_AGE_SECS),
    );
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_MAX_AGE_SECS}"
    );
    let mut resp = redirect(safe_next(next));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(resp)
}

/// Why the socket will refuse this page, if it will: the endpoint's `check_origin` applied to
/// the origin the browser will send (this page's own, from `Host` and the scheme a proxy
/// reports). The watch page shows it when the socket fails, instead of failing silently — a
/// browser tells the page nothing about why a WebSocket upgrade was refused.
fn socket_refusal(endpoint: &Endpoint, headers: &HeaderMap) -> String {
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let origin = format!("{scheme}://{host}");
    let cfg = endpoint.config();
    if origin::allowed(&cfg.check_origin, &cfg.url_host, Some(host), Some(&origin)) {
        return String::new();
    }
    let allowed = match &cfg.check_origin {
        CheckOrigin::List(list) => format!("CHECK_ORIGIN allows {}", list.join(", ")),
        _ => format!("the server's host is {} (PHX_HOST)", cfg.url_host),
    };
    format!(
        "the server refuses sockets from pages at {origin}: {allowed}. Open the page at an \
         allowed address, or set PHX_HOST / CHECK_ORIGIN."
    )
}

fn render_watch(video: &Video, user: &User, user_token: &str, refusal: &str) -> String {
    let video_id = video.id.to_string();
    render(
        &strip_template_doc(WATCH_TEMPLATE),
        &[
            ("video_id", &escape_html(&video_id)),
            ("player_id", &escape_html(&player_id(&video.url))),
            ("title", &escape_html(&video.title)),
            ("user_token", &escape_html(user_token)),
            ("username", &escape_html(&user.username)),
            ("socket_refusal", &escape_html(refusal)),
        ],
    )
}

async fn watch(
    State(pages): State<Arc<Pages>>,
    UrlPath(param): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = parse_video_param(&param).ok_or(PageError::NotFound)?;
    let video = pages.store.video(id).await?.ok_or(PageError::NotFound)?;
    let Some(user) = pages.current_user(&headers).await? else {
        let next = format!("/watch/{}", video.param());
        return Ok(redirect(&format!("/login?next={}", percent_encode(&next))));
    };
    let token = pages.endpoint.sign_token(USER_SALT, &Term::Int(user.id));
    let refusal = socket_refusal(&pages.endpoint, &headers);
    let mut resp = Html(render_watch(&video, &user, &token, &refusal)).into_response();
    // The page embeds a personal token: never store it in a shared cache.
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_id_like_the_book() {
        assert_eq!(
            player_id("https://www.youtube.com/watch?v=elixirintro"),
            "elixirintro"
        );
        assert_eq!(player_id("https://youtu.be/abcDEF12345?t=3"), "abcDEF12345");
        assert_eq!(player_id("https://www.youtube.com/embed/xyz#t"), "xyz");
        assert_eq!(player_id("nothing"), "");
        assert_eq!(player_id(""), "");
    }

    #[test]
    fn render_is_one_pass_and_escaped() {
        let t = "<p>{{a}} {{b}} {{c}}</p>";
        let a = escape_html("<img src=x onerror=alert(1)>");
        assert_eq!(
            render(t, &[("a", &a), ("b", "{{a}}")]),
            "<p>&lt;img src=x onerror=alert(1)&gt; {{a}} {{c}}</p>"
        );
        assert_eq!(render("x {{open", &[]), "x {{open");
        assert_eq!(escape_html("\"'&"), "&quot;&#39;&amp;");
    }

    #[test]
    fn next_must_be_local() {
        assert_eq!(safe_next(Some("/watch/1-x")), "/watch/1-x");
        assert_eq!(safe_next(Some("//evil.example")), DEFAULT_NEXT);
        assert_eq!(safe_next(Some("https://evil.example")), DEFAULT_NEXT);
        assert_eq!(safe_next(Some("/\\evil.example")), DEFAULT_NEXT);
        assert_eq!(safe_next(None), DEFAULT_NEXT);
    }

    #[test]
    fn watch_page_placeholders_filled() {
        let video = Video {
            id: 2,
            url: "https://www.youtube.com/watch?v=elixirintro".into(),
            title: "<b>Elixir</b>".into(),
            description: String::new(),
            slug: Some("elixir".into()),
            user_id: None,
            category_id: None,
        };
        let user = User {
            id: 1,
            username: "jose".into(),
            name: None,
        };
        let html = render_watch(&video, &user, "SFMyNTY.abc.def", "at <x> \"y\"");
        assert!(
            html.contains("data-refusal=\"at &lt;x&gt; &quot;y&quot;\""),
            "{html}"
        );
        assert!(!html.contains("{{"), "{html}");
        assert!(!html.contains("<!-- Template"), "{html}");
        assert_eq!(html.matches("SFMyNTY.abc.def").count(), 1, "{html}");
        assert!(html.contains("window.userToken = \"SFMyNTY.abc.def\""));
        assert!(html.contains("data-id=\"2\""));
        assert!(html.contains("&lt;b&gt;Elixir&lt;/b&gt;"));
        assert!(!html.contains("<b>Elixir"));
    }

    fn page_headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).expect("host"));
        h
    }

    #[test]
    fn the_watch_page_knows_when_its_socket_will_be_refused() {
        use phx_channels::config::Config;
        // Host check (the default): a page at 127.0.0.1 against PHX_HOST localhost.
        let strict = Endpoint::builder(Config::default()).build();
        let why = socket_refusal(&strict, &page_headers("127.0.0.1:4000"));
        assert!(why.contains("http://127.0.0.1:4000"), "{why}");
        assert!(why.contains("localhost (PHX_HOST)"), "{why}");
        assert_eq!(socket_refusal(&strict, &page_headers("localhost:4000")), "");
        // The embedded demo's loopback list: both newcomer addresses, nothing else.
        let demo = Endpoint::builder(Config {
            check_origin: CheckOrigin::loopback(),
            ..Config::default()
        })
        .build();
        for host in ["127.0.0.1:4000", "localhost:4000", "[::1]:4000"] {
            assert_eq!(socket_refusal(&demo, &page_headers(host)), "", "{host}");
        }
        let why = socket_refusal(&demo, &page_headers("rumbl.example:4000"));
        assert!(why.contains("CHECK_ORIGIN allows //localhost"), "{why}");
    }
}
