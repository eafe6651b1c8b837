//! What the declaration tells a person: where each effective value came from
//! (`phx-server config`), the configuration reference as a Markdown table (the README's and
//! `docs/operating.md`'s, checked against this output by a test), and a bad value as one line
//! naming its variable and what is allowed.
//!
//! Everything here walks the `clap` command, so a setting added to [`super::Settings`] (or to
//! an application's own settings) appears in all three without another list to keep.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

use super::file::SettingsFile;

/// Where an effective value came from, in the order they override one another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (or unset, when the setting has none).
    Default,
    /// The settings file.
    File(std::path::PathBuf),
    /// The environment variable.
    Env(String),
    /// The command-line flag.
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One setting's effective value, masked if it is a secret.
#[derive(Debug, Clone)]
pub struct Row {
    /// The variable, e.g. `PORT`.
    pub name: String,
    /// The value as given (`None`: unset), masked for secrets.
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// The settings (arguments with a variable) of `cmd`, in declaration order.
pub fn settings_of(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| a.get_env().is_some())
}

/// The variable an argument reads.
pub fn variable(arg: &Arg) -> String {
    arg.get_env()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.get_id().to_string())
}

/// Each setting of `cmd` with its effective value in `matches` and its source.
pub fn effective(cmd: &Command, matches: &ArgMatches, file: Option<&SettingsFile>) -> Vec<Row> {
    settings_of(cmd)
        .map(|arg| {
            let id = arg.get_id().as_str();
            let raw = matches
                .get_raw(id)
                .map(|vals| {
                    vals.map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|v| !v.is_empty());
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => {
                    Source::Flag(format!("--{}", arg.get_long().unwrap_or(id)))
                }
                Some(ValueSource::EnvVariable) => Source::Env(variable(arg)),
                Some(ValueSource::DefaultValue) if file.is_some_and(|f| f.contains(id)) => {
                    // `file` is Some here.
                    Source::File(file.map(|f| f.path.clone()).unwrap_or_default())
                }
                _ => Source::Default,
            };
            let secret = arg.is_hide_env_values_set();
            Row {
                name: variable(arg),
                value: raw.map(|v| if secret { mask(&v) } else { v }),
                source,
            }
        })
        .collect()
}

/// A secret as it may be shown, failing closed: a URL keeps its scheme, user, host and path,
/// but its password (found by the last `@`, so a `/` or `:` in it does not matter) and its
/// whole query (`?password=`, `?sslpassword=`) are masked; anything else shows only its length.
pub fn mask(value: &str) -> String {
    if let Some((scheme, rest)) = value.split_once("://") {
        let (rest, query) = match rest.split_once('?') {
            Some((rest, _query)) => (rest, "?****"),
            None => (rest, ""),
        };
        let rest = match rest.rsplit_once('@') {
            Some((userinfo, after)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:****@{after}"),
                None => format!("{userinfo}@{after}"),
            },
            None => rest.to_string(),
        };
        return format!("{scheme}://{rest}{query}");
    }
    format!("**** ({} bytes)", value.len())
}

/// `rows` as aligned text columns: variable, value, source.
pub fn render_text(rows: &[Row]) -> String {
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let value_w = rows
        .iter()
        .map(|r| r.value.as_deref().unwrap_or("(unset)").chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::new();
    for r in rows {
        let value = r.value.as_deref().unwrap_or("(unset)");
        let pad = value_w.saturating_sub(value.chars().count());
        out.push_str(&format!(
            "{:name_w$}  {value}{}  {}\n",
            r.name,
            " ".repeat(pad),
            r.source
        ));
    }
    out
}

/// The configuration reference: for each help heading of `cmd` (in order), a Markdown table
/// of its settings — variable, default, meaning — from the declaration itself.
pub fn markdown(cmd: &Command) -> String {
    let mut headings: Vec<&str> = Vec::new();
    for arg in settings_of(cmd) {
        let h = arg.get_help_heading().unwrap_or("Other");
        if !headings.contains(&h) {
            headings.push(h);
        }
    }
    let mut out = String::new();
    for heading in headings {
        out.push_str(&format!(
            "\n### {heading}\n\n| Variable | Default | Meaning |\n|---|---|---|\n"
        ));
        for arg in settings_of(cmd).filter(|a| a.get_help_heading().unwrap_or("Other") == heading) {
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let default = if defaults.is_empty() {
                "unset".to_string()
            } else {
                format!("`{}`", defaults.join(","))
            };
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
                .replace('\n', " ")
                .replace('|', "\\|");
            out.push_str(&format!("| `{}` | {default} | {help} |\n", variable(arg)));
        }
    }
    out
}

/// A clap error about a setting's value as the one line `phx-server` prints before exiting
/// with status 2 — the variable (or file key, or flag) that held it, the value, and what is
/// allowed — or `None` for any other error (unknown flag, `--help`), which clap reports
/// itself. `cmd` is the command that was parsed (with the file applied), `args` the command
/// line.
pub fn error_line(
    cmd: &Command,
    err: &clap::Error,
    args: &[OsString],
    file: Option<&SettingsFile>,
) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let shown = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    // An argument shows itself (`--port <PORT>`) only once its command is built.
    let mut built = cmd.clone();
    built.build();
    let arg = find_arg(&built, &shown)?;
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let value = if arg.is_hide_env_values_set() {
        mask(&value)
    } else {
        value
    };
    let why = match err.kind() {
        ErrorKind::InvalidValue => match err.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("must be one of {}", valid.join(", ")),
            _ => "not an allowed value".to_string(),
        },
        _ => std::error::Error::source(err)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "not an allowed value".to_string()),
    };
    let id = arg.get_id().as_str();
    let long = format!("--{}", arg.get_long().unwrap_or(id));
    let on_line = args.iter().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a == long || a.starts_with(&format!("{long}=")))
    });
    let var = variable(arg);
    let in_env = std::env::var_os(&var).is_some_and(|v| !v.is_empty());
    let place = if on_line {
        format!("{long} {value:?}")
    } else if in_env {
        format!("{var}={value:?}")
    } else if let Some(f) = file.filter(|f| f.contains(id)) {
        format!("{id} = {value:?} in {} ({var})", f.path.display())
    } else {
        format!("{var}={value:?}")
    };
    Some(format!("invalid {place}: {why}"))
}

/// The argument clap shows as `shown` (`--port <PORT>`), in `cmd` or a subcommand.
fn find_arg<'a>(cmd: &'a Command, shown: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.to_string() == shown)
        .or_else(|| cmd.get_subcommands().find_map(|s| find_arg(s, shown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_keeps_all_but_its_password() {
        assert_eq!(
            mask("postgres://rumbl:hunter2@db.example/rumbl_prod"),
            "postgres://rumbl:****@db.example/rumbl_prod"
        );
        assert_eq!(
            mask("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            mask("redis://:s3cret@127.0.0.1:6379"),
            "redis://:****@127.0.0.1:6379"
        );
        assert_eq!(mask("0123456789abcdefghij"), "**** (20 bytes)");
        // A slash or colon in the password, a password in the query: still masked.
        assert_eq!(mask("postgres://u:p/w@h/db"), "postgres://u:****@h/db");
        assert_eq!(
            mask("postgres://u:p:w@h:5432/db"),
            "postgres://u:****@h:5432/db"
        );
        assert_eq!(
            mask("postgres://h/db?password=hunter2&sslmode=require"),
            "postgres://h/db?****"
        );
    }
}
