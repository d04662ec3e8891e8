//! The configuration's unit tests, by topic; the helpers here build files
//! from a minimal valid one and assert where an error points (the cluster
//! digest's tests use them too).

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Minimal valid file; line numbers matter to the tests below:
/// 1 [node], 2 name, 3 interface, 5 [[vip]], 6 address, 7 port,
/// 8 protocol, 9 [[vip.backend]], 10 address.
pub(crate) const BASE: &str = r#"[node]
name = "lb1"
interface = "eth0"

[[vip]]
address = "198.18.0.100"
port = 80
protocol = "tcp"
[[vip.backend]]
address = "198.18.0.11"
"#;

fn file() -> &'static Path {
    Path::new("/etc/ha/ha.toml")
}

pub(crate) fn ok(text: &str) -> Config {
    parse(file(), text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn err(text: &str) -> ConfigError {
    match parse(file(), text) {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the error's position and field, and that its message
/// contains `needle`.
#[track_caller]
fn check(text: &str, line: usize, column: usize, field: &str, needle: &str) {
    let e = err(text);
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (line, column, field),
        "{e}"
    );
    assert!(e.message.contains(needle), "{e}");
    assert_eq!(e.file, file());
}

/// BASE with the first occurrence of `from` replaced by `to`.
pub(crate) fn base_with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

/// BASE plus a `[vip.check]` of the VIP; its first line is line 12.
fn with_check(lines: &str) -> String {
    format!("{BASE}[vip.check]\n{lines}")
}

/// BASE plus a `[health]` table; its first line is line 12.
fn with_health(lines: &str) -> String {
    format!("{BASE}[health]\n{lines}")
}

/// A second VIP appended to BASE; it starts on line 11.
fn second_vip(address: &str, port: u16, protocol: &str, extra: &str) -> String {
    format!(
        "{BASE}[[vip]]\n{extra}address = \"{address}\"\nport = {port}\nprotocol = \"{protocol}\"\n[[vip.backend]]\naddress = \"198.18.0.11\"\n"
    )
}

/// BASE plus VIPs 1 to 3 (lines 11, 17 and 23) with `extra` lines
/// each (after `[[vip]]`).
pub(crate) fn with_vips(extra: [&str; 3]) -> String {
    let mut text = BASE.to_owned();
    for (i, extra) in extra.iter().enumerate() {
        text += &second_vip(&format!("198.18.0.{}", 101 + i), 80, "tcp", extra)[BASE.len()..];
    }
    text
}

mod checks;
mod cluster;
mod document;
mod forwarding;
mod https;
mod packaged_example;
mod sections;
mod toml_errors;
