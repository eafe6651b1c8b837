//! A bad setting stops `phx-server serve` at start: exit status 2 and one line naming the
//! variable, its value and what is allowed — before the port is taken.

use std::process::Command;

fn serve_with(var: &str, value: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .arg("serve")
        .env(var, value)
        .env("PORT", "0")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run phx-server");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_values_exit_2_with_one_line_naming_the_variable() {
    for (var, value, expect) in [
        ("OUTBOX_CAPACITY", "0", "must be at least 1"),
        ("MAX_CHANNELS", "0", "must be at least 1"),
        ("MAX_FRAME_SIZE", "10", "at least 1024"),
        ("IDLE_TIMEOUT_MS", "0", "at least 1 ms"),
        ("LP_MAX_SESSIONS", "0", "must be at least 1"),
        ("PORT", "70000", "not a whole number in range"),
        ("SOCKET_TRANSPORTS", "smoke-signals", "unknown transport"),
        ("PUBSUB_ADAPTER", "redis", "NODE_NAME"),
        ("REDIS_COMPRESSION_LEVEL", "12", "0..=9"),
    ] {
        let extra = if var == "REDIS_COMPRESSION_LEVEL" {
            vec![("PUBSUB_ADAPTER", "redis"), ("NODE_NAME", "n1")]
        } else {
            vec![]
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phx-server"));
        cmd.arg("serve").env(var, value).env_remove("DATABASE_URL");
        if var != "PORT" {
            cmd.env("PORT", "0");
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run phx-server");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{var}={value}: one line, got {stderr:?}");
        let name = if var == "PUBSUB_ADAPTER" {
            "NODE_NAME"
        } else {
            var
        };
        assert!(lines[0].contains(name), "{var}: {}", lines[0]);
        assert!(lines[0].contains(expect), "{var}: {}", lines[0]);
    }
    let (code, stderr) = serve_with("OUTBOX_CAPACITY", "not-a-number");
    assert_eq!(code, Some(2), "{stderr}");
    // Good values pass the same checks (`token` reads the whole configuration, then exits).
    let out = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .args(["token", "1"])
        .env("OUTBOX_CAPACITY", "5")
        .env("MAX_FRAME_SIZE", "1024")
        .output()
        .expect("run phx-server");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
