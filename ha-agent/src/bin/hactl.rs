//! hactl: the operator's CLI. `hactl maps` reads the pinned maps directly,
//! so it works while the agent is down, `hactl unpin` removes them, and
//! `hactl check-config` only reads the config file; the other commands ask
//! the running agent over its control socket.
//!
//! Exit codes: 0 done, 1 the agent (or the maps) said no or the config file
//! is invalid, 2 no agent or no datapath to talk to.

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use ha_agent::{
    config,
    control::{self, Request, Response},
    datapath,
    maps_view::{MapsView, table},
};

#[derive(Parser)]
#[command(name = "hactl", version, about = "Inspect and drive an ha node")]
struct Cli {
    /// Configuration file (for the node name, pin directory and socket).
    #[arg(short, long, default_value = "/etc/ha/ha.toml", global = true)]
    config: PathBuf,
    /// The node's pin directory (maps, unpin) instead of the config's.
    #[arg(long, global = true)]
    pin_dir: Option<PathBuf>,
    /// Talk to the agent on this control socket instead of the config's.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
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
    /// Show the agent's view: backends with health and drain state.
    Status,
    /// Remove the node's pinned datapath: detaches the XDP program (traffic
    /// through this node stops) and removes the pin directory, so the next
    /// agent starts afresh. Refused while an agent runs on the node's
    /// control socket.
    Unpin {
        /// Also while an agent runs (its program stays attached until it
        /// exits, and it cannot be restarted onto these pins).
        #[arg(long)]
        force: bool,
    },
    /// Send no new flows to a backend; its open flows stay.
    Drain {
        /// VIP name, or address when only one VIP has it.
        vip: String,
        backend: IpAddr,
    },
    /// Give a drained backend new flows again.
    Undrain { vip: String, backend: IpAddr },
    /// Maintenance: release every VIP and take none until unstandby.
    Standby,
    /// End standby: this node may own VIPs again.
    Unstandby,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff), e.g. `hactl man | man -l -`.
    Man,
    /// Re-read the agent's config file and apply it (VIPs, backends,
    /// checks); an invalid file changes nothing and the error is shown.
    Reload,
    /// Check the config file (--config) as the agent's start-up and reload
    /// do, without an agent: print `<file>: ok`, or the error and exit 1.
    CheckConfig,
    /// Move a VIP group away from its owner (on every node).
    Failover {
        /// VIP group (a VIP's name unless it names a group).
        group: String,
        /// Preferred new owner.
        #[arg(long)]
        to: Option<String>,
    },
}

/// A failure with the exit code it deserves.
enum Failure {
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
    /// check-config: printed as it is, `file:line:column: field: message`,
    /// like `ha-agent --check` does.
    Invalid(config::ConfigError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("hactl: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("hactl: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Invalid(e)) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Maps { flows } => maps(cli, *flows),
        Command::Status => ask(cli, Request::Status),
        Command::Unpin { force } => unpin(cli, *force),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "hactl", &mut std::io::stdout());
            Ok(())
        }
        // Section 8: an administrator's command, installed in /usr/sbin.
        Command::Man => clap_mangen::Man::new(Cli::command())
            .section("8")
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::Refused(e.into())),
        Command::Drain { vip, backend } => ask(
            cli,
            Request::Drain {
                vip: vip.clone(),
                backend: *backend,
            },
        ),
        Command::Undrain { vip, backend } => ask(
            cli,
            Request::Undrain {
                vip: vip.clone(),
                backend: *backend,
            },
        ),
        Command::Reload => ask(cli, Request::Reload),
        Command::CheckConfig => {
            let ok = config::check(&cli.config).map_err(Failure::Invalid)?;
            println!("{ok}");
            Ok(())
        }
        Command::Standby => ask(cli, Request::Standby { on: true }),
        Command::Unstandby => ask(cli, Request::Standby { on: false }),
        Command::Failover { group, to } => ask(
            cli,
            Request::Failover {
                group: group.clone(),
                to: to.clone(),
            },
        ),
    }
}

/// The node's pin directory: --pin-dir, else the config's.
fn pin_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    match &cli.pin_dir {
        Some(dir) => Ok(dir.clone()),
        None => {
            let config = config::load(&cli.config).map_err(|e| Failure::Unreachable(e.into()))?;
            Ok(config.datapath.pin_dir.join(&config.node.name))
        }
    }
}

fn maps(cli: &Cli, flows: usize) -> Result<(), Failure> {
    let dir = pin_dir(cli)?;
    if !dir.join(ha_common::map::VIPS).exists() {
        return Err(Failure::Unreachable(anyhow::anyhow!(
            "no datapath pinned at {} (is the agent running?)",
            dir.display()
        )));
    }
    let view = MapsView::read(&dir, flows).map_err(Failure::Refused)?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("serialisable")
        );
    } else {
        print!("{}", view.render());
    }
    Ok(())
}

