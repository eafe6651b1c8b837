//! Configuration: what the server runs with ([`Config`]), made from the declared settings
//! ([`crate::settings`]: environment, TOML file, flags) by [`Config::from_settings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;

/// `check_origin` (spec §1.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOrigin {
    /// `false`: every origin is allowed.
    Off,
    /// `true`: the origin host must equal the endpoint's `url_host`; scheme and port ignored.
    Host,
    /// `:conn`: the origin's host and port must be the request's own (its `Host` header) —
    /// for a socket served wherever it is reached, such as the admin listener's dashboard.
    Conn,
    /// A list of allowed origins, each `scheme://host:port` with any part optional
    /// (`//example.com` matches any scheme and port; `*.example.com` matches subdomains).
    List(Vec<String>),
}

impl CheckOrigin {
    /// Pages served from this machine only — `localhost`, `127.0.0.1` or `[::1]`, any scheme
    /// and port: what the embedded demo allows when nothing was configured, so that both
    /// `http://localhost:4000` and `http://127.0.0.1:4000` work for a newcomer.
    pub fn loopback() -> CheckOrigin {
        CheckOrigin::List(vec![
            "//localhost".into(),
            "//127.0.0.1".into(),
            "//[::1]".into(),
        ])
    }
}

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The level of the per-join `JOIN "topic" to Channel` / `Replied topic :ok` lines
    /// (`LOG_JOIN` = `info`, `debug` or `false`; default `debug`, so a join flood adds no
    /// info lines — Phoenix's `log_join` defaults to `:info`).
    pub log_join: crate::logger::LogLevel,
    /// Interface to listen on (`HOST`, default `127.0.0.1`).
    pub host: String,
    /// Port (`PORT`, default 4000).
    pub port: u16,
    /// `SECRET_KEY_BASE`, shared with the Elixir app that mints tokens.
    pub secret_key_base: Secret,
    /// Whether `SECRET_KEY_BASE` came from the environment (else the development default).
    pub secret_from_env: bool,
    /// The endpoint's `url: [host: ...]` (`PHX_HOST`, default `localhost`), for check_origin.
    pub url_host: String,
    /// `CHECK_ORIGIN`: `true` (default), `false`, or a comma-separated list.
    pub check_origin: CheckOrigin,
    /// Whether `CHECK_ORIGIN` or `PHX_HOST` was set: if neither was, the embedded demo may
    /// loosen the check to loopback pages ([`CheckOrigin::loopback`]), as a Phoenix dev config
    /// does; a configured deployment never is.
    pub origin_from_env: bool,
    /// Largest accepted WebSocket message (`MAX_FRAME_SIZE`, default 1 MiB); bigger → 1009.
    pub max_frame_size: usize,
    /// Close a socket that sent nothing for this long (`IDLE_TIMEOUT_MS`, default 60 s).
    pub idle_timeout: Duration,
    /// `max_channels_per_transport` (default 100).
    pub max_channels: usize,
    /// Frames a socket may have queued before it is closed as too slow (default 1024).
    pub outbox_capacity: usize,
    /// Messages a channel may have queued before the socket stops reading (default 1024).
    pub channel_inbox_capacity: usize,
    /// tungstenite read buffer per socket (default 256 B: Phoenix client frames — heartbeats,
    /// joins, small pushes — fit; a larger frame grows it to that frame's size on demand).
    pub ws_read_buffer: usize,
    /// Bytes buffered before a write is forced while draining a batch (default 16 KiB).
    pub ws_write_buffer: usize,
    /// How long a write to a client that does not read may block before it is dropped.
    pub write_timeout: Duration,
    /// Drain on shutdown: sockets per batch (default 10 000).
    pub drain_batch_size: usize,
    /// Drain on shutdown: pause between batches (default 2 s).
    pub drain_interval: Duration,
    /// Drain on shutdown: upper bound on the whole drain (default 30 s).
    pub drain_max: Duration,
    /// LongPoll: how long a poll is held when nothing is buffered (`LP_WINDOW_MS`, default
    /// 10 000, Phoenix's `window_ms`). A session also dies when more than 1.5 × this has passed
    /// since the start of its last poll, and a POSTed frame not processed within it gets 408.
    pub lp_window: Duration,
    /// LongPoll: largest POST body in bytes (`LP_MAX_BODY`, default 8 MiB, about Plug's
    /// `read_body` limit); larger → HTTP 400, as Phoenix answers.
    pub lp_max_body: usize,
    /// LongPoll: largest ndjson line in bytes (`LP_MAX_LINE`, default 10 MiB of base64, as
    /// Phoenix); a POST with a longer line among its first 100 is refused with HTTP 400. Only
    /// reachable when `LP_MAX_BODY` is raised above it.
    pub lp_max_line: usize,
    /// LongPoll: frames a session may hold for its client between polls (`LP_MAX_BUFFERED`,
    /// default 1024). Over it the session is closed, not grown: the client's next request gets
    /// 410 and it reconnects, exactly as after a dropped session.
    pub lp_max_buffered: usize,
    /// LongPoll: live sessions per mounted socket (`LP_MAX_SESSIONS`, default 20 000). At the
    /// cap a session-creating GET gets HTTP 503 with an empty body, which the JS client treats
    /// as a network error and retries with backoff (a JSON status other than 200/204/403/410
    /// would make it throw).
    pub lp_max_sessions: usize,
    /// `SOCKET_TRANSPORTS`: the transports `serve` mounts on the Rumbl `/socket`, a comma list
    /// of `websocket` and `longpoll` (default both). The fixture always mounts both.
    pub socket_transports: SocketOptions,
    // --- core: per-socket bounds and rate limits (issue 10) ---
    /// Bytes of frames a socket may have queued before it is closed as too slow
    /// (`OUTBOX_MAX_BYTES`, default 4 MiB; a single larger frame still goes into an empty queue).
    pub outbox_max_bytes: usize,
    /// Bytes of client messages a channel may have queued before the socket stops reading
    /// (`CHANNEL_INBOX_MAX_BYTES`, default 2 MiB; one larger message still fits an empty inbox).
    pub channel_inbox_max_bytes: usize,
    /// LongPoll: bytes of frames a session may hold between polls (`LP_MAX_BUFFERED_BYTES`,
    /// default 4 MiB); over it the session is closed, as with `LP_MAX_BUFFERED`.
    pub lp_max_buffered_bytes: usize,
    /// Joins a socket may start per second, after a burst of 2 × `max_channels`
    /// (`MAX_JOINS_PER_SEC`, default 10; 0 = unlimited). Over it: join error "rate limited".
    pub max_joins_per_sec: u32,
    /// Messages a socket may send per second, after a burst of as many (`MAX_MESSAGES_PER_SEC`,
    /// default 1000; 0 = unlimited). Over it: error reply "rate limited", not processed.
    pub max_messages_per_sec: u32,
    // --- HTTP limits (issue 10): every connection, every route, before any handler runs ---
    /// How long a client may take to send a request's head (request line and headers), and how
    /// long a keep-alive connection may sit idle between requests (`HTTP_HEADER_TIMEOUT_MS`,
    /// default 10 000). Past it the connection is closed without a response: a client that
    /// opens sockets and sends nothing, or half a request, must not hold a descriptor forever.
    pub http_header_timeout: Duration,
    /// How long the whole body of a request may take to arrive, counted from the end of its
    /// head (`HTTP_BODY_TIMEOUT_MS`, default 10 000). A per-read timeout would never fire for a
    /// client that trickles a byte at a time; this deadline does. Past it: HTTP 408 (LongPoll:
    /// its `{"status":408}`) and the connection is closed.
    pub http_body_timeout: Duration,
    /// Longest request target (path and query) in bytes (`HTTP_MAX_URI_BYTES`, default 8192);
    /// longer → HTTP 414 on every route, before the query is decoded.
    pub http_max_uri_bytes: usize,
    /// Largest request head in bytes, request line included (`HTTP_MAX_HEADER_BYTES`, default
    /// 16 384); larger → HTTP 431 and the connection is closed. It also bounds what one
    /// connection buffers before its request is parsed.
    pub http_max_header_bytes: usize,
    /// Most header lines in a request (`HTTP_MAX_HEADERS`, default 100); more → HTTP 431 and
    /// the connection is closed.
    pub http_max_headers: usize,
    /// Open connections, WebSockets included for their whole life (`MAX_CONNECTIONS`, default
    /// the soft `RLIMIT_NOFILE` − 512, leaving descriptors for the database, files and the
    /// refusals themselves). Over it a new connection gets one `503 Service Unavailable` with
    /// `connection: close`, unread, and is closed; established connections are not touched.
    pub max_connections: usize,
    /// On shutdown, after the drain (`DRAIN_MAX_MS` at most): how long connections still open
    /// (half-sent requests, requests in flight) get to finish before they are aborted and the
    /// process exits (`SHUTDOWN_GRACE_MS`, default 5000).
    pub shutdown_grace: Duration,
    /// Cluster: `PUBSUB_ADAPTER` (`local`, the default, or `redis`) and its settings.
    pub pubsub: PubSubConfig,
    /// The admin listener's port (`ADMIN_PORT`, default unset: no admin listener, and so no
    /// `/metrics` anywhere). Must differ from `PORT`.
    pub admin_port: Option<u16>,
    /// The admin listener's interface (`ADMIN_HOST`, default `127.0.0.1`: loopback only).
    pub admin_host: String,
    /// `ADMIN_TOKEN`: the secret an operator gives to open `/dashboard` on the admin listener
    /// (unset → the dashboard refuses everyone). Never logged, masked by `phx-server config`.
    pub admin_token: Option<Secret>,
    /// `DASHBOARD_ASSETS_DIR`: the dashboard's esbuild bundle (see
    /// [`default_dashboard_assets_dir`]).
    pub dashboard_assets_dir: PathBuf,
    /// `PRESENCE_BATCH_MS`: the window over which a topic's `presence_diff`s are coalesced
    /// (zero: a diff per change). Presences built by an application take it from here.
    pub presence_batch: Duration,
    /// `PRESENCE_DOWN_MS`: how long a silent peer node's presences are still listed.
    pub presence_down: Duration,
    /// `NODE_NAME` when set, whatever the adapter (the Redis adapter's own copy is in
    /// [`RedisConfig::node_name`]): names this node on the dashboard.
    pub node_name: Option<String>,
}

