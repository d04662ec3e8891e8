//! The lab most scenarios share: a client, a load balancer running the
//! real agent, and backends serving one VIP by direct server return, each
//! backend a real server process (ha-lab-server) that a test can kill.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result};
use ha_agent::datapath::bench::PassProgram;

use crate::{
    Lab, Netns, ServerProcess, Tally,
    agent::{Agent, Launch},
    connect_many,
};

/// The port every backend serves and the VIP balances.
pub const PORT: u16 = 80;
/// How long one lab connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct DsrLab {
    pub lab: Lab,
    servers: BTreeMap<String, ServerProcess>,
    _pass: Vec<PassProgram>,
    pub target: SocketAddr,
    /// The load balancers' host names, and per host its agent's node name
    /// (unique: the namespace's name) and configuration.
    lbs: BTreeMap<String, (String, String)>,
    /// The cluster's heartbeat key file, removed with the lab.
    key_file: Option<std::path::PathBuf>,
}

/// The cluster's id in every lab.
pub const CLUSTER_ID: u64 = 4242;

impl DsrLab {
    /// Hosts `client`, `lb` and `backends`; the VIP on every backend's lo;
    /// the agent's config balances `vip`:PORT/tcp over all backends, with
    /// `vip_extra` (TOML inside the `[[vip]]` table, e.g. a `[vip.check]`)
    /// appended.
    pub fn new(vip: IpAddr, backends: &[&str], vip_extra: &str) -> Result<DsrLab> {
        DsrLab::build(vip, &["lb"], backends, vip_extra, None, true)
    }

    /// Like `new`, but the lb's switch port runs no XDP program: the lb's
    /// XDP_TX frames are dropped there, as on any veth whose peer has none.
    pub fn without_peer_xdp(vip: IpAddr, backends: &[&str], vip_extra: &str) -> Result<DsrLab> {
        DsrLab::build(vip, &["lb"], backends, vip_extra, None, false)
    }

    /// Like `new`, with several load balancers forming a cluster; each
    /// `(host, priority)`; `cluster_extra` is TOML inside `[cluster]`.
    pub fn cluster(
        vip: IpAddr,
        lbs: &[(&str, u8)],
        backends: &[&str],
        cluster_extra: &str,
    ) -> Result<DsrLab> {
        DsrLab::cluster_with_check(vip, lbs, backends, cluster_extra, "")
    }

    /// Like `cluster`, with `vip_extra` (e.g. a `[vip.check]`) in the VIP.
    pub fn cluster_with_check(
        vip: IpAddr,
        lbs: &[(&str, u8)],
        backends: &[&str],
        cluster_extra: &str,
        vip_extra: &str,
    ) -> Result<DsrLab> {
        let names: Vec<&str> = lbs.iter().map(|(name, _)| *name).collect();
        DsrLab::build(
            vip,
            &names,
            backends,
            vip_extra,
            Some((lbs, cluster_extra)),
            true,
        )
    }

