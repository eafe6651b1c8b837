//! [`Settings`] → [`Config`]: the one place where the declared settings become what the
//! server runs with (durations from milliseconds, typed options), and where the rules that
//! span settings are checked. Here rather than in `config`, so that `config` (which
//! `settings` parses into) does not import `settings` back.

use std::time::Duration;

use crate::config::{Config, ConfigError, PubSubConfig, RedisConfig, MAX_CONNECTIONS_CEILING};
use crate::settings::Settings;

impl Config {
    /// The framework's settings from the environment alone ([`Settings::from_env`]), then
    /// [`Config::from_settings`]. The `phx-server` command layers flags and a TOML file on
    /// top ([`crate::settings::file`]); a library user may call this, or fill a [`Config`]
    /// by hand.
    pub fn from_env() -> Result<Config, ConfigError> {
        let settings = Settings::from_env().map_err(|e| {
            let line = crate::settings::report::error_line(&Settings::command(), &e, &[], None)
                .unwrap_or_else(|| first_line(&e));
            ConfigError::Value(line)
        })?;
        Config::from_settings(&settings)
    }

    /// The configuration `settings` describe: durations from milliseconds, options typed,
    /// and the rules that span settings checked.
    pub fn from_settings(s: &Settings) -> Result<Config, ConfigError> {
        let d = Config::default();
        if let Some(admin) = s.admin_port {
            if admin == s.port && admin != 0 {
                return Err(ConfigError::new(
                    "ADMIN_PORT",
                    admin.to_string(),
                    "must differ from PORT (the admin listener is never the public one)",
                ));
            }
        }
        let pubsub = match s.pubsub_adapter.as_str() {
            "redis" => {
                let node_name = s.node_name.clone().ok_or(ConfigError::new(
                    "NODE_NAME",
                    "",
                    "required with PUBSUB_ADAPTER=redis, and unique per node",
                ))?;
                PubSubConfig::Redis(RedisConfig {
                    url: s.redis_url.clone(),
                    node_name,
                    pubsub_name: s.pubsub_name.clone(),
                    compression_level: s.redis_compression_level,
                })
            }
            _ => PubSubConfig::Local,
        };
        let ms = Duration::from_millis;
        Ok(Config {
            log_join: s.log_join,
            host: s.host.clone(),
            port: s.port,
            secret_from_env: s.secret_key_base.is_some(),
            secret_key_base: s.secret_key_base.clone().unwrap_or(d.secret_key_base),
            url_host: s.phx_host.clone().unwrap_or(d.url_host),
            check_origin: s.check_origin.clone().unwrap_or(d.check_origin),
            origin_from_env: s.check_origin.is_some() || s.phx_host.is_some(),
            max_frame_size: s.max_frame_size,
            idle_timeout: ms(s.idle_timeout_ms),
            max_channels: s.max_channels,
            outbox_capacity: s.outbox_capacity,
            channel_inbox_capacity: d.channel_inbox_capacity,
            ws_read_buffer: d.ws_read_buffer,
            ws_write_buffer: d.ws_write_buffer,
            write_timeout: d.write_timeout,
            drain_batch_size: s.drain_batch_size,
            drain_interval: ms(s.drain_interval_ms),
            drain_max: ms(s.drain_max_ms),
            lp_window: ms(s.lp_window_ms),
            lp_max_body: s.lp_max_body,
            lp_max_line: s.lp_max_line,
            lp_max_buffered: s.lp_max_buffered,
            lp_max_sessions: s.lp_max_sessions,
            socket_transports: s.socket_transports,
            outbox_max_bytes: s.outbox_max_bytes,
            channel_inbox_max_bytes: s.channel_inbox_max_bytes,
            lp_max_buffered_bytes: s.lp_max_buffered_bytes,
            max_joins_per_sec: s.max_joins_per_sec,
            max_messages_per_sec: s.max_messages_per_sec,
            http_header_timeout: ms(s.http_header_timeout_ms),
            http_body_timeout: ms(s.http_body_timeout_ms),
            http_max_uri_bytes: s.http_max_uri_bytes,
            http_max_header_bytes: s.http_max_header_bytes,
            http_max_headers: s.http_max_headers,
            max_connections: s
                .max_connections
                .unwrap_or(d.max_connections)
                .min(MAX_CONNECTIONS_CEILING),
            shutdown_grace: ms(s.shutdown_grace_ms),
            pubsub,
            admin_port: s.admin_port,
            admin_host: s.admin_host.clone(),
            admin_token: s.admin_token.clone(),
            dashboard_assets_dir: s
                .dashboard_assets_dir
                .clone()
                .unwrap_or(d.dashboard_assets_dir),
            presence_batch: ms(s.presence_batch_ms),
            presence_down: ms(s.presence_down_ms),
            node_name: s.node_name.clone(),
        })
    }
}

/// A clap error's first line, without its `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid value")
        .trim_start_matches("error: ")
        .to_string()
}
