//! Every setting of the framework, declared once: its variable (the Phoenix release name where
//! Phoenix has one — `PORT`, `PHX_HOST`, `SECRET_KEY_BASE`, `CHECK_ORIGIN`), its flag, its
//! default, its range and its help text. Everything else is derived from this declaration:
//! parsing the environment ([`Config::from_env`](crate::Config::from_env)), a TOML file's keys
//! ([`file`](mod@file)), `--help`, `phx-server config` and the configuration tables of the README and
//! `docs/operating.md` ([`report`]), so none of them can drift from what the server reads.
//!
//! A value is checked where it is parsed, by the parsers below, so a bad one fails at start
//! with one line naming the variable and what is allowed — never later, on a socket.
//! [`Settings`] holds the values as given (milliseconds, byte counts); [`Config`] is what the
//! server runs with (durations, typed options), made by [`Config::from_settings`], which also
//! checks the rules that span settings (`ADMIN_PORT` ≠ `PORT`, `NODE_NAME` with `redis`).
//!
//! [`Config`]: crate::Config
//! [`Config::from_settings`]: crate::Config::from_settings

pub mod file;
pub mod report;
mod resolve;

use std::path::PathBuf;

use crate::config::{CheckOrigin, SocketOptions};
use crate::logger::LogLevel;
use crate::secret::Secret;

