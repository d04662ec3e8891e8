//! The whole file: every field, the defaults, inline tables, the error
//! display, the JSON form and loading from disk.

use super::*;
use crate::model::{Mac, Protocol};
use ha_common::{PROTO_TCP, PROTO_UDP};

#[test]
fn config_full_example() {
    let text = r#"# an example with every field
[node]
name = "lb1"
interface = "eth0"
mac = "02:00:00:00:00:0A"
control_socket = "/run/ha-lb1/control.sock"

[datapath]
ring_size = 251
max_flows = 1024
pin_dir = "/run/ha/bpf"

[health]
type = "http"
interval = "2s"
timeout = "1500ms"
rise = 1
fall = 5
path = "/healthz"
expect_body = "ok"

[[vip]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
on_no_backend = "pass"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"
  weight = 3
  mac = "02:00:00:00:00:12"
  [vip.check]
  port = 8080
  host = "www.example.org"
  expect_status = 204

[[vip]]
address = "2001:2::100"
port = 53
protocol = "udp"
  [vip.check]
  type = "udp"
  send = "ping"
  expect = "pong"
  [[vip.backend]]
  address = "2001:2::11"
  weight = 0
"#;
    let want = Config {
        node: NodeConfig {
            name: "lb1".into(),
            interface: "eth0".into(),
            mac: Some(Mac([2, 0, 0, 0, 0, 0x0a])),
            control_socket: PathBuf::from("/run/ha-lb1/control.sock"),
            announce_count: DEFAULT_ANNOUNCE_COUNT,
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
        },
        datapath: DatapathConfig {
            ring_size: 251,
            max_flows: 1024,
            pin_dir: PathBuf::from("/run/ha/bpf"),
        },
        vips: vec![
            VipConfig {
                name: "web".into(),
                address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                port: 80,
                protocol: Protocol::Tcp,
                backends: vec![
                    BackendConfig {
                        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                        weight: 1,
                        mac: None,
                    },
                    BackendConfig {
                        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 12)),
                        weight: 3,
                        mac: Some(Mac([2, 0, 0, 0, 0, 0x12])),
                    },
                ],
                on_no_backend: NoBackend::Pass,
                check: CheckConfig {
                    kind: CheckKind::Http {
                        path: "/healthz".into(),
                        host: Some("www.example.org".into()),
                        expect_status: 204,
                        expect_body: Some("ok".into()),
                    },
                    port: 8080,
                    interval: Duration::from_secs(2),
                    timeout: Duration::from_millis(1500),
                    rise: 1,
                    fall: 5,
                },
                group: 0,
            },
            VipConfig {
                name: "[2001:2::100]:53/udp".into(),
                address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100)),
                port: 53,
                protocol: Protocol::Udp,
                backends: vec![BackendConfig {
                    address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11)),
                    weight: 0,
                    mac: None,
                }],
                on_no_backend: NoBackend::Drop,
                // http options of [health] do not apply to a udp check.
                check: CheckConfig {
                    kind: CheckKind::Udp {
                        send: "ping".into(),
                        expect: Some("pong".into()),
                    },
                    port: 53,
                    interval: Duration::from_secs(2),
                    timeout: Duration::from_millis(1500),
                    rise: 1,
                    fall: 5,
                },
                group: 1,
            },
        ],
        cluster: None,
        groups: vec!["web".into(), "[2001:2::100]:53/udp".into()],
        metrics: None,
    };
    assert_eq!(ok(text), want);
}

#[test]
fn config_defaults() {
    let config = ok(BASE);
    assert_eq!(config.node.mac, None);
    assert_eq!(config.datapath, DatapathConfig::default());
    assert_eq!(config.datapath.ring_size, DEFAULT_RING_SIZE);
    assert_eq!(config.datapath.max_flows, DEFAULT_MAX_FLOWS);
    assert_eq!(config.datapath.pin_dir, Path::new("/sys/fs/bpf/ha"));
    assert_eq!(config.vips[0].name, "198.18.0.100:80/tcp");
    assert_eq!(config.vips[0].backends[0].weight, 1);
    assert_eq!(config.vips[0].backends[0].mac, None);
    // An empty [datapath] table keeps the defaults too.
    let config = ok(&format!("[datapath]\n{BASE}"));
    assert_eq!(config.datapath, DatapathConfig::default());
}

#[test]
fn config_inline_tables() {
    let text = r#"node = { name = "lb1", interface = "eth0" }
vip = [{ address = "198.18.0.100", port = 80, protocol = "tcp", backend = [{ address = "198.18.0.11" }] }]
"#;
    assert_eq!(ok(text), ok(BASE));
    check(
        "node = { name = \"lb1\" }\n",
        1,
        8,
        "node.interface",
        "missing field",
    );
}

#[test]
fn config_protocol() {
    assert_eq!(Protocol::Tcp.number(), PROTO_TCP);
    assert_eq!(Protocol::Udp.number(), PROTO_UDP);
    assert_eq!(Protocol::Tcp.to_string(), "tcp");
    assert_eq!(Protocol::Udp.to_string(), "udp");
    let config = ok(&base_with("\"tcp\"", "\"udp\""));
    assert_eq!(config.vips[0].protocol, Protocol::Udp);
    assert_eq!(config.vips[0].name, "198.18.0.100:80/udp");
}

#[test]
fn config_display() {
    let e = err(&base_with("port = 80", "port = 0"));
    assert_eq!(
        e.to_string(),
        "/etc/ha/ha.toml:7:8: vip[0].port: must be 1..=65535"
    );
}

#[test]
fn config_serializes_to_json() {
    let config = ok(&base_with("eth0\"", "eth0\"\nmac = \"02:AB:00:00:00:01\""));
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["node"]["mac"], "02:ab:00:00:00:01");
    assert_eq!(json["vips"][0]["protocol"], "tcp");
    assert_eq!(json["vips"][0]["address"], "198.18.0.100");
    assert_eq!(
        json["vips"][0]["backends"][0]["mac"],
        serde_json::Value::Null
    );
    assert_eq!(json["datapath"]["pin_dir"], "/sys/fs/bpf/ha");
}

#[test]
fn config_load() {
    let missing = Path::new("/nonexistent/ha.toml");
    let e = load(missing).unwrap_err();
    assert_eq!(
        (e.file.as_path(), e.line, e.column, e.field.as_str()),
        (missing, 1, 1, "(file)")
    );
    assert!(e.message.contains("cannot read"), "{e}");

    let path = std::env::temp_dir().join(format!("ha-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, BASE).unwrap();
    let loaded = load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap(), ok(BASE));
}
