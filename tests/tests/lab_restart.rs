//! What a restarted agent may take over, and what it must refuse or say
//! (run as root). Pins made for another configuration are not adopted: the
//! agent names what differs and the command that clears them, `hactl
//! unpin`. An agent in a mount namespace of its own (`ip netns exec`) has
//! a private bpffs, so `--keep-datapath` could keep nothing: refused, with
//! the way out. And a veth whose peer runs no XDP program drops every
//! XDP_TX frame silently: the agent warns at attach.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use ha_agent::datapath;
use ha_tests::{
    agent::{Agent, PIN_ROOT, binary, hactl},
    dsr::DsrLab,
    wait_until,
};

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const BACKENDS: [&str; 2] = ["b1", "b2"];
const READY: Duration = Duration::from_secs(15);
/// What the agents of these tests log that the veth check found.
const VETH_WARNING: &str = "is a veth whose peer";

fn lab() -> DsrLab {
    DsrLab::new(IpAddr::V4(VIP4), &BACKENDS, "").expect("build the lab")
}

/// Removes a node's pins however the test ends.
struct UnpinOnDrop(PathBuf);

impl Drop for UnpinOnDrop {
    fn drop(&mut self) {
        let _ = datapath::unpin_dir(&self.0);
    }
}

#[test]
fn pins_made_for_another_max_flows_are_refused_until_hactl_unpin_clears_them() {
    let dsr = lab();
    let ns = &dsr.lab.host("lb").ns;
    let node = dsr.node_name("lb").to_string();
    let mut first = dsr.start_agent(true).expect("start the agent");
    let pins = first.pin_dir();
    let _cleanup = UnpinOnDrop(pins.clone());
    let pins_arg = pins.to_string_lossy().into_owned();
    // The switch port runs XDP: nothing to warn about.
    assert!(!first.log().contains(VETH_WARNING), "{}", first.log());

    // Not while an agent runs on the node (found through its config).
    let config_arg = first.config.to_string_lossy().into_owned();
    let refused = hactl(&["--config", &config_arg, "unpin"], false)
        .expect_err("hactl unpin while the agent runs");
    assert!(
        format!("{refused:#}").contains("an agent is running on"),
        "{refused:#}"
    );
    assert!(pins.join("link").exists(), "the refused unpin removed pins");
    let status = first.stop().expect("stop the agent");
    assert!(status.success(), "{status}\n{}", first.log());
    let (link, program) = datapath::pinned_link(&pins).expect("pinned link");

    // Another max_flows: refused before anything changes, naming what
    // differs and the command that clears it.
    let bigger = format!("{}\n[datapath]\nmax_flows = 8192\n", dsr.config("lb"));
    let mut refused = Agent::start(ns, &node, &bigger, true).expect("start the agent");
    let error = refused
        .wait_healthy(BACKENDS.len(), READY)
        .expect_err("an agent whose max_flows differs from the pinned datapath's");
    let error = format!("{error:#}");
    println!("refused: {error}");
    assert!(error.contains("exited early"), "{error}");
    assert!(
        error.contains("max_flows: pinned 262144, this agent 8192"),
        "{error}"
    );
    assert!(
        error.contains(&format!("hactl unpin --pin-dir {}", pins.display())),
        "{error}"
    );
    // So is another node MAC, which the pinned program answers ARP with.
    let other_mac = dsr.config("lb").replacen(
        "interface = \"eth0\"\n",
        "interface = \"eth0\"\nmac = \"02:aa:00:00:00:99\"\n",
        1,
    );
    let mut refused = Agent::start(ns, &node, &other_mac, true).expect("start the agent");
    let error = refused
        .wait_healthy(BACKENDS.len(), READY)
        .expect_err("an agent whose MAC differs from the pinned datapath's");
    let error = format!("{error:#}");
    assert!(
        error.contains("node MAC: pinned 02:00:00:00:00:11, this agent 02:aa:00:00:00:99"),
        "{error}"
    );
    assert_eq!(
        datapath::pinned_link(&pins).expect("pinned link"),
        (link, program),
        "the refused agents changed the pinned datapath"
    );

    // hactl unpin clears it (and says so), and is idempotent.
    let out = hactl(&["unpin", "--pin-dir", &pins_arg], false).expect("hactl unpin");
    println!("hactl unpin: {out}");
    assert!(
        out.contains(&format!(
            "unpinned {}: program {} on link {link} detached",
            pins.display(),
            program.id
        )),
        "{out}"
    );
    assert!(!pins.exists(), "{} left behind", pins.display());
    let again = hactl(&["unpin", "--pin-dir", &pins_arg], false).expect("hactl unpin again");
    assert!(again.contains("nothing pinned"), "{again}");

    // The next start succeeds, on a datapath of its own.
    let mut next = Agent::start(ns, &node, &bigger, false).expect("start the agent");
    next.wait_healthy(BACKENDS.len(), READY)
        .expect("the agent starts once unpinned");
    assert!(!next.log().contains("Replaced"), "{}", next.log());
    let tally = dsr.connect(100);
    assert_eq!(
        tally.failures,
        0,
        "{:?}\n{}",
        tally.first_errors,
        next.log()
    );
}