/// The framework's settings, as `clap` arguments: each reads its flag, else its environment
/// variable, else (through [`file`](mod@file)) the key of the same name in lower case in the TOML file,
/// else its default. An application flattens this beside its own settings
/// (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    // --- Endpoint ---
    /// Interface to listen on.
    #[arg(
        long,
        env = "HOST",
        default_value = "127.0.0.1",
        help_heading = "Endpoint"
    )]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 4000, value_parser = between(0u16, u16::MAX), help_heading = "Endpoint")]
    pub port: u16,
    /// Shared with the Elixir app that mints `Phoenix.Token`s; at least 20 bytes. Unset: a
    /// development value, with a loud warning (tokens signed with it are forgeable).
    #[arg(long, env = "SECRET_KEY_BASE", hide_env_values = true, value_parser = secret_key_base, help_heading = "Endpoint")]
    pub secret_key_base: Option<Secret>,
    /// The endpoint's `url: [host: ...]`, which `CHECK_ORIGIN=true` compares origins with.
    /// Unset: `localhost`.
    #[arg(long, env = "PHX_HOST", value_parser = non_empty, help_heading = "Endpoint")]
    pub phx_host: Option<String>,
    /// `true` (an origin's host must equal `PHX_HOST`; scheme and port ignored), `false`,
    /// `conn` (Phoenix's `:conn`: host and port of the request's own `Host`), or a comma list such as `//example.com,https://*.example.org`. Unset: `true`, except that
    /// the embedded demo with neither this nor `PHX_HOST` set accepts pages on `localhost`,
    /// `127.0.0.1` and `[::1]` (any port), as a Phoenix dev config relaxes the check.
    #[arg(long, env = "CHECK_ORIGIN", value_parser = check_origin, help_heading = "Endpoint")]
    pub check_origin: Option<CheckOrigin>,
    /// Transports mounted on the socket (Phoenix's `websocket:` / `longpoll:` options), a
    /// comma list of `websocket` and `longpoll`; a disabled one has no route (HTTP 404).
    #[arg(long, env = "SOCKET_TRANSPORTS", default_value = "websocket,longpoll", value_parser = socket_transports, help_heading = "Endpoint")]
    pub socket_transports: SocketOptions,

    // --- Sockets ---
    /// Largest WebSocket message accepted, in bytes (≥ 1024, so a join fits); larger → close
    /// 1009.
    #[arg(long, env = "MAX_FRAME_SIZE", default_value_t = 1 << 20, value_parser = at_least(1024usize), help_heading = "Sockets")]
    pub max_frame_size: usize,
    /// A socket that sends nothing for this long (ms, ≥ 1) is closed with 1002; the JS client
    /// heartbeats every 30 s.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = at_least::<u64>(1), help_heading = "Sockets")]
    pub idle_timeout_ms: u64,
    /// Channels one socket may join (`max_channels_per_transport`, ≥ 1).
    #[arg(long, env = "MAX_CHANNELS", default_value_t = 100, value_parser = at_least(1usize), help_heading = "Sockets")]
    pub max_channels: usize,
    /// Frames queued for one socket before it is closed as too slow with 1013 (≥ 1).
    #[arg(long, env = "OUTBOX_CAPACITY", default_value_t = 1024, value_parser = at_least(1usize), help_heading = "Sockets")]
    pub outbox_capacity: usize,
    /// Bytes queued for one socket before it is closed as too slow with 1013 (≥ 1; one larger
    /// frame still goes into an empty queue).
    #[arg(long, env = "OUTBOX_MAX_BYTES", default_value_t = 4 << 20, value_parser = at_least(1usize), help_heading = "Sockets")]
    pub outbox_max_bytes: usize,
    /// Bytes of client messages a channel may have queued before the socket stops being read
    /// (≥ 1).
    #[arg(long, env = "CHANNEL_INBOX_MAX_BYTES", default_value_t = 2 << 20, value_parser = at_least(1usize), help_heading = "Sockets")]
    pub channel_inbox_max_bytes: usize,
    /// Joins one socket may start per second, after a burst of 2 × `MAX_CHANNELS`; over it →
    /// join error `rate limited` (0 = unlimited).
    #[arg(long, env = "MAX_JOINS_PER_SEC", default_value_t = 10, value_parser = at_least(0u32), help_heading = "Sockets")]
    pub max_joins_per_sec: u32,
    /// Messages one socket may send per second, after a burst of as many; over it → error
    /// reply `rate limited`, not processed (0 = unlimited).
    #[arg(long, env = "MAX_MESSAGES_PER_SEC", default_value_t = 1000, value_parser = at_least(0u32), help_heading = "Sockets")]
    pub max_messages_per_sec: u32,

    // --- LongPoll ---
    /// How long a poll is held when nothing is buffered (ms, ≥ 1; Phoenix's `window_ms`) → 204;
    /// a POSTed frame not processed in time → `{"status":408}`; a session expires 1.5 × this
    /// after its last poll started.
    #[arg(long, env = "LP_WINDOW_MS", default_value_t = 10_000, value_parser = at_least::<u64>(1), help_heading = "LongPoll")]
    pub lp_window_ms: u64,
    /// Largest POST body in bytes (≥ 1); larger → HTTP 400.
    #[arg(long, env = "LP_MAX_BODY", default_value_t = 8 << 20, value_parser = at_least(1usize), help_heading = "LongPoll")]
    pub lp_max_body: usize,
    /// Largest ndjson line of a POST in bytes (≥ 1); longer → HTTP 400.
    #[arg(long, env = "LP_MAX_LINE", default_value_t = 10 << 20, value_parser = at_least(1usize), help_heading = "LongPoll")]
    pub lp_max_line: usize,
    /// Frames buffered for a session between polls (≥ 1); over it the session is closed (its
    /// next request → 410), never grown.
    #[arg(long, env = "LP_MAX_BUFFERED", default_value_t = 1024, value_parser = at_least(1usize), help_heading = "LongPoll")]
    pub lp_max_buffered: usize,
    /// Bytes buffered for a session between polls (≥ 1); over it the session is closed.
    #[arg(long, env = "LP_MAX_BUFFERED_BYTES", default_value_t = 4 << 20, value_parser = at_least(1usize), help_heading = "LongPoll")]
    pub lp_max_buffered_bytes: usize,
    /// Live sessions per socket mount (≥ 1); over it a new session gets HTTP 503 and the
    /// client retries with backoff.
    #[arg(long, env = "LP_MAX_SESSIONS", default_value_t = 20_000, value_parser = at_least(1usize), help_heading = "LongPoll")]
    pub lp_max_sessions: usize,

    // --- HTTP limits ---
    /// A request's head must arrive within it (ms, ≥ 1), and a keep-alive connection may
    /// idle this long; past it the connection is closed without a response.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = at_least::<u64>(1), help_heading = "HTTP limits")]
    pub http_header_timeout_ms: u64,
    /// The whole body must arrive within it (ms, ≥ 1, from the end of the head, however it
    /// trickles); past it → HTTP 408 and the connection is closed.
    #[arg(long, env = "HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = at_least::<u64>(1), help_heading = "HTTP limits")]
    pub http_body_timeout_ms: u64,
    /// Longest request target (path + query) in bytes (≥ 1); longer → HTTP 414.
    #[arg(long, env = "HTTP_MAX_URI_BYTES", default_value_t = 8192, value_parser = at_least(1usize), help_heading = "HTTP limits")]
    pub http_max_uri_bytes: usize,
    /// Largest request head in bytes, request line included (≥ 1024); larger → HTTP 431.
    #[arg(long, env = "HTTP_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = at_least(1024usize), help_heading = "HTTP limits")]
    pub http_max_header_bytes: usize,
    /// Most header lines in a request (≥ 8: a WebSocket handshake has 6); more → HTTP 431.
    #[arg(long, env = "HTTP_MAX_HEADERS", default_value_t = 100, value_parser = at_least(8usize), help_heading = "HTTP limits")]
    pub http_max_headers: usize,
    /// Open connections, each WebSocket for its whole life (≥ 1); over it a new connection
    /// reads one `503` with `connection: close`, established ones are untouched. Unset: the
    /// soft `RLIMIT_NOFILE` − 512.
    #[arg(long, env = "MAX_CONNECTIONS", value_parser = at_least(1usize), help_heading = "HTTP limits")]
    pub max_connections: Option<usize>,

    // --- Shutdown ---
    /// Drain on SIGTERM (Phoenix's drainer): sockets closed per batch (≥ 1).
    #[arg(long, env = "DRAIN_BATCH_SIZE", default_value_t = 10_000, value_parser = at_least(1usize), help_heading = "Shutdown")]
    pub drain_batch_size: usize,
    /// Drain: pause between batches (ms).
    #[arg(long, env = "DRAIN_INTERVAL_MS", default_value_t = 2000, value_parser = at_least::<u64>(0), help_heading = "Shutdown")]
    pub drain_interval_ms: u64,
    /// Drain: upper bound on the whole drain (ms).
    #[arg(long, env = "DRAIN_MAX_MS", default_value_t = 30_000, value_parser = at_least::<u64>(0), help_heading = "Shutdown")]
    pub drain_max_ms: u64,
    /// After the drain, connections still open get this long (ms), then are aborted and the
    /// process exits 0.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 5000, value_parser = at_least::<u64>(0), help_heading = "Shutdown")]
    pub shutdown_grace_ms: u64,

    // --- Presence ---
    /// A topic's `presence_diff`s are coalesced over this window (ms; 0 = one diff per
    /// change, as Phoenix).
    #[arg(long, env = "PRESENCE_BATCH_MS", default_value_t = 50, value_parser = at_least::<u64>(0), help_heading = "Presence")]
    pub presence_batch_ms: u64,
    /// Cluster: a peer node silent this long (ms; no heartbeat) has its presences removed
    /// here. At least 2000, two of the 1 s heartbeats: a shorter one takes healthy peers down
    /// on a hiccup.
    #[arg(long, env = "PRESENCE_DOWN_MS", default_value_t = 5000, value_parser = at_least::<u64>(2000), help_heading = "Presence")]
    pub presence_down_ms: u64,

    // --- Cluster ---
    /// `local` (one node) or `redis` (phoenix_pubsub_redis: every node on `REDIS_URL` with the
    /// same `PUBSUB_NAME`, Elixir ones included, is one PubSub).
    #[arg(long, env = "PUBSUB_ADAPTER", default_value = "local", value_parser = ["local", "redis"], help_heading = "Cluster")]
    pub pubsub_adapter: String,
    /// With `redis`: the Redis every node uses (a password in it is masked in output).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        help_heading = "Cluster"
    ,
        value_parser = redis_url)]
    pub redis_url: String,
    /// This node's name: with `redis`, on the wire (required; unique in the cluster, never an
    /// Elixir node's name; at most 255 bytes); on the dashboard in any case (unset: `local`).
    #[arg(long, env = "NODE_NAME", value_parser = node_name, help_heading = "Cluster")]
    pub node_name: Option<String>,
    /// The Elixir app's PubSub module (`Rumbl.PubSub`): names the Redis channel
    /// `phx:Elixir.<PUBSUB_NAME>.Adapter`.
    #[arg(
        long,
        env = "PUBSUB_NAME",
        default_value = "PhxServer.PubSub",
        help_heading = "Cluster"
    )]
    pub pubsub_name: String,
    /// zlib level (0–9) of the terms this node publishes (phoenix_pubsub_redis's
    /// `compression_level`).
    #[arg(long, env = "REDIS_COMPRESSION_LEVEL", default_value_t = 0, value_parser = between(0u32, 9), help_heading = "Cluster")]
    pub redis_compression_level: u32,

    // --- Admin ---
    /// The admin listener's port: `/metrics` (Prometheus text) and `/dashboard`; must differ
    /// from `PORT`. Unset: no admin listener, so `/metrics` is served nowhere (never on the
    /// public port).
    #[arg(long, env = "ADMIN_PORT", value_parser = between(0u16, u16::MAX), help_heading = "Admin")]
    pub admin_port: Option<u16>,
    /// The admin listener's interface: loopback unless you open it (then firewall it).
    #[arg(
        long,
        env = "ADMIN_HOST",
        default_value = "127.0.0.1",
        help_heading = "Admin"
    )]
    pub admin_host: String,
    /// The secret that opens `/dashboard` (at least 16 bytes). Unset: the dashboard refuses
    /// everyone.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token, help_heading = "Admin")]
    pub admin_token: Option<Secret>,
    /// Where the dashboard's esbuild bundle is served from. Unset: `vendor-js/dist/dashboard`
    /// under the working directory, else beside the source tree.
    #[arg(long, env = "DASHBOARD_ASSETS_DIR", help_heading = "Admin")]
    pub dashboard_assets_dir: Option<PathBuf>,

    // --- Logging ---
    /// The log filter (`tracing` `EnvFilter` syntax, e.g. `info,phx_channels=debug`).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info",
        help_heading = "Logging"
    )]
    pub rust_log: String,
    /// `text` (Phoenix-worded lines on stderr; ANSI colours only on a terminal) or `json` (one
    /// JSON object a line).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], help_heading = "Logging")]
    pub log_format: String,
    /// Level of the per-join lines `JOIN "videos:2" to Rumbl.VideoChannel` / `Replied videos:2
    /// :ok` (Phoenix's `log_join`): `info`, `debug` or `false`. Phoenix defaults to `info`;
    /// here `debug`, so a join flood adds no info lines.
    #[arg(long, env = "LOG_JOIN", default_value = "debug", value_parser = log_join, help_heading = "Logging")]
    pub log_join: LogLevel,
}

