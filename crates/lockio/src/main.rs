//! `lockio`: the lock.io server and its command line (cli.md).

mod cli;
mod ctl;
mod dev;
mod events;
mod formation;
mod http;
mod listener;
mod metrics;
mod node;
mod raft;
mod service;
mod transport;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line a person can act on, not clap's usage block.
            let first = e.to_string().lines().next().unwrap_or("invalid arguments").trim().to_string();
            let first = first.strip_prefix("error: ").unwrap_or(&first).to_string();
            eprintln!("lockio: {first} (see lockio --help)");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Serve(args) => run_async(node::run(args, shutdown_signal())),
        cli::Command::Dev(args) => dev::run(args),
        client_command => std::process::exit(ctl::run(client_command, cli.connection)),
    };
    if let Err(e) = result {
        eprintln!("lockio: {e:#}");
        std::process::exit(1);
    }
}

/// openraft's targets that log each failed RPC to a peer that is down (several lines every
/// 0.5 s per peer). They are off unless `RUST_LOG` names them: the transport logs when a peer
/// stops answering and when it is back (`transport::client`), and `node` logs a Raft core that
/// stops by itself.
const QUIETED: [&str; 3] =
    ["openraft::replication", "openraft::engine::handler::replication_handler", "openraft::core::raft_core"];

/// `RUST_LOG`, or `info,openraft=warn`, with the `QUIETED` targets off.
fn log_filter() -> EnvFilter {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    for target in QUIETED.iter().filter(|t| !asked.contains(**t)) {
        filter = filter.add_directive(format!("{target}=off").parse().expect("a valid directive"));
    }
    filter
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(fut)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
