//! The ha node agent daemon, and its config check (`--check`).

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser};
use ha_agent::{agent, config};
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
    /// Only check the configuration file, as start-up and reload do, and
    /// exit: print `<file>: ok` (exit 0) or the error (exit 1). Touches
    /// nothing.
    #[arg(long, conflicts_with_all = ["keep_datapath", "xdp_object"])]
    check: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.man {
        return print_man_page();
    }
    // The check reads the file and nothing else: no runtime, no logging.
    if cli.check {
        return match config::check(&cli.config) {
            Ok(ok) => {
                println!("{ok}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(agent::Options {
        config: cli.config,
        keep_datapath: cli.keep_datapath,
        xdp_object: cli.xdp_object,
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_man_page() -> ExitCode {
    match clap_mangen::Man::new(Cli::command())
        .section("8")
        .render(&mut std::io::stdout())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-agent: write the manual page: {e}");
            ExitCode::FAILURE
        }
    }
}