impl Settings {
    /// The settings from the environment alone (no flags, no file): what a library user's
    /// `Config::from_env` reads. A bad value is a [`clap::Error`] naming its argument. Here an
    /// empty variable is a value (`PORT=` is refused); the `phx-server` command unsets empty
    /// variables first, which a library should not do behind its caller's back.
    pub fn from_env() -> Result<Settings, clap::Error> {
        use clap::FromArgMatches;
        let matches = Settings::command().try_get_matches_from(std::iter::empty::<String>())?;
        Settings::from_arg_matches(&matches)
    }

    /// A command of these settings alone (what [`Settings::from_env`] parses).
    pub fn command() -> clap::Command {
        use clap::Args;
        Settings::augment_args(clap::Command::new("phx-channels").no_binary_name(true))
    }
}

// --- value parsers: each says what is allowed, which the start-up error line repeats ---

/// A whole number ≥ `min` (sizes, counts, milliseconds).
pub fn at_least<T>(min: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.trim().parse::<T>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!("must be a whole number ≥ {min}")),
    }
}

/// A whole number in `min..=max`.
pub fn between<T>(
    min: T,
    max: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("must be a whole number in {min}..={max}")),
    }
}

fn secret_key_base(s: &str) -> Result<Secret, String> {
    if s.len() < 20 {
        return Err("must be at least 20 bytes (Plug.Crypto requires it)".into());
    }
    Ok(Secret::from(s))
}

