//! Log lines in Phoenix's words: an in-process server logging into a buffer (CONNECTED TO /
//! JOIN / Replied at info, tokens and passwords filtered), and the built binary's
//! `LOG_FORMAT=json` (one JSON object a line) and text output (no ANSI when not a terminal).

mod common_ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common_ws::*;
use phx_channels::logger::LogLevel;
use phx_channels::Config;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("test").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("test")).into_owned()
    }
}

async fn connect_join_push(s: &Server, token: &str) {
    let mut ws = s
        .connect(&format!("vsn=2.0.0&token={token}&password=secret123"))
        .await;
    send(
        &mut ws,
        r#"["1","1","room:lobby","phx_join",{"token":"secret123join","name":"jose"}]"#,
    )
    .await;
    let _ = next(&mut ws).await;
    send(
        &mut ws,
        r#"["1","2","room:lobby","new_msg",{"body":"secret123body"}]"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_join_lines_filter_tokens() {
    let buf = Buf::default();
    // Global: the server's tasks run on the runtime's other threads.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer({
                let w = buf.clone();
                move || w.clone()
            })
            .finish(),
    )
    .expect("global subscriber");

    // LOG_JOIN=info.
    let s = start(
        Config {
            log_join: LogLevel::Info,
            ..Config::default()
        },
        |r| r,
    )
    .await;
    let token = s
        .endpoint
        .sign_token(phx_fixture::USER_SALT, &phx_protocol::Term::Int(42));
    connect_join_push(&s, &token).await;
    let logged = buf.text();
    for want in [
        "CONNECTED TO Fixture.UserSocket in ",
        "Transport: :websocket",
        "Serializer: Phoenix.Socket.V2.JSONSerializer",
        r#""token" => "[FILTERED]""#,
        r#""password" => "[FILTERED]""#,
        r#"JOIN "room:lobby" to Fixture.RoomChannel"#,
        r#""name" => "jose""#,
        "Replied room:lobby :ok",
    ] {
        assert!(logged.contains(want), "no {want:?} in the log:\n{logged}");
    }
    for never in [token.as_str(), "secret123", "HANDLED", "\x1b"] {
        assert!(!logged.contains(never), "{never:?} in the log:\n{logged}");
    }

    // The default (LOG_JOIN=debug): CONNECTED TO at info, no JOIN / Replied at info.
    let from = buf.text().len();
    let s = start(Config::default(), |r| r).await;
    let token = s
        .endpoint
        .sign_token(phx_fixture::USER_SALT, &phx_protocol::Term::Int(7));
    connect_join_push(&s, &token).await;
    let logged = buf.text()[from..].to_string();
    assert!(
        logged.contains("CONNECTED TO Fixture.UserSocket"),
        "{logged}"
    );
    assert!(
        !logged.contains("JOIN") && !logged.contains("Replied"),
        "{logged}"
    );
    assert!(!logged.contains("secret123"), "{logged}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("test")
        .local_addr()
        .expect("test")
        .port()
}

/// Runs `serve --fixture` with `LOG_FORMAT=format`, makes two HTTP requests once it listens,
/// stops it and returns its stderr.
fn run_binary(format: &str) -> String {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("phx-logs-{}-{format}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .args(["serve", "--fixture"])
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", format)
        .env("PHX_STATE_DIR", &dir)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn phx-server");
    let mut ok = false;
    for _ in 0..300 {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
            for path in ["/nowhere?token=secret123", "/socket/longpoll?vsn=2.0.0"] {
                write!(
                    c,
                    "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
                )
                .expect("test");
                let mut sink = Vec::new();
                let _ = c.read_to_end(&mut sink);
                c = match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(c) => c,
                    Err(_) => break,
                };
            }
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SIGTERM: the server drains and exits, closing stderr.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut err = String::new();
    let mut stderr = BufReader::new(child.stderr.take().expect("test"));
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 {
        err.push_str(&line);
        line.clear();
    }
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "the server never listened:\n{err}");
    err
}

#[test]
fn binary_json_lines_and_plain_text() {
    let json = run_binary("json");
    let mut messages = Vec::new();
    for line in json.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(v.get("level").is_some(), "{line}");
        if let Some(m) = v["fields"]["message"].as_str() {
            messages.push(m.to_string());
        }
    }
    assert!(messages.iter().any(|m| m == "GET /nowhere"), "{json}");
    assert!(
        messages
            .iter()
            .any(|m| m == "Sent 404 in 0ms" || m.starts_with("Sent 404 in ")),
        "{json}"
    );
    // Socket routes log at debug: no info lines per poll.
    assert!(!json.contains("/socket/longpoll"), "{json}");
    assert!(!json.contains("secret123"), "{json}");
    assert!(!json.contains('\x1b'), "ANSI in JSON output");

    let text = run_binary("text");
    assert!(text.contains("GET /nowhere"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes with stderr not a terminal:\n{text}"
    );
    assert!(!text.contains("secret123"), "{text}");
}

#[test]
fn invalid_log_format_exits_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .args(["serve", "--fixture"])
        .env("LOG_FORMAT", "xml")
        .env("PORT", free_port().to_string())
        .output()
        .expect("run phx-server");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("LOG_FORMAT"), "{err}");
}