/// Which PubSub adapter carries broadcasts between nodes (Phoenix's `adapter:` option of
/// `{Phoenix.PubSub, name: ..., adapter: ...}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PubSubConfig {
    /// One node: broadcasts reach this node's subscribers only (`Phoenix.PubSub.PG2` on a
    /// single node).
    #[default]
    Local,
    /// phoenix_pubsub_redis: every node subscribes to one Redis channel; Elixir nodes on the
    /// same Redis and PubSub name are part of the same PubSub.
    Redis(RedisConfig),
}

/// The Redis adapter's settings, named as phoenix_pubsub_redis names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`).
    pub url: String,
    /// `NODE_NAME`: this node's name on the wire; required, and unique in the cluster (two
    /// nodes with one name drop each other's broadcasts, as in phoenix_pubsub_redis).
    pub node_name: String,
    /// `PUBSUB_NAME`: the Elixir app's PubSub module (`Rumbl.PubSub`), which names the Redis
    /// channel `phx:Elixir.Rumbl.PubSub.Adapter` (default `PhxServer.PubSub`).
    pub pubsub_name: String,
    /// `REDIS_COMPRESSION_LEVEL` (0–9, default 0): zlib level of published terms.
    pub compression_level: u32,
}

/// The development secret used when `SECRET_KEY_BASE` is unset. Never use it in production.
pub const DEV_SECRET_KEY_BASE: &str =
    "phx-server-development-secret-key-base-change-me-0123456789abcdefghijklmnop";

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 4000,
            secret_key_base: DEV_SECRET_KEY_BASE.into(),
            secret_from_env: false,
            url_host: "localhost".into(),
            check_origin: CheckOrigin::Host,
            origin_from_env: false,
            max_frame_size: 1 << 20,
            idle_timeout: Duration::from_secs(60),
            max_channels: 100,
            outbox_capacity: 1024,
            channel_inbox_capacity: 1024,
            ws_read_buffer: 256,
            ws_write_buffer: 16 * 1024,
            write_timeout: Duration::from_secs(30),
            drain_batch_size: 10_000,
            drain_interval: Duration::from_secs(2),
            drain_max: Duration::from_secs(30),
            lp_window: Duration::from_secs(10),
            lp_max_body: 8 << 20,
            lp_max_line: 10 << 20,
            lp_max_buffered: 1024,
            lp_max_sessions: 20_000,
            socket_transports: SocketOptions::default(),
            outbox_max_bytes: 4 << 20,
            channel_inbox_max_bytes: 2 << 20,
            lp_max_buffered_bytes: 4 << 20,
            max_joins_per_sec: 10,
            max_messages_per_sec: 1000,
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(10),
            http_max_uri_bytes: 8192,
            http_max_header_bytes: 16 * 1024,
            http_max_headers: 100,
            max_connections: default_max_connections(),
            shutdown_grace: Duration::from_secs(5),
            pubsub: PubSubConfig::Local,
            log_join: crate::logger::LogLevel::Debug,
            admin_port: None,
            admin_host: "127.0.0.1".into(),
            admin_token: None,
            dashboard_assets_dir: default_dashboard_assets_dir(),
            presence_batch: Duration::from_millis(50),
            presence_down: Duration::from_secs(5),
            node_name: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A rule spanning settings is broken (each value alone is checked by its parser in
    /// [`crate::settings`]): `name` is the variable at fault, `value` its value as given
    /// (empty when it is missing), `why` what is allowed.
    #[error("invalid {name}={value:?}: {why}")]
    Rule {
        /// The variable at fault, e.g. `ADMIN_PORT`.
        name: &'static str,
        /// Its value as given (empty when it is missing).
        value: String,
        /// What is allowed.
        why: String,
    },
    /// A value its parser refused, as the one line [`crate::settings::report::error_line`]
    /// words it (`invalid PORT="abc": must be a whole number in 0..=65535`).
    #[error("{0}")]
    Value(String),
}

