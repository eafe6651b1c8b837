//! The `phx-server` command: `serve`, `serve --fixture`, `migrate`, `token`.

use clap::{Parser, Subcommand};

/// jemalloc, not glibc's malloc: after a wave of sockets leaves (each had buffers of a big
/// `presence_state`), glibc kept the freed memory in its arenas and RSS stayed near the peak;
/// jemalloc's decay returns it to the OS within seconds.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use phx_channels::{http, Config, Endpoint};
use phx_protocol::etf::Term;
use phx_server::fixture_app;
use rumbl::{app, store, user_socket, RumblConfig};

#[derive(Parser)]
#[command(
    name = "phx-server",
    version,
    about = "A Phoenix Channels server in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen on HOST:PORT (default 127.0.0.1:4000) until SIGTERM, then drain and exit 0.
    ///
    /// Normal mode serves the Rumbl app: /socket (UserSocket, videos:*), /login, /watch/:id,
    /// /assets/* (ASSETS_DIR, default ./vendor-js/dist), over DATABASE_URL (default: SQLite
    /// ./data/rumbl.sqlite3, created, migrated and seeded with demo data on first start).
    Serve {
        /// Mount the conformance fixture (its own secret; host `localhost` for check_origin;
        /// videos:* in fixture mode on DATABASE_URL or a temp SQLite file of its own).
        #[arg(long)]
        fixture: bool,
        /// Apply the migrations to a Postgres DATABASE_URL before serving (SQLite always
        /// migrates itself).
        #[arg(long)]
        migrate: bool,
    },
    /// Apply the migrations to DATABASE_URL's database and print what was done.
    Migrate,
    /// Print a Phoenix.Token for a user id (salt "user socket"), signed with SECRET_KEY_BASE.
    Token {
        /// The user id.
        user_id: i64,
    },
}

/// `LOG_FORMAT`: `text` (default) or `json` (one JSON object a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn log_format() -> Result<LogFormat, String> {
    match std::env::var("LOG_FORMAT") {
        Err(_) => Ok(LogFormat::Text),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("invalid LOG_FORMAT={v:?}: must be text or json")),
        },
    }
}

/// The subscriber: `RUST_LOG` filter (default `info`) to stderr, ANSI colours only when
/// stderr is a terminal.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> std::process::ExitCode {
    match log_format() {
        Ok(f) => init_logging(f),
        Err(e) => {
            eprintln!("configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let config = match Config::from_env().and_then(|c| Ok((c, RumblConfig::from_env()?))) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve { fixture, migrate } => serve(config, fixture, migrate).await,
            Command::Migrate => migrate(&config.1).await,
            Command::Token { user_id } => {
                let endpoint = Endpoint::builder(config.0).build();
                println!(
                    "{}",
                    endpoint.sign_token(user_socket::USER_SALT, &Term::Int(user_id))
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate(rumbl: &RumblConfig) -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = store::StoreOptions::new(rumbl.pool_size);
    opts.auto_migrate = store::AutoMigrate::Never;
    let store = store::open_with(rumbl.database_url.as_deref(), opts).await?;
    let report = store.migrate().await;
    store.close().await;
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}

async fn serve(
    (config, rumbl): (Config, RumblConfig),
    with_fixture: bool,
    migrate: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if !config.secret_from_env && !with_fixture {
        tracing::warn!(
            "SECRET_KEY_BASE is not set: using the built-in DEVELOPMENT secret. Tokens signed \
             with it are forgeable by anyone who reads this source. Set SECRET_KEY_BASE."
        );
    }
    let addr = format!("{}:{}", config.host, config.port);
    let admin_addr = config
        .admin_port
        .map(|p| format!("{}:{}", config.admin_host, p));
    // The store first: a database that cannot be opened is a clear startup error, before
    // the port is taken.
    let is_postgres = matches!(
        store::DatabaseUrl::parse(rumbl.database_url.as_deref()),
        Ok(store::DatabaseUrl::Postgres(_))
    );
    let store = if with_fixture {
        fixture_app::open_store(&config, &rumbl).await
    } else {
        app::open_demo_store(&rumbl, migrate).await
    };
    let store = store.map_err(|e| {
        let hint = if is_postgres && !migrate && !with_fixture {
            " (a new Postgres database needs `phx-server migrate` or `serve --migrate` first)"
        } else {
            ""
        };
        format!("cannot open the database: {e}{hint}")
    })?;
    let (endpoint, router) = if with_fixture {
        let endpoint = fixture_app::endpoint(config, store.clone());
        let router = fixture_app::router(&endpoint);
        (endpoint, router)
    } else {
        let endpoint = app::endpoint(config, &rumbl, store.clone());
        let router = app::router(&endpoint, &rumbl, store.clone());
        (endpoint, router)
    };
    let sockaddr = tokio::net::lookup_host(&addr)
        .await?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    let listener = phx_channels::listener::bind(sockaddr)?;
    tracing::info!("phx-server listening on http://{}", listener.local_addr()?);
    if let Some(admin_addr) = admin_addr {
        let admin = tokio::net::TcpListener::bind(&admin_addr)
            .await
            .map_err(|e| format!("cannot listen on ADMIN_HOST:ADMIN_PORT {admin_addr}: {e}"))?;
        tracing::info!(
            "admin listener (/metrics, /dashboard) on http://{}",
            admin.local_addr()?
        );
        let ep = endpoint.clone();
        tokio::spawn(async move { http::serve_admin(&ep, admin, http::admin_router(&ep)).await });
    }
    // The accept loop runs on a worker thread, not in `block_on` on the main thread: there,
    // every accepted connection's task would have to wake a worker through a futex.
    let served = tokio::spawn(http::serve(
        endpoint,
        listener,
        router,
        http::shutdown_signal(),
    ))
    .await
    .map_err(|e| format!("server task failed: {e}"))?;
    store.close().await;
    served?;
    tracing::info!("stopped");
    Ok(())
}
