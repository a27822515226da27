//! `conclave`: the one binary. It only parses the command line and hands the configuration to
//! the component it names; `standalone` (the default) runs everything in one process.

use clap::{Parser, Subcommand};

/// Conclave: video conferencing that runs natively on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "conclave", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything in one process: API and portal, SQLite, local files, the embedded SFU (default).
    Standalone(api::Config),
    /// The stateless conference service (API and portal) for a cluster, usually on PostgreSQL.
    Api(api::Config),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Resolves on Ctrl-C or SIGTERM (the pod's stop signal).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let command = match cli.command {
        Some(command) => command,
        None => Command::Standalone(api::Config::parse_from_env_only()),
    };
    match command {
        Command::Standalone(config) | Command::Api(config) => {
            api::run(config, shutdown_signal()).await?
        }
    }
    Ok(())
}