impl ConfigError {
    /// `name=value` is invalid because `why` (an application's own rules use this too).
    pub fn new(
        name: &'static str,
        value: impl Into<String>,
        why: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Rule {
            name,
            value: value.into(),
            why: why.into(),
        }
    }
}

/// Descriptors kept free under the fd limit by the default `MAX_CONNECTIONS`: the listener,
/// the database pool, SQLite files, assets, logs, and refused connections while they get their
/// 503.
pub const FD_RESERVE: u64 = 512;

/// `MAX_CONNECTIONS`' default: the soft `RLIMIT_NOFILE` − [`FD_RESERVE`] (at least 1), so the
/// server refuses connections with a 503 before `accept` starts failing with `EMFILE`. Read at
/// startup, after any `ulimit` the service manager applied.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    let soft = rlimit::Resource::NOFILE.get().map(|(soft, _hard)| soft);
    #[cfg(not(unix))]
    let soft: std::io::Result<u64> = Err(std::io::ErrorKind::Unsupported.into());
    // No limit to read: a generous fixed bound.
    let soft = soft.unwrap_or(1 << 16);
    let n = soft.saturating_sub(FD_RESERVE).max(1);
    usize::try_from(n)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS_CEILING)
}

/// The largest `MAX_CONNECTIONS` taken (an unlimited fd limit would otherwise give 2⁶⁴).
pub(crate) const MAX_CONNECTIONS_CEILING: usize = 1 << 30;

