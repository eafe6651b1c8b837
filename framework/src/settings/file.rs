//! The optional TOML file (`--config FILE`, or `PHX_SERVER_CONFIG`): one key per setting, the
//! variable's name in lower case (`port = 4000`, `check_origin = "//example.com"`), flat, no
//! sections. A file value stands where the built-in default stood, so the environment and
//! flags still override it — the order a release's `runtime.exs` reading `System.get_env`
//! gives, and what lets one file serve several nodes that differ by a variable or two.
//!
//! The file is applied to the `clap` command before parsing ([`SettingsFile::apply`]): each
//! value becomes its argument's default, so the same parser checks it as checks the variable,
//! and a bad value fails the same way. A key that names no setting is an error, not ignored:
//! a misspelt `max_frame_sise` must not silently leave the default in force.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable naming the settings file when `--config` is not given.
pub const CONFIG_ENV: &str = "PHX_SERVER_CONFIG";

/// Why the settings file was not used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It could not be read.
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML.
    #[error("the settings file {path} is not valid TOML: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// A key names no setting.
    #[error(
        "the settings file {path} has an unknown setting `{key}` (a key is the variable's name \
         in lower case, e.g. `port`; `phx-server config` lists them)"
    )]
    Unknown {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value is a table, a float or a date.
    #[error(
        "the settings file {path}: `{key}` must be a string, a whole number, a boolean or a \
         list of strings"
    )]
    Type {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

/// A parsed settings file: each key with its value as the text its variable would hold.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    /// Where it was read from.
    pub path: PathBuf,
    values: BTreeMap<String, String>,
}

impl SettingsFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<SettingsFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SettingsFile::parse(path, &text)
    }

    /// Parses `text` as the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<SettingsFile, FileError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| FileError::Parse {
                path: path.to_path_buf(),
                message: e.message().replace('\n', " "),
            })?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let parts: Option<Vec<&str>> = items.iter().map(|v| v.as_str()).collect();
                    match parts {
                        Some(parts) => parts.join(","),
                        None => {
                            return Err(FileError::Type {
                                path: path.to_path_buf(),
                                key,
                            })
                        }
                    }
                }
                _ => {
                    return Err(FileError::Type {
                        path: path.to_path_buf(),
                        key,
                    })
                }
            };
            // An empty value is unset, as an empty variable is: the setting keeps its default.
            if !text.is_empty() {
                values.insert(key, text);
            }
        }
        Ok(SettingsFile {
            path: path.to_path_buf(),
            values,
        })
    }

    /// Whether the file sets the setting `id` (the argument id, the variable in lower case).
    pub fn contains(&self, id: &str) -> bool {
        self.values.contains_key(id)
    }

    /// `cmd` with each of the file's values as the default of the argument it names, in the
    /// command and in every subcommand that has that argument. A key no argument anywhere has
    /// is [`FileError::Unknown`].
    pub fn apply(&self, cmd: clap::Command) -> Result<clap::Command, FileError> {
        for key in self.values.keys() {
            if !has_arg(&cmd, key) {
                return Err(FileError::Unknown {
                    path: self.path.clone(),
                    key: key.clone(),
                });
            }
        }
        Ok(self.apply_to(cmd))
    }

    fn apply_to(&self, mut cmd: clap::Command) -> clap::Command {
        for (key, value) in &self.values {
            if cmd.get_arguments().any(|a| a.get_id() == key.as_str()) {
                let value = value.clone();
                // A secret from the file becomes a default; `--help` prints defaults, so it
                // must not print this one (as it does not print a secret variable's value).
                cmd = cmd.mut_arg(key.as_str(), |a| {
                    let hide = a.is_hide_env_values_set();
                    a.default_value(value).hide_default_value(hide)
                });
            }
        }
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            cmd = cmd.mut_subcommand(name, |sub| self.apply_to(sub));
        }
        cmd
    }
}

/// Whether `cmd` or one of its subcommands has an argument `id` that is a setting (has a
/// variable): `fixture` or `help` are flags, not settings, and the file cannot name another
/// file.
fn has_arg(cmd: &clap::Command, id: &str) -> bool {
    cmd.get_arguments().any(|a| {
        a.get_id() == id
            && a.get_env().is_some()
            && a.get_env() != Some(std::ffi::OsStr::new(CONFIG_ENV))
    }) || cmd.get_subcommands().any(|s| has_arg(s, id))
}

/// The settings file `args` (the whole command line) name with `--config FILE` or
/// `--config=FILE`, else the one [`CONFIG_ENV`] names, else none. Read before `clap` parses,
/// because the file's values are part of what it parses.
pub fn path_from_args(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_their_variables_would_hold_them() {
        let f = SettingsFile::parse(
            Path::new("phx.toml"),
            "port = 4001\ncheck_origin = [\"//a.example\", \"//b.example\"]\nlog_join = false\nphx_host = \"example.com\"\n",
        )
        .expect("valid");
        assert_eq!(f.values["port"], "4001");
        assert_eq!(f.values["check_origin"], "//a.example,//b.example");
        assert_eq!(f.values["log_join"], "false");
        assert_eq!(f.values["phx_host"], "example.com");
    }

    #[test]
    fn a_table_or_a_float_is_refused() {
        let e = SettingsFile::parse(Path::new("phx.toml"), "[endpoint]\nport = 1\n");
        assert!(matches!(e, Err(FileError::Type { key, .. }) if key == "endpoint"));
        let e = SettingsFile::parse(Path::new("phx.toml"), "port = 1.5\n");
        assert!(matches!(e, Err(FileError::Type { .. })));
        let e = SettingsFile::parse(Path::new("phx.toml"), "port = \n");
        assert!(matches!(e, Err(FileError::Parse { .. })));
    }

    #[test]
    fn the_flag_wins_over_the_variable() {
        let args: Vec<OsString> = ["phx-server", "serve", "--config", "a.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from_args(&args), Some(PathBuf::from("a.toml")));
        let args: Vec<OsString> = ["phx-server", "config", "--config=b.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from_args(&args), Some(PathBuf::from("b.toml")));
    }
}
