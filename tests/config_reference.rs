//! The configuration reference in README.md and docs/operating.md is the declaration's own
//! output (`phx-server config --markdown`), so neither can drift from what the server reads.
//! Regenerate both with `bash scripts/config-reference.sh`.

use std::process::Command;

const START: &str = "<!-- config-reference:start -->";
const END: &str = "<!-- config-reference:end -->";

fn generated() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_phx-server"))
        .args(["config", "--markdown"])
        .env_clear()
        .output()
        .expect("run phx-server config --markdown");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn between_markers(path: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("read doc");
    let (_, rest) = text
        .split_once(START)
        .unwrap_or_else(|| panic!("{path}: no {START}"));
    let (inside, _) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{path}: no {END}"));
    inside.to_string()
}

#[test]
fn the_readme_and_operating_tables_are_the_declarations_output() {
    let table = generated();
    // Every setting the server reads is in it, with its default.
    for expect in [
        "| `PORT` | `4000` |",
        "| `SECRET_KEY_BASE` | unset |",
        "| `DATABASE_URL` | unset |",
        "| `POOL_SIZE` | `10` |",
        "| `OUTBOX_CAPACITY` | `1024` |",
        "| `ADMIN_TOKEN` | unset |",
        "| `LOG_FORMAT` | `text` |",
    ] {
        assert!(table.contains(expect), "{expect} not in\n{table}");
    }
    for path in ["README.md", "docs/operating.md"] {
        assert_eq!(
            between_markers(path).trim(),
            table.trim(),
            "{path}'s configuration reference differs from `phx-server config --markdown`: \
             run `bash scripts/config-reference.sh`"
        );
    }
}
