//! The `phx-server` command: `serve`, `serve --fixture`, `migrate`, `token`, `config`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// jemalloc, not glibc's malloc: after a wave of sockets leaves (each had buffers of a big
/// `presence_state`), glibc kept the freed memory in its arenas and RSS stayed near the peak;
/// jemalloc's decay returns it to the OS within seconds.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use phx_channels::settings::file::SettingsFile;
use phx_channels::settings::{report, Settings};
use phx_channels::{http, Config, Endpoint};
use phx_protocol::etf::Term;
use phx_server::fixture_app;
use rumbl::{app, store, user_socket, RumblConfig, RumblSettings};

#[derive(Parser)]
#[command(
    name = "phx-server",
    version,
    about = "A Phoenix Channels server in Rust",
    long_about = "A Phoenix Channels server in Rust.\n\nEvery setting is read from its flag, \
                  else its environment variable, else the TOML file of --config (key: the \
                  variable in lower case), else its default; `phx-server config` shows which."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every setting of the command: the framework's and Rumbl's, and the file they may come from.
#[derive(Args, Debug, Clone)]
struct AllSettings {
    /// A TOML file of settings (keys: the variables in lower case, e.g. `port = 4000`); the
    /// environment and flags override it.
    #[arg(
        long = "config",
        env = "PHX_SERVER_CONFIG",
        value_name = "FILE",
        help_heading = "Settings file"
    )]
    phx_server_config: Option<PathBuf>,
    #[command(flatten)]
    framework: Settings,
    #[command(flatten)]
    app: RumblSettings,
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
        #[command(flatten)]
        settings: AllSettings,
    },
    /// Apply the migrations to DATABASE_URL's database and print what was done.
    Migrate {
        #[command(flatten)]
        settings: AllSettings,
    },
    /// Print a Phoenix.Token for a user id (salt "user socket"), signed with SECRET_KEY_BASE.
    Token {
        /// The user id.
        user_id: i64,
        #[command(flatten)]
        settings: AllSettings,
    },
    /// Print the effective configuration: every setting, its value (secrets masked) and
    /// where it came from (default, file, env or flag). Exits 2, as `serve` would, when a
    /// value is bad.
    Config {
        /// Print the configuration reference instead (Markdown tables of every setting, its
        /// default and meaning): the README's and docs/operating.md's tables are this output.
        #[arg(long)]
        markdown: bool,
        #[command(flatten)]
        settings: AllSettings,
    },
}

impl Command {
    fn settings(&self) -> &AllSettings {
        match self {
            Command::Serve { settings, .. }
            | Command::Migrate { settings }
            | Command::Token { settings, .. }
            | Command::Config { settings, .. } => settings,
        }
    }
}

/// The subscriber: the `RUST_LOG` filter to stderr, ANSI colours only when stderr is a
/// terminal; `LOG_FORMAT=json` writes one JSON object a line.
fn init_logging(settings: &Settings) -> Result<(), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.rust_log)
        .map_err(|e| format!("invalid RUST_LOG={:?}: {e}", settings.rust_log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_format == "json" {
        builder.json().with_ansi(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    Ok(())
}

/// A bad setting: one line, exit status 2 (what clap uses for usage errors, and what a
/// supervisor can tell apart from a crash).
fn config_error(line: impl std::fmt::Display) -> ExitCode {
    eprintln!("configuration error: {line}");
    ExitCode::from(2)
}

/// `phx-server config`: the effective settings, or with `--markdown` the reference tables.
fn print_config(
    cmd: &clap::Command,
    matches: &clap::ArgMatches,
    file: Option<&SettingsFile>,
    markdown: bool,
) -> ExitCode {
    if markdown {
        // The declaration's own defaults, whatever this shell or file sets.
        return match Cli::command().find_subcommand("config") {
            Some(clean) => {
                print!("{}", report::markdown(clean));
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        };
    }
    let (Some(("config", sub)), Some(sub_cmd)) =
        (matches.subcommand(), cmd.find_subcommand("config"))
    else {
        return ExitCode::FAILURE;
    };
    match file {
        Some(f) => println!("# settings file: {}", f.path.display()),
        None => println!("# settings file: none (--config FILE or PHX_SERVER_CONFIG)"),
    }
    print!(
        "{}",
        report::render_text(&report::effective(sub_cmd, sub, file))
    );
    ExitCode::SUCCESS
}

/// Empty setting variables are unset, as they were before and as `FOO=` lines in an env
/// file or a compose file mean; clap would otherwise parse `""` (and refuse `PORT=`). Done
/// first thing in `main`, while the process has one thread.
fn forget_empty_variables(cmd: &clap::Command) {
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            if let Some(var) = arg.get_env() {
                if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
                    std::env::remove_var(var);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    forget_empty_variables(&Cli::command());
    let args: Vec<OsString> = std::env::args_os().collect();
    // The file first: its values are the defaults clap parses against.
    let file = match phx_channels::settings::file::path_from_args(&args) {
        Some(path) => match SettingsFile::read(&path) {
            Ok(f) => Some(f),
            Err(e) => return config_error(e),
        },
        None => None,
    };
    let mut cmd = Cli::command();
    if let Some(f) = &file {
        cmd = match f.apply(cmd) {
            Ok(cmd) => cmd,
            Err(e) => return config_error(e),
        };
    }
    let matches = match cmd.clone().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => match report::error_line(&cmd, &e, &args, file.as_ref()) {
            Some(line) => return config_error(line),
            None => e.exit(),
        },
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let settings = cli.command.settings().clone();
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&settings.framework.rust_log) {
        return config_error(format!(
            "invalid RUST_LOG={:?}: {e}",
            settings.framework.rust_log
        ));
    }
    let config = match Config::from_settings(&settings.framework) {
        Ok(c) => (c, RumblConfig::from_settings(&settings.app)),
        Err(e) => return config_error(e),
    };
    if let Command::Config { markdown, .. } = &cli.command {
        return print_config(&cmd, &matches, file.as_ref(), *markdown);
    }
    if let Err(e) = init_logging(&settings.framework) {
        return config_error(e);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve {
                fixture, migrate, ..
            } => serve(config, fixture, migrate).await,
            Command::Migrate { .. } => migrate(&config.1).await,
            Command::Token { user_id, .. } => {
                let endpoint = Endpoint::builder(config.0).build();
                println!(
                    "{}",
                    endpoint.sign_token(user_socket::USER_SALT, &Term::Int(user_id))
                );
                Ok(())
            }
            Command::Config { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
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
