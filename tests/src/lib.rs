//! The lab: hosts as network namespaces on a bridge, with helpers to run
//! servers and clients inside them. Nothing is configured in the root
//! namespace; everything is removed on drop.

pub mod agent;
mod cmd;
pub mod dsr;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod traffic;

pub use lab::{Host, Lab};
pub use netns::Netns;
pub use traffic::{
    LongLived, NameServer, RateRun, ServerProcess, Tally, connect_many, start_rate_client,
};