/// Starts the agent on `config` under `ip netns exec` (a mount namespace of
/// its own) with `args`; its log file.
fn start_under_ip_netns_exec(
    dsr: &DsrLab,
    config: &str,
    args: &[&str],
) -> (std::process::Child, PathBuf) {
    let ns = &dsr.lab.host("lb").ns;
    let dir = std::env::temp_dir().join(format!("ha-lab-{}", ns.name()));
    fs::create_dir_all(&dir).expect("lab directory");
    let config_path = dir.join("ha.toml");
    fs::write(&config_path, config).expect("write the config");
    let log = dir.join("netns-exec.log");
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(binary("ha-agent").expect("ha-agent"))
        .arg("--config")
        .arg(&config_path)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start ip netns exec ha-agent");
    (child, log)
}

#[test]
fn keep_datapath_under_ip_netns_exec_is_refused_with_the_way_out() {
    let dsr = lab();
    let node = dsr.node_name("lb").to_string();
    let _cleanup = UnpinOnDrop(Path::new(PIN_ROOT).join(&node));

    let (mut child, log) = start_under_ip_netns_exec(&dsr, dsr.config("lb"), &["--keep-datapath"]);
    let exited = wait_until(READY, || child.try_wait().ok().flatten().is_some());
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for the agent");
    let text = fs::read_to_string(&log).unwrap_or_default();
    println!("{text}");
    assert!(
        exited,
        "the agent ran on under ip netns exec with --keep-datapath:\n{text}"
    );
    assert!(!status.success(), "{status}\n{text}");
    assert!(
        text.contains("--keep-datapath cannot keep the datapath here"),
        "{text}"
    );
    assert!(text.contains("nsenter --net=/var/run/netns/NAME"), "{text}");
    assert!(
        !Path::new(PIN_ROOT).join(&node).exists(),
        "pins appeared in the host's bpffs"
    );

    // Without --keep-datapath it runs, and says at start that its datapath
    // goes with it.
    let (mut child, log) = start_under_ip_netns_exec(&dsr, dsr.config("lb"), &[]);
    let attached = wait_until(READY, || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("datapath attached"))
    });
    // SAFETY: kill(2) on our own, not yet reaped, child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(attached, "{text}");
    assert!(
        text.contains("goes away when this agent exits"),
        "no warning at start:\n{text}"
    );
}

#[test]
fn a_veth_peer_without_an_xdp_program_is_warned_about_at_attach() {
    let dsr = DsrLab::without_peer_xdp(IpAddr::V4(VIP4), &BACKENDS, "").expect("build the lab");
    let agent = dsr.start_agent(false).expect("start the agent");
    let log = agent.log();
    let warning = log
        .lines()
        .find(|l| l.contains(VETH_WARNING))
        .unwrap_or_else(|| panic!("no warning about the veth peer:\n{log}"));
    println!("{warning}");
    // The peer is named, though it lives in another namespace (the
    // switch's), and so is the fix.
    let port = dsr.lab.host("lb").switch_port();
    assert!(warning.contains(&format!("peer {port} ")), "{warning}");
    assert!(warning.contains("has no XDP program"), "{warning}");
    assert!(
        warning.contains("attach an XDP program to the peer"),
        "{warning}"
    );
    // And it is right: the ARP answers (XDP_TX) never arrive.
    let tally = dsr.connect(2);
    assert_eq!(
        tally.failures, 2,
        "connections got through: {:?}",
        tally.by_name
    );
}