    fn build(
        vip: IpAddr,
        lb_hosts: &[&str],
        backends: &[&str],
        vip_extra: &str,
        cluster: Option<(&[(&str, u8)], &str)>,
        peer_xdp: bool,
    ) -> Result<DsrLab> {
        let mut hosts = vec!["client"];
        hosts.extend(lb_hosts);
        hosts.extend(backends);
        let lab = Lab::new(&hosts)?;
        lab.disable_tx_checksum_offload("client")?;
        // Every lb's switch port must run XDP itself for XDP_TX frames to
        // pass (docs/development.md, "The lab").
        let mut pass = Vec::new();
        for lb in lb_hosts.iter().filter(|_| peer_xdp) {
            let port = lab.host(lb).switch_port().to_string();
            pass.push(lab.switch().run(move || -> Result<PassProgram> {
                let mut program = PassProgram::load()?;
                program.attach(&port)?;
                Ok(program)
            })?);
        }
        let mut servers = BTreeMap::new();
        for name in backends {
            lab.make_dsr_backend(name, &[vip])?;
            servers.insert(
                name.to_string(),
                ServerProcess::start(&lab.host(name).ns, name, PORT)?,
            );
        }
        let family = |host: &str| {
            let host = lab.host(host);
            if vip.is_ipv4() {
                IpAddr::V4(host.ipv4)
            } else {
                IpAddr::V6(host.ipv6)
            }
        };
        let backend_list: String = backends
            .iter()
            .map(|b| format!("  [[vip.backend]]\n  address = \"{}\"\n", family(b)))
            .collect();
        let vip_table = format!(
            "[[vip]]\nname = \"web\"\naddress = \"{vip}\"\nport = {PORT}\nprotocol = \"tcp\"\n\
             {backend_list}{vip_extra}"
        );
        let key_file = match cluster {
            Some(_) => {
                let path = std::env::temp_dir().join(format!("ha-lab-{}.key", lab.switch().name()));
                std::fs::write(
                    &path,
                    format!("lab key of {} for ha heartbeats\n", lab.switch().name()),
                )?;
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )?;
                Some(path)
            }
            None => None,
        };
        let mut lbs = BTreeMap::new();
        for lb in lb_hosts {
            let node = lab.host(lb).ns.name().to_string();
            let mut config = format!("[node]\nname = \"{node}\"\ninterface = \"eth0\"\n\n");
            if let (Some((members, extra)), Some(key)) = (cluster, &key_file) {
                let priority = members
                    .iter()
                    .find(|(m, _)| m == lb)
                    .map_or(100, |(_, p)| *p);
                config += &format!(
                    "[cluster]\nid = {CLUSTER_ID}\nkey_file = \"{}\"\npriority = {priority}\n{extra}\n",
                    key.display()
                );
                for (member, _) in members {
                    config += &format!(
                        "[[cluster.node]]\nname = \"{}\"\naddress = \"{}\"\n",
                        lab.host(member).ns.name(),
                        lab.host(member).ipv4
                    );
                }
                config += "\n";
            }
            config += &vip_table;
            lbs.insert(lb.to_string(), (node, config));
        }
        Ok(DsrLab {
            lab,
            servers,
            _pass: pass,
            target: SocketAddr::new(vip, PORT),
            lbs,
            key_file,
        })
    }

    /// The cluster's heartbeat key file, if there is a cluster.
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    /// The agent configuration of load balancer `lb`.
    pub fn config(&self, lb: &str) -> &str {
        &self.lbs[lb].1
    }

    /// The agent node name of load balancer `lb`.
    pub fn node_name(&self, lb: &str) -> &str {
        &self.lbs[lb].0
    }

    pub fn client(&self) -> &Netns {
        &self.lab.host("client").ns
    }

    /// The backend's own address in the VIP's family.
    pub fn backend_address(&self, name: &str) -> IpAddr {
        let host = self.lab.host(name);
        if self.target.is_ipv4() {
            IpAddr::V4(host.ipv4)
        } else {
            IpAddr::V6(host.ipv6)
        }
    }

    /// Starts the agent on the lb and waits until it serves every backend.
    pub fn start_agent(&self, keep_datapath: bool) -> Result<Agent> {
        self.start_agent_on("lb", keep_datapath)
    }

    /// Starts the agent on load balancer `lb`.
    pub fn start_agent_on(&self, lb: &str, keep_datapath: bool) -> Result<Agent> {
        self.start_agent_with(lb, keep_datapath, &Launch::default())
    }

    /// Starts the agent on load balancer `lb` with `args` added to its
    /// command line, and waits until it serves every backend.
    pub fn start_agent_with(
        &self,
        lb: &str,
        keep_datapath: bool,
        launch: &Launch,
    ) -> Result<Agent> {
        let (node, config) = self
            .lbs
            .get(lb)
            .with_context(|| format!("{lb} is no load balancer"))?;
        let mut agent =
            Agent::start_with(&self.lab.host(lb).ns, node, config, keep_datapath, launch)?;
        agent.wait_healthy(self.servers.len(), Duration::from_secs(15))?;
        Ok(agent)
    }

    /// `count` connections one after another from the client to the VIP.
    pub fn connect(&self, count: u32) -> Tally {
        connect_many(self.client(), self.target, count, CONNECT_TIMEOUT)
    }

    /// SIGKILLs a backend's server process.
    pub fn kill_server(&mut self, name: &str) {
        if let Some(server) = self.servers.get_mut(name) {
            server.kill();
        }
    }

    /// Starts a backend's server again.
    pub fn restart_server(&mut self, name: &str) -> Result<()> {
        let server = ServerProcess::start(&self.lab.host(name).ns, name, PORT)
            .with_context(|| format!("restart the server of {name}"))?;
        self.servers.insert(name.to_string(), server);
        Ok(())
    }

    /// Takes a backend's link down or up (a cut cable).
    pub fn set_link(&self, name: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.lab
            .host(name)
            .ns
            .exec(&["ip", "link", "set", "eth0", state])?;
        Ok(())
    }
}

impl Drop for DsrLab {
    fn drop(&mut self) {
        if let Some(key) = &self.key_file {
            let _ = std::fs::remove_file(key);
        }
        // What the agents leave in /run/ha: a killed one its socket, every
        // one its instance lock, one in a cluster its last incarnation.
        for (node, _) in self.lbs.values() {
            let _ = std::fs::remove_file(Agent::socket_of(node));
            let _ = std::fs::remove_file(Agent::socket_of(node).with_extension("lock"));
            let _ = std::fs::remove_file(Agent::incarnation_file(node));
        }
    }
}
