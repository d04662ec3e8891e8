//! ha node agent: configuration, Maglev, the desired map state, the
//! datapath shell around the XDP program, and the pieces `hactl` shares
//! with the daemon.
pub mod agent;
pub mod announce;
pub mod cluster;
pub mod config;
pub mod control;
pub mod datapath;
mod datapath_log;
pub mod desired;
pub mod health;
pub mod hooks;
pub mod ids;
pub mod maglev;
pub mod maps_view;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod ownership;
mod process;
pub mod reload;
pub mod systemd;
pub mod writer;