/// `DASHBOARD_ASSETS_DIR` when unset: `vendor-js/dist/dashboard` under the working directory
/// (a release unpacked beside its assets), else the one beside this source tree (`cargo run`
/// from anywhere in a checkout).
pub fn default_dashboard_assets_dir() -> PathBuf {
    let local = PathBuf::from("vendor-js/dist/dashboard");
    if local.is_dir() {
        return local;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor-js/dist/dashboard");
    if built.is_dir() {
        return built;
    }
    local
}

/// Per-mount transport switches, as in
/// `socket "/socket", UserSocket, websocket: true, longpoll: false`. Both on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// Serve `<mount>/websocket`.
    pub websocket: bool,
    /// Serve `<mount>/longpoll`.
    pub longpoll: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            websocket: true,
            longpoll: true,
        }
    }
}

impl SocketOptions {
    /// Parses a comma list of transport names (`websocket`, `longpoll`; e.g. `longpoll` or
    /// `websocket,longpoll`). At least one is required; an unknown name is an error.
    pub fn parse(list: &str) -> Result<SocketOptions, &'static str> {
        let mut opts = SocketOptions {
            websocket: false,
            longpoll: false,
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "websocket" => opts.websocket = true,
                "longpoll" => opts.longpoll = true,
                _ => return Err("unknown transport (expected websocket and/or longpoll)"),
            }
        }
        if !opts.websocket && !opts.longpoll {
            return Err("at least one transport (websocket, longpoll) is required");
        }
        Ok(opts)
    }
}
