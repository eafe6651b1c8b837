//! The `phx-server` command: `serve`, `token`.

use clap::{Parser, Subcommand};
use phx_protocol::etf::Term;
use phx_server::{fixture, http, Config, Endpoint};
use tokio::net::TcpListener;

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
    Serve {
        /// Mount the conformance fixture (its own secret; host `localhost` for check_origin).
        #[arg(long)]
        fixture: bool,
    },
    /// Print a Phoenix.Token for a user id (salt "user socket"), signed with SECRET_KEY_BASE.
    Token {
        /// The user id.
        user_id: i64,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match Config::from_env() {
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
            Command::Serve { fixture } => serve(config, fixture).await,
            Command::Token { user_id } => {
                let endpoint = Endpoint::builder(config).build();
                println!(
                    "{}",
                    endpoint.sign_token(fixture::USER_SALT, &Term::Int(user_id))
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

async fn serve(config: Config, with_fixture: bool) -> Result<(), Box<dyn std::error::Error>> {
    let config = if with_fixture {
        fixture::configure(config)
    } else {
        config
    };
    if !config.secret_from_env {
        tracing::warn!(
            "SECRET_KEY_BASE is not set: using the built-in DEVELOPMENT secret. Tokens signed \
             with it are forgeable by anyone who reads this source. Set SECRET_KEY_BASE."
        );
    }
    let addr = format!("{}:{}", config.host, config.port);
    let mut builder = Endpoint::builder(config);
    if with_fixture {
        builder = builder.socket("/socket", fixture::FixtureSocket, fixture::router());
    }
    let endpoint = builder.build();
    let mut app = http::router(&endpoint);
    if with_fixture {
        app = app.merge(fixture::routes(&endpoint));
    }
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!("phx-server listening on http://{}", listener.local_addr()?);
    http::serve(endpoint, listener, app, http::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
