//! One configuration, as the README describes it: each setting from its flag, else its
//! variable, else the TOML file, else its default; `phx-server config` shows the effective
//! value and its source, secrets masked; a bad value stops every subcommand at start with exit
//! status 2 and one line naming the variable (or file key, or flag), its value and what is
//! allowed — before the port is taken.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `phx-server` with a clean environment (PATH only) plus `env`: what a person's shell with
/// just those variables gives it.
fn phx(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phx-server"));
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run phx-server")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit 2 and exactly one non-empty stderr line containing every one of `expect`.
fn assert_one_line(out: &Output, what: &str, expect: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line, got {err:?}");
    for e in expect {
        assert!(lines[0].contains(e), "{what}: {e:?} not in {:?}", lines[0]);
    }
}

/// A settings file in a fresh temp dir.
fn settings_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("phx-config-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("phx.toml");
    std::fs::write(&path, text).expect("write settings file");
    path
}

/// The row of `var` in `phx-server config`'s output: (value, source).
fn row(config_out: &str, var: &str) -> (String, String) {
    let line = config_out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(var))
        .unwrap_or_else(|| panic!("no {var} row in {config_out}"));
    let cols: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cols.len(), 3, "{line:?}");
    (cols[1].to_string(), cols[2].to_string())
}

#[test]
fn bad_variables_exit_2_with_one_line_naming_the_variable_and_the_range() {
    for (var, value, expect) in [
        ("OUTBOX_CAPACITY", "0", "≥ 1"),
        ("OUTBOX_CAPACITY", "not-a-number", "≥ 1"),
        ("MAX_CHANNELS", "0", "≥ 1"),
        ("MAX_FRAME_SIZE", "10", "≥ 1024"),
        ("IDLE_TIMEOUT_MS", "0", "≥ 1"),
        ("LP_MAX_SESSIONS", "0", "≥ 1"),
        ("HTTP_MAX_HEADERS", "3", "≥ 8"),
        ("PRESENCE_DOWN_MS", "500", "≥ 2000"),
        ("PORT", "70000", "0..=65535"),
        ("SOCKET_TRANSPORTS", "smoke-signals", "unknown transport"),
        ("LOG_FORMAT", "xml", "text, json"),
        ("LOG_JOIN", "loud", "info, debug or false"),
        ("PUBSUB_ADAPTER", "gossip", "local, redis"),
        ("POOL_SIZE", "0", "≥ 1"),
        ("CHECK_ORIGIN", ",", "comma list"),
    ] {
        // A free port, unless PORT is the variable under test (a bad value must never get
        // as far as listening; if it did, the test would hang on a running server).
        let env: Vec<(&str, &str)> = if var == "PORT" {
            vec![(var, value)]
        } else {
            vec![(var, value), ("PORT", "0")]
        };
        let out = phx(&["serve"], &env);
        assert_one_line(
            &out,
            &format!("{var}={value}"),
            &[&format!("{var}={value:?}"), expect],
        );
    }
}

#[test]
fn rules_across_settings_are_checked_too() {
    let out = phx(&["serve"], &[("PUBSUB_ADAPTER", "redis"), ("PORT", "0")]);
    assert_one_line(&out, "redis without NODE_NAME", &["NODE_NAME", "required"]);
    let out = phx(&["serve"], &[("PORT", "4123"), ("ADMIN_PORT", "4123")]);
    assert_one_line(
        &out,
        "ADMIN_PORT = PORT",
        &["ADMIN_PORT", "must differ from PORT"],
    );
    let out = phx(
        &["serve"],
        &[
            ("PUBSUB_ADAPTER", "redis"),
            ("NODE_NAME", "n1"),
            ("REDIS_COMPRESSION_LEVEL", "12"),
        ],
    );
    assert_one_line(
        &out,
        "compression 12",
        &["REDIS_COMPRESSION_LEVEL", "0..=9"],
    );
}

