//! The Rumbl pages over real HTTP on 127.0.0.1:0, on a seeded temporary SQLite database,
//! wired exactly as `phx-server serve` wires them: login → session cookie → the watch page's
//! `window.userToken` → a socket that joins the video.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use phx_channels::{Config, Endpoint};
use rumbl::pages::LoginMode;
use rumbl::{app, user_socket, RumblConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!(
            "phx_rumbl_pages_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(p.join("assets")).expect("temp dir");
        std::fs::write(p.join("assets/app.js"), "console.log('rumbl')").expect("asset");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    addr: SocketAddr,
    endpoint: Endpoint,
    db: PathBuf,
    _dir: TempDir,
    _stop: oneshot::Sender<()>,
}

/// The pages with the embedded demo's pick-a-user login.
async fn start() -> Server {
    start_with(Some(LoginMode::Demo)).await
}

/// `login`: `None` → what `serve` picks (a configured `DATABASE_URL`: password login).
async fn start_with(login: Option<LoginMode>) -> Server {
    let dir = TempDir::new();
    let db = dir.0.join("rumbl.sqlite3");
    let config = Config {
        port: 0,
        ..Config::default()
    };
    let rumbl = RumblConfig {
        database_url: Some(format!("sqlite://{}", db.display())),
        assets_dir: dir.0.join("assets"),
        ..RumblConfig::default()
    };
    let store = app::open_demo_store(&rumbl, false).await.expect("store");
    let endpoint = app::endpoint(config, &rumbl, store.clone());
    let router = match login {
        Some(mode) => app::router_with_login(&endpoint, store, dir.0.join("assets"), mode),
        None => app::router(&endpoint, &rumbl, store),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(phx_channels::http::serve(
        endpoint.clone(),
        listener,
        router,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        endpoint,
        db,
        _dir: dir,
        _stop: tx,
    }
}

/// A response: status, lowercased headers (last value wins, except set-cookie joined), body.
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Logs in as `username`; the `name=value` cookie pair.
async fn login(s: &Server, username: &str) -> String {
    let r = request(
        s.addr,
        "POST",
        "/login",
        &[FORM],
        &format!("username={username}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    cookie.split(';').next().expect("pair").to_string()
}

fn user_token(html: &str) -> String {
    let start = html
        .find("window.userToken = \"")
        .expect("userToken script")
        + 20;
    let len = html[start..].find('"').expect("closing quote");
    html[start..start + len].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_watch_carries_a_socket_token() {
    let s = start().await;

    let r = request(s.addr, "GET", "/watch/2-elixir", &[], "").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/login?next=%2Fwatch%2F2-elixir");

    let r = request(s.addr, "GET", "/login?next=%2Fwatch%2F2-elixir", &[], "").await;
    assert_eq!(r.status, 200);
    for name in ["jose", "chris", "bruce"] {
        assert!(
            r.body
                .contains(&format!("<option value=\"{name}\">{name}</option>")),
            "{}",
            r.body
        );
    }
    assert!(
        r.body
            .contains("action=\"/login?next=%2Fwatch%2F2-elixir\""),
        "{}",
        r.body
    );

    let r = request(
        s.addr,
        "POST",
        "/login?next=%2Fwatch%2F1-phoenix-channels",
        &[FORM],
        "username=chris",
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), "/watch/1-phoenix-channels");

    let cookie = login(&s, "chris").await;
    let r = request(s.addr, "GET", "/watch/2-elixir", &[("Cookie", &cookie)], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("cache-control").contains("no-store"));
    assert!(
        r.body
            .contains("<div id=\"video\" data-id=\"2\" data-player-id=\"elixirintro\">"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<span class=\"current-user\">chris</span>"));
    assert!(!r.body.contains("{{"), "every placeholder filled");
    let token = user_token(&r.body);
    assert_eq!(
        user_socket::verify_user_token(s.endpoint.context(), &token),
        Some(2)
    );

    // The page's token opens the socket, and the seeded annotations come with the join.
    let url = format!("ws://{}/socket/websocket?vsn=2.0.0&token={token}", s.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    ws.send(Message::Text(
        r#"["1","1","videos:2","phx_join",{}]"#.into(),
    ))
    .await
    .expect("send");
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                break serde_json::from_str::<Value>(&t).expect("json")
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no join reply: {other:?}"),
        }
    };
    assert_eq!(frame[4]["status"], "ok", "{frame}");
    assert_eq!(
        frame[4]["response"]["annotations"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        frame[4]["response"]["annotations"][0]["user"],
        json!({"id": 1, "username": "jose"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refusals_and_redirects() {
    let s = start().await;
    let r = request(s.addr, "POST", "/login", &[FORM], "username=mallory").await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_empty());

    for next in [
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%5Cevil.example",
    ] {
        let r = request(
            s.addr,
            "POST",
            &format!("/login?next={next}"),
            &[FORM],
            "username=jose",
        )
        .await;
        assert_eq!(r.header("location"), "/watch/2-elixir", "next={next}");
    }

    // A socket token is not a session (different salts), nor is a token of another secret.
    let socket_token = s
        .endpoint
        .sign_token(user_socket::USER_SALT, &phx_protocol::etf::Term::Int(1));
    for cookie in [
        format!("_rumbl_session={socket_token}"),
        "_rumbl_session=garbage".into(),
    ] {
        let r = request(s.addr, "GET", "/watch/2-elixir", &[("Cookie", &cookie)], "").await;
        assert_eq!(r.status, 303, "{cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_404_index_and_escaping() {
    let s = start().await;
    let cookie = login(&s, "jose").await;
    for path in [
        "/watch/999-nope",
        "/watch/elixir",
        "/watch/99999999999999999999",
    ] {
        let r = request(s.addr, "GET", path, &[("Cookie", &cookie)], "").await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = request(s.addr, "GET", "/watch/2", &[("Cookie", &cookie)], "").await;
    assert_eq!(r.status, 200);

    // A hostile title and URL are escaped wherever they appear.
    let db = rusqlite::Connection::open(&s.db).expect("sqlite");
    db.execute(
        "INSERT INTO videos (id, url, title, description, slug, inserted_at, updated_at) \
         VALUES (7, 'https://youtu.be/\"><script>x()</script>', '<script>alert(1)</script>', '', 'x', '2020-01-01', '2020-01-01')",
        [],
    )
    .expect("insert");
    let r = request(s.addr, "GET", "/watch/7-x", &[("Cookie", &cookie)], "").await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(!r.body.contains("<script>x()"), "{}", r.body);
    assert!(r
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt; · Rumbl"));

    let r = request(s.addr, "GET", "/", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<a href=\"/watch/2-elixir\">Elixir</a>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_served_from_the_assets_dir_only() {
    let s = start().await;
    let r = request(s.addr, "GET", "/assets/app.js", &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "text/javascript; charset=utf-8");
    assert_eq!(r.body, "console.log('rumbl')");
    assert_eq!(r.header("cache-control"), "no-cache");
    // A conditional GET of an unchanged file: 304, no body (the browser revalidates each load).
    let modified = r.header("last-modified").to_string();
    assert!(!modified.is_empty(), "a Last-Modified header");
    let r = request(
        s.addr,
        "GET",
        "/assets/app.js",
        &[("if-modified-since", modified.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.body, "");
    let r = request(s.addr, "GET", "/assets/app.css", &[], "").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("vendor-js/build.sh"), "{}", r.body);
    for path in [
        "/assets/..%2Frumbl.sqlite3",
        "/assets/../rumbl.sqlite3",
        "/assets/.hidden",
    ] {
        let r = request(s.addr, "GET", path, &[], "").await;
        assert_eq!(r.status, 404, "{path}");
    }
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The demo's pick-a-user form says what it is: the demo, and no password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_login_is_labelled() {
    let s = start().await;
    let r = request(s.addr, "GET", "/login", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<select id=\"username\" name=\"username\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("embedded demo"), "{}", r.body);
    assert!(r.body.contains("no password is asked"), "{}", r.body);
    assert!(!r.body.contains("type=\"password\""), "{}", r.body);
}

/// `serve` with a `DATABASE_URL`: a password form; a username alone, a wrong password and an
/// unknown user all get the same 401 page and no cookie; the seeded demo password, a
/// pbkdf2_elixir hash and a bcrypt hash (vectors from scripts/password_vectors.py) log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_with_a_configured_database() {
    let s = start_with(None).await;
    let r = request(s.addr, "GET", "/login?next=%2Fwatch%2F2-elixir", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("type=\"password\""), "{}", r.body);
    assert!(!r.body.contains("<select"), "{}", r.body);
    assert!(!r.body.contains("<option value=\"jose\""), "{}", r.body);
    assert!(
        r.body
            .contains("action=\"/login?next=%2Fwatch%2F2-elixir\""),
        "{}",
        r.body
    );

    let post = |pairs: &[(&str, &str)]| {
        let body = form_body(pairs);
        let addr = s.addr;
        async move { request(addr, "POST", "/login", &[FORM], &body).await }
    };
    let alone = post(&[("username", "jose")]).await;
    let empty = post(&[("username", "jose"), ("password", "")]).await;
    let wrong = post(&[("username", "jose"), ("password", "not-his-password")]).await;
    let unknown = post(&[
        ("username", "nobody-here"),
        ("password", "not-his-password"),
    ])
    .await;
    for (what, r) in [
        ("alone", &alone),
        ("empty", &empty),
        ("wrong", &wrong),
        ("unknown", &unknown),
    ] {
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.header("set-cookie"), "", "{what}");
        assert!(!r.body.contains("<select"), "{what}: {}", r.body);
    }
    assert_eq!(
        unknown.body, wrong.body,
        "one answer for an unknown user and a wrong password"
    );
    assert!(
        wrong.body.contains("Invalid username or password"),
        "{}",
        wrong.body
    );

    // The seeded demo users' documented password.
    let r = post(&[
        ("username", "jose"),
        ("password", rumbl::store::seed::DEMO_PASSWORD),
    ])
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let page = request(s.addr, "GET", "/watch/2-elixir", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page
        .body
        .contains("<span class=\"current-user\">jose</span>"));

    // Hashes as Comeonin writes them (pbkdf2_elixir sha512/sha256, bcrypt), and a NULL hash.
    let db = rusqlite::Connection::open(&s.db).expect("sqlite");
    for (id, name, hash) in [
        (11, "pbkdf2", Some("$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$EFEdys9ZfcV9f0/GLMLvDalzZYpKPXK7CyNg0WV8..7HNGJUnjDXD/RhZkuoZpfsX.0iiYfKwIcryRQFr1UDAQ")),
        (12, "pbkdf2sha256", Some("$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU")),
        (13, "bcrypt", Some("$2b$04$z0et7XFcURuFCvc.LBa4we0CS2ESfUXdUTf8CgoWA50LAOG8aBE1K")),
        (14, "nohash", None),
    ] {
        db.execute(
            "INSERT INTO users (id, username, name, password_hash, inserted_at, updated_at) \
             VALUES (?1, ?2, ?2, ?3, '2020-01-01', '2020-01-01')",
            rusqlite::params![id, name, hash],
        )
        .expect("insert user");
    }
    for name in ["pbkdf2", "pbkdf2sha256", "bcrypt"] {
        let r = post(&[("username", name), ("password", "hunter2")]).await;
        assert_eq!(r.status, 303, "{name}: {}", r.body);
        assert!(
            r.header("set-cookie").starts_with("_rumbl_session="),
            "{name}"
        );
        let r = post(&[("username", name), ("password", "hunter3")]).await;
        assert_eq!(r.status, 401, "{name} with a wrong password");
        assert_eq!(r.body, wrong.body);
    }
    let r = post(&[("username", "nohash"), ("password", "hunter2")]).await;
    assert_eq!(
        r.status, 401,
        "a user without a hash cannot log in with a password"
    );
    assert_eq!(r.body, wrong.body);
}

#[tokio::test]
async fn readyz_checks_the_store() {
    let s = start().await;
    let r = request(s.addr, "GET", "/readyz", &[], "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "ready\n"),
        "the store answers"
    );
}
