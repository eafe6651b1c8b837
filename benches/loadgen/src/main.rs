//! `loadgen`: a load generator for any Phoenix-protocol server that mounts the conformance
//! fixture (`room:*`: `ping` → reply, `shout` → broadcast + reply), over V2 JSON websockets.
//!
//! Modes: `idle` (connect + join N sockets and hold them), `fanout` (N subscribers, one
//! publisher), `echo` (C sockets each keep one `ping` in flight), `annotations` (the Rumbl
//! `videos:*` channel: watchers per video, some of them posting `new_annotation`). Every mode is bounded in time,
//! talks only to 127.0.0.0/8, and prints a human-readable report on stderr and one JSON line per
//! result on stdout.

mod annotations;
mod conn;
mod echo;
mod fanout;
mod idle;
mod procstat;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    version,
    about = "Phoenix Channels load generator (loopback only)"
)]
pub struct Cli {
    /// Server host; must resolve to 127.0.0.0/8.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, global = true, default_value_t = 4000)]
    pub port: u16,
    /// Websocket path and query.
    #[arg(long, global = true, default_value = "/socket/websocket?vsn=2.0.0")]
    pub path: String,
    /// Pid of the server process: sample its VmRSS and CPU (utime + stime) at phase boundaries.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Connects + joins in flight at once. Keep it under the server's listen backlog (128 for a
    /// tokio listener bound with `TcpListener::bind`): an overflowing accept queue drops SYNs and
    /// costs the client a 1 s retransmit, which measures the backlog, not the server.
    #[arg(long, global = true, default_value_t = 100)]
    pub concurrency: usize,
    /// Tokio worker threads (default: number of cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Free-form label copied into the JSON result.
    #[arg(long, global = true, default_value = "")]
    pub label: String,
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// N sockets each join one topic and stay connected (heartbeats like the JS client).
    Idle(idle::IdleArgs),
    /// N subscribers join one topic; a publisher `shout`s K rounds; latency to first/last.
    Fanout(fanout::FanoutArgs),
    /// C sockets each keep one `ping` in flight for S seconds.
    Echo(echo::EchoArgs),
    /// Rumbl `videos:*`: W watchers per video on V videos, P of them post `new_annotation`.
    Annotations(annotations::AnnotationsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match conn::raise_nofile() {
            Ok(n) => report::note(&format!("open-file limit: {n}")),
            Err(e) => report::note(&format!("could not raise the open-file limit: {e}")),
        }
        let target = conn::resolve(&cli.host, cli.port, &cli.path).await?;
        match cli.mode.clone() {
            Mode::Idle(a) => idle::run(&cli, &target, a).await,
            Mode::Fanout(a) => fanout::run(&cli, &target, a).await,
            Mode::Echo(a) => echo::run(&cli, &target, a).await,
            Mode::Annotations(a) => annotations::run(&cli, &target, a).await,
        }
    });
    // Do not wait for lingering socket tasks: everything measured has been reported.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
