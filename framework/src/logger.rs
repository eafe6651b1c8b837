//! Log lines in Phoenix's words (`CONNECTED TO …`, `JOIN "topic" to …`, `Replied topic :ok`,
//! `HANDLED … INCOMING ON …`, `GET /path`, `Sent 200 in 3ms`) and the helpers they share:
//! parameter filtering (Phoenix's `filter_parameters`, here `token` and `password`), module-like
//! names, durations, and a level chosen at run time (`LOG_JOIN`).

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// Keys whose values are never logged: a key containing one of these (case-insensitive) has
/// its value replaced by `"[FILTERED]"`, at any depth.
pub const FILTERED_KEYS: &[&str] = &["token", "password"];

/// What replaces a filtered value.
pub const FILTERED: &str = "[FILTERED]";

fn is_filtered(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    FILTERED_KEYS.iter().any(|f| k.contains(f))
}

/// `params` with the values of `token`/`password`-like keys replaced by `"[FILTERED]"`
/// (recursively through objects and arrays).
pub fn filter_values(params: &Value) -> Value {
    match params {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_filtered(k) {
                        Value::String(FILTERED.into())
                    } else {
                        filter_values(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(filter_values).collect()),
        v => v.clone(),
    }
}

/// Filtered `params` rendered as Elixir's `inspect` shows a map: `%{"token" => "[FILTERED]",
/// "vsn" => "2.0.0"}`.
pub fn inspect_params(params: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    inspect_into(&mut out, &filter_values(&Value::Object(params.clone())));
    out
}

/// Filtered `value` rendered Elixir-style (maps as `%{…}`, `null` as `nil`).
pub fn inspect_value(value: &Value) -> String {
    let mut out = String::new();
    inspect_into(&mut out, &filter_values(value));
    out
}

fn inspect_into(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => {
            let _ = write!(out, "{}", Value::String(s.clone()));
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inspect_into(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("%{");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{} => ", Value::String(k.clone()));
                inspect_into(out, x);
            }
            out.push('}');
        }
    }
}

/// The last path segment of a Rust type name, generics dropped:
/// `rumbl::channels::VideoChannel<X>` → `VideoChannel`.
pub fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A duration as Phoenix prints one: `42µs` under a millisecond, else `3ms`.
pub fn duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else {
        format!("{}ms", us / 1000)
    }
}

/// The info line of an accepted socket connect, as Phoenix words it:
/// `CONNECTED TO Rumbl.UserSocket in 42µs` then transport, serializer and the filtered params.
pub fn connected(
    socket: &str,
    took: Duration,
    transport: &str,
    serializer: phx_protocol::Serializer,
    params: &serde_json::Map<String, Value>,
) {
    let serializer = match serializer {
        phx_protocol::Serializer::V1 => "Phoenix.Socket.V1.JSONSerializer",
        phx_protocol::Serializer::V2 => "Phoenix.Socket.V2.JSONSerializer",
    };
    tracing::info!(
        "CONNECTED TO {socket} in {}\n  Transport: :{transport}\n  Serializer: {serializer}\n  Parameters: {}",
        duration(took),
        inspect_params(params)
    );
}

/// A log level chosen by configuration (`LOG_JOIN`), or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `info`.
    Info,
    /// `debug`.
    Debug,
    /// `false`: not logged.
    Off,
}

impl LogLevel {
    /// `info`, `debug` or `false` (also `off`).
    pub fn parse(s: &str) -> Result<LogLevel, &'static str> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "false" | "off" => Ok(LogLevel::Off),
            _ => Err("must be info, debug or false"),
        }
    }
}

/// `tracing` event at a [`LogLevel`] chosen at run time.
#[macro_export]
#[doc(hidden)]
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        match $level {
            $crate::logger::LogLevel::Info => ::tracing::info!($($arg)+),
            $crate::logger::LogLevel::Debug => ::tracing::debug!($($arg)+),
            $crate::logger::LogLevel::Off => {}
        }
    };
}

/// Whether an HTTP path is a socket transport's (`…/websocket`, `…/longpoll`): those requests
/// are logged at debug, as Phoenix dispatches sockets before the endpoint's request logging,
/// so upgrades and polls never add info lines.
pub fn is_socket_path(path: &str) -> bool {
    path.ends_with("/websocket") || path.ends_with("/longpoll")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_token_and_password_at_any_depth() {
        let p = json!({"token": "secret123", "vsn": "2.0.0", "user": {"Password": "pw", "name": "jose"},
                       "list": [{"auth_token": "t"}]});
        let f = filter_values(&p);
        assert_eq!(
            f,
            json!({"token": "[FILTERED]", "vsn": "2.0.0", "user": {"Password": "[FILTERED]", "name": "jose"},
                   "list": [{"auth_token": "[FILTERED]"}]})
        );
        assert!(!f.to_string().contains("secret123"));
    }

    #[test]
    fn inspects_like_elixir() {
        let p = json!({"token": "secret123", "vsn": "2.0.0", "n": 1, "x": null});
        let Value::Object(m) = p else { unreachable!() };
        assert_eq!(
            inspect_params(&m),
            r#"%{"n" => 1, "token" => "[FILTERED]", "vsn" => "2.0.0", "x" => nil}"#
        );
        assert_eq!(inspect_params(&Default::default()), "%{}");
    }

    #[test]
    fn short_names_and_durations() {
        assert_eq!(short_type_name("a::b::VideoChannel"), "VideoChannel");
        assert_eq!(short_type_name("a::b::Chan<c::D>"), "Chan");
        assert_eq!(short_type_name("Plain"), "Plain");
        assert_eq!(duration(Duration::from_micros(42)), "42µs");
        assert_eq!(duration(Duration::from_micros(3400)), "3ms");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(LogLevel::parse("info"), Ok(LogLevel::Info));
        assert_eq!(LogLevel::parse("DEBUG"), Ok(LogLevel::Debug));
        assert_eq!(LogLevel::parse("false"), Ok(LogLevel::Off));
        assert!(LogLevel::parse("loud").is_err());
    }

    #[test]
    fn socket_paths() {
        assert!(is_socket_path("/socket/websocket"));
        assert!(is_socket_path("/socket/longpoll"));
        assert!(!is_socket_path("/watch/2-elixir"));
    }
}