fn unpin(cli: &Cli, force: bool) -> Result<(), Failure> {
    let dir = pin_dir(cli)?;
    // The agent of these pins: --socket, the config's, else the default
    // socket of the node the directory is named after.
    let socket = match (&cli.socket, config::load(&cli.config)) {
        (Some(socket), _) => Some(socket.clone()),
        (None, Ok(config)) => Some(config.node.control_socket),
        (None, Err(_)) => dir.file_name().map(|node| {
            Path::new(config::DEFAULT_CONTROL_DIR).join(format!("{}.sock", node.to_string_lossy()))
        }),
    };
    let running = socket.filter(|s| UnixStream::connect(s).is_ok());
    if let (Some(socket), false) = (&running, force) {
        return Err(Failure::Refused(anyhow::anyhow!(
            "an agent is running on {}: stop it first (it unpins on SIGTERM unless started with \
             --keep-datapath), or use --force",
            socket.display()
        )));
    }
    if !dir.exists() {
        println!("nothing pinned at {}", dir.display());
        return Ok(());
    }
    let link = datapath::pinned_link(&dir).ok();
    datapath::unpin_dir(&dir).map_err(Failure::Refused)?;
    let program = match (link, &running) {
        (Some((link, program)), None) => {
            format!("program {} on link {link} detached", program.id)
        }
        (Some((link, program)), Some(socket)) => format!(
            "program {} on link {link} stays attached until the agent on {} exits",
            program.id,
            socket.display()
        ),
        (None, _) => "no program was attached".to_string(),
    };
    println!("unpinned {}: {program}, maps removed", dir.display());
    Ok(())
}

/// The control socket in the default directory when there is exactly one.
fn only_agent_socket() -> Option<PathBuf> {
    let sockets: Vec<PathBuf> = std::fs::read_dir(config::DEFAULT_CONTROL_DIR)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    match sockets.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn ask(cli: &Cli, request: Request) -> Result<(), Failure> {
    let socket = match &cli.socket {
        Some(socket) => socket.clone(),
        None => match config::load(&cli.config) {
            Ok(config) => config.node.control_socket,
            // A file being edited (or an invalid one to reload) still lets
            // hactl reach the agent, which then reports the error too.
            Err(e) => only_agent_socket().ok_or_else(|| Failure::Unreachable(e.into()))?,
        },
    };
    let response = control::call(&socket, &request).map_err(Failure::Unreachable)?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response).expect("serialisable")
        );
    }
    match response {
        Response::Done { message } => {
            if !cli.json {
                println!("{message}");
            }
            Ok(())
        }
        Response::Error { message } => Err(Failure::Refused(anyhow::anyhow!(message))),
        Response::Status(status) => {
            if !cli.json {
                print_status(&status);
            }
            Ok(())
        }
    }
}

fn print_status(status: &control::Status) {
    println!("node {}", status.node);
    if let Some(cluster) = &status.cluster {
        let owned = if cluster.owned.is_empty() {
            "-".to_string()
        } else {
            cluster.owned.join(", ")
        };
        println!(
            "quorum {}, owns {owned}",
            if cluster.quorum { "yes" } else { "NO" }
        );
        let rows: Vec<Vec<String>> = cluster
            .peers
            .iter()
            .map(|p| {
                vec![
                    p.node.clone(),
                    if p.up { "up" } else { "down" }.into(),
                    p.last_heard_ms
                        .map_or("never".into(), |ms| format!("{ms}ms ago")),
                    p.rtt_us.map_or("-".into(), |us| format!("{us}us")),
                    p.priority.to_string(),
                    if p.eligible { "yes" } else { "no" }.into(),
                    if p.digest_matches { "same" } else { "DIFFERS" }.into(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "PEER",
                    "STATE",
                    "LAST HEARD",
                    "RTT",
                    "PRIORITY",
                    "ELIGIBLE",
                    "CONFIG"
                ],
                &rows
            )
        );
        let dropped: Vec<String> = cluster
            .dropped
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        if !dropped.is_empty() {
            println!("cluster frames dropped: {}", dropped.join(", "));
        }
    }
    for vip in &status.vips {
        println!(
            "\nVIP {} ({}/{}), owner {}, {} packets, {} bytes",
            vip.name,
            // IPv6 in brackets: [2001:2::100]:80/tcp.
            SocketAddr::new(vip.address, vip.port),
            vip.protocol,
            vip.owner.as_deref().unwrap_or("none"),
            vip.packets,
            vip.bytes
        );
        let rows: Vec<Vec<String>> = vip
            .backends
            .iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.address.to_string(),
                    if b.up { "up" } else { "down" }.into(),
                    if b.draining { "draining" } else { "-" }.into(),
                    if b.resolved { "yes" } else { "no" }.into(),
                    b.weight.to_string(),
                    b.packets.to_string(),
                    b.bytes.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ID", "BACKEND", "HEALTH", "DRAIN", "MAC", "WEIGHT", "PACKETS", "BYTES"
                ],
                &rows
            )
        );
    }
}
