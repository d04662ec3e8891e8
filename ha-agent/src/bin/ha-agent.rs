//! The ha node agent daemon.

use std::{io::IsTerminal, path::PathBuf};

use clap::{CommandFactory, Parser};
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
    /// Load this XDP object instead of the built-in one, e.g. a datapath
    /// fix built with `cargo xtask build-ebpf`; it must be built from the
    /// same ha-common, which is checked. A pinned link from an earlier
    /// agent is switched over to it atomically.
    #[arg(long, value_name = "PATH")]
    xdp_object: Option<PathBuf>,
    /// Print this manual page (roff, section 8) and exit; `cargo xtask
    /// package` installs it. Hidden: not an option for running the agent.
    #[arg(long, hide = true)]
    man: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if cli.man {
        return print_man_page();
    }
    match agent::run(agent::Options {
        config: cli.config,
        keep_datapath: cli.keep_datapath,
        xdp_object: cli.xdp_object,
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

fn print_man_page() -> std::process::ExitCode {
    match clap_mangen::Man::new(Cli::command())
        .section("8")
        .render(&mut std::io::stdout())
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-agent: write the manual page: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