fn admin_token(s: &str) -> Result<Secret, String> {
    if s.len() < 16 {
        return Err("must be at least 16 bytes (a short token is guessable)".into());
    }
    Ok(Secret::from(s))
}

fn check_origin(s: &str) -> Result<CheckOrigin, String> {
    const WHAT: &str =
        "must be true, false, conn or a comma list of origins such as //example.com,https://*.example.org";
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        return Ok(CheckOrigin::Host);
    }
    if s.eq_ignore_ascii_case("false") {
        return Ok(CheckOrigin::Off);
    }
    if s.eq_ignore_ascii_case("conn") {
        return Ok(CheckOrigin::Conn);
    }
    let origins: Vec<String> = s
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    // Each origin needs a host after `//` (Phoenix refuses an origin without one): `TRUE`,
    // `1` or `yes` are mistakes, not a list that would refuse every page.
    let has_host = |o: &String| {
        o.split_once("//")
            .is_some_and(|(_, host)| !host.is_empty() && !host.starts_with(':'))
    };
    if origins.is_empty() || !origins.iter().all(has_host) {
        return Err(WHAT.into());
    }
    Ok(CheckOrigin::List(origins))
}

fn redis_url(s: &str) -> Result<String, String> {
    use redis::IntoConnectionInfo;
    s.into_connection_info()
        .map(|_| s.to_string())
        .map_err(|_| "must be a redis:// (or rediss://, redis+unix://) URL".into())
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty (leave it unset for the default)".into());
    }
    Ok(s.to_string())
}

fn socket_transports(s: &str) -> Result<SocketOptions, String> {
    SocketOptions::parse(s).map_err(str::to_string)
}

fn node_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 255 {
        return Err("an Erlang atom holds at most 255 bytes".into());
    }
    if s == "nonode@nohost" {
        return Err("nonode@nohost is what an Elixir node without a name is called".into());
    }
    Ok(s.to_string())
}

fn log_join(s: &str) -> Result<LogLevel, String> {
    LogLevel::parse(s).map_err(str::to_string)
}
