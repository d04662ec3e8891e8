//! The ha node agent daemon.

use std::{io::IsTerminal, path::PathBuf};

use clap::Parser;
use ha_agent::agent;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ha-agent",
    version,
    about = "ha node agent: XDP load balancing for virtual IPs"
)]
struct Cli {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/ha/ha.toml")]
    config: PathBuf,
    /// On exit, leave the XDP program and its maps pinned and running.
    #[arg(long)]
    keep_datapath: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match agent::run(agent::Options {
        config: cli.config,
        keep_datapath: cli.keep_datapath,
    })
    .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