#[test]
fn a_secret_in_a_bad_value_is_masked_in_the_error() {
    let out = phx(&["serve"], &[("SECRET_KEY_BASE", "hunter2-short")]);
    assert_one_line(
        &out,
        "short secret",
        &["SECRET_KEY_BASE", "at least 20 bytes"],
    );
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn every_subcommand_refuses_a_bad_value_and_accepts_good_ones() {
    for sub in [&["config"][..], &["token", "1"], &["migrate"]] {
        let out = phx(sub, &[("MAX_FRAME_SIZE", "10")]);
        assert_one_line(&out, &format!("{sub:?}"), &["MAX_FRAME_SIZE"]);
    }
    // Good values pass the same checks (`token` reads the whole configuration, then exits).
    let out = phx(
        &["token", "1"],
        &[("OUTBOX_CAPACITY", "5"), ("MAX_FRAME_SIZE", "1024")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn an_empty_variable_is_unset() {
    let out = phx(&["config"], &[("PORT", ""), ("DATABASE_URL", "")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(row(&text, "PORT"), ("4000".into(), "default".into()));
    assert_eq!(
        row(&text, "DATABASE_URL"),
        ("(unset)".into(), "default".into())
    );
}

#[test]
fn config_shows_each_value_and_where_it_came_from_flag_over_env_over_file_over_default() {
    let file = settings_file(
        "layers",
        "port = 4101\nmax_channels = 7\ncheck_origin = [\"//a.example\", \"//b.example\"]\n\
         secret_key_base = \"file-secret-0123456789-abcdefgh\"\npool_size = 3\n",
    );
    let file_arg = file.to_str().expect("utf-8 path");
    let out = phx(
        &["config", "--config", file_arg, "--max-channels", "9"],
        &[
            ("PORT", "4102"),
            ("DATABASE_URL", "postgres://rumbl:pa55word@db.example/rumbl"),
            ("ADMIN_TOKEN", "admin-token-0123456789"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(file_arg), "the file is named: {text}");
    let from_file = format!("file {file_arg}");
    assert_eq!(row(&text, "PORT"), ("4102".into(), "env PORT".into()));
    assert_eq!(
        row(&text, "MAX_CHANNELS"),
        ("9".into(), "flag --max-channels".into())
    );
    assert_eq!(
        row(&text, "CHECK_ORIGIN"),
        ("//a.example,//b.example".into(), from_file.clone())
    );
    assert_eq!(row(&text, "POOL_SIZE"), ("3".into(), from_file.clone()));
    assert_eq!(row(&text, "HOST"), ("127.0.0.1".into(), "default".into()));
    assert_eq!(
        row(&text, "ADMIN_PORT"),
        ("(unset)".into(), "default".into())
    );
    // Secrets: never the value; a URL keeps all but its password.
    let (secret, source) = row(&text, "SECRET_KEY_BASE");
    assert_eq!(source, from_file);
    assert!(secret.starts_with("****"), "{secret}");
    assert!(!text.contains("file-secret"), "{text}");
    assert!(!text.contains("admin-token-0123456789"), "{text}");
    assert!(!text.contains("pa55word"), "{text}");
    assert_eq!(
        row(&text, "DATABASE_URL").0,
        "postgres://rumbl:****@db.example/rumbl"
    );
    // PHX_SERVER_CONFIG names the file as --config does.
    let out = phx(&["config"], &[("PHX_SERVER_CONFIG", file_arg)]);
    assert_eq!(row(&stdout(&out), "PORT"), ("4101".into(), from_file));
}

#[test]
fn a_bad_file_is_refused_in_one_line() {
    let bad_value = settings_file("bad-value", "max_frame_size = 12\n");
    let out = phx(
        &["serve", "--config", bad_value.to_str().expect("utf-8")],
        &[],
    );
    assert_one_line(
        &out,
        "bad value in file",
        &["max_frame_size = \"12\"", "MAX_FRAME_SIZE", "≥ 1024"],
    );
    let unknown = settings_file("unknown", "max_frame_sise = 2048\n");
    let out = phx(
        &["serve", "--config", unknown.to_str().expect("utf-8")],
        &[],
    );
    assert_one_line(&out, "unknown key", &["unknown setting `max_frame_sise`"]);
    let not_toml = settings_file("not-toml", "port = = 1\n");
    let out = phx(
        &["serve", "--config", not_toml.to_str().expect("utf-8")],
        &[],
    );
    assert_one_line(&out, "not TOML", &["not valid TOML"]);
    let out = phx(&["serve", "--config", "/nonexistent/phx.toml"], &[]);
    assert_one_line(
        &out,
        "missing file",
        &["cannot read", "/nonexistent/phx.toml"],
    );
    // A bad value in the file is overridden by a good variable: the file is only a default.
    let out = phx(
        &["config", "--config", bad_value.to_str().expect("utf-8")],
        &[("MAX_FRAME_SIZE", "4096")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        row(&stdout(&out), "MAX_FRAME_SIZE"),
        ("4096".into(), "env MAX_FRAME_SIZE".into())
    );
}

#[test]
fn serve_listens_where_the_file_says() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("phx-config-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = settings_file("serve", &format!("port = {port}\nhost = \"127.0.0.1\"\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .args(["serve", "--config", file.to_str().expect("utf-8")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/rumbl.sqlite3", dir.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut answered = None;
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(
                b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
            );
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            answered = Some(body);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let body = answered.expect("serve listens on the file's port");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}
