//! hactl: the operator's CLI. `hactl maps` reads the pinned maps directly,
//! so it works while the agent is down.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ha_agent::{config, datapath::Maps, report::MapsReport};

#[derive(Parser)]
#[command(version, about = "Inspect and drive an ha node")]
struct Cli {
    /// Configuration file (for the node name and pin directory).
    #[arg(short, long, default_value = "/etc/ha/ha.toml", global = true)]
    config: PathBuf,
    /// Read the maps pinned in this directory instead of the config's.
    #[arg(long, global = true)]
    pin_dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show VIPs, backends, flows and counters from the pinned maps.
    Maps {
        /// How many flows to list.
        #[arg(long, default_value_t = 20)]
        flows: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hactl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Maps { flows } => {
            let dir = match &cli.pin_dir {
                Some(dir) => dir.clone(),
                None => {
                    let config = config::load(&cli.config)?;
                    config.datapath.pin_dir.join(&config.node.name)
                }
            };
            let maps = Maps::open_pinned(&dir).with_context(|| {
                format!(
                    "no datapath pinned at {} (is the agent running?)",
                    dir.display()
                )
            })?;
            let report = MapsReport::read(&maps, *flows)?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
    }
}
