//! ha node agent: configuration, Maglev, the desired map state, the
//! datapath shell around the XDP program, and the pieces `hactl` shares
//! with the daemon.
//!
//! The public modules are what the two binaries, the lab and the
//! benchmarks use: the daemon's entry point, the config and control
//! protocol, the pure cores the datapath tests drive (desired state, ids,
//! the writer, the cluster state machine for the simulator) and the
//! datapath itself. Everything else is private to the agent.
pub mod agent;
mod announce;
mod backoff;
pub mod cluster;
pub mod config;
pub mod control;
pub mod datapath;
mod datapath_log;
pub mod desired;
mod health;
mod hooks;
pub mod ids;
mod maglev;
pub mod maps_view;
mod metrics;
pub mod model;
mod netlink;
mod ownership;
mod process;
mod reload;
mod systemd;
pub mod writer;
