//! The lab most scenarios share: a client, a load balancer running the
//! real agent, and backends serving one VIP by direct server return, each
//! backend a real server process (ha-lab-server) that a test can kill.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result};
use ha_agent::datapath::PassProgram;

use crate::{Lab, Netns, ServerProcess, Tally, agent::Agent, connect_many};

/// The port every backend serves and the VIP balances.
pub const PORT: u16 = 80;
/// How long one lab connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct DsrLab {
    pub lab: Lab,
    servers: BTreeMap<String, ServerProcess>,
    _pass: PassProgram,
    pub target: SocketAddr,
    /// The agent's node name (unique: the lb namespace's name).
    pub node: String,
    /// The agent's configuration.
    pub config: String,
}

impl DsrLab {
    /// Hosts `client`, `lb` and `backends`; the VIP on every backend's lo;
    /// the agent's config balances `vip`:PORT/tcp over all backends, with
    /// `vip_extra` (TOML inside the `[[vip]]` table, e.g. a `[vip.check]`)
    /// appended.
    pub fn new(vip: IpAddr, backends: &[&str], vip_extra: &str) -> Result<DsrLab> {
        let mut hosts = vec!["client", "lb"];
        hosts.extend(backends);
        let lab = Lab::new(&hosts)?;
        lab.disable_tx_checksum_offload("client")?;
        // The lb's switch port must run XDP itself for XDP_TX frames to pass.
        let lb_port = lab.host("lb").switch_port().to_string();
        let pass = lab.switch().run(move || -> Result<PassProgram> {
            let mut pass = PassProgram::load()?;
            pass.attach(&lb_port)?;
            Ok(pass)
        })?;
        let mut servers = BTreeMap::new();
        for name in backends {
            lab.make_dsr_backend(name, &[vip])?;
            servers.insert(
                name.to_string(),
                ServerProcess::start(&lab.host(name).ns, name, PORT)?,
            );
        }
        let node = lab.host("lb").ns.name().to_string();
        let backend_list: String = backends
            .iter()
            .map(|b| {
                let host = lab.host(b);
                let addr = if vip.is_ipv4() {
                    IpAddr::V4(host.ipv4)
                } else {
                    IpAddr::V6(host.ipv6)
                };
                format!("  [[vip.backend]]\n  address = \"{addr}\"\n")
            })
            .collect();
        let config = format!(
            "[node]\nname = \"{node}\"\ninterface = \"eth0\"\n\n\
             [[vip]]\nname = \"web\"\naddress = \"{vip}\"\nport = {PORT}\nprotocol = \"tcp\"\n\
             {backend_list}{vip_extra}"
        );
        Ok(DsrLab {
            lab,
            servers,
            _pass: pass,
            target: SocketAddr::new(vip, PORT),
            node,
            config,
        })
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
        let mut agent = Agent::start(
            &self.lab.host("lb").ns,
            &self.node,
            &self.config,
            keep_datapath,
        )?;
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
