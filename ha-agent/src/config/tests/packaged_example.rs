//! The example shipped in packaging/ stays valid, its cluster part too.

use super::*;

/// The example shipped in packaging/ must stay valid.
#[test]
fn packaged_example_config_is_valid() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/ha.toml"));
    let config = load(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.vips.len(), 2);
    assert_eq!(config.vips[0].backends[1].weight, 2);
    let (web, web6) = (&config.vips[0].check, &config.vips[1].check);
    assert_eq!(
        (web.kind.name(), web.port, web.rise, web.fall),
        ("http", 8080, 2, 3)
    );
    assert_eq!(web.interval, Duration::from_millis(200));
    assert_eq!((web6.kind.name(), web6.port), ("tcp", 80));
}

/// The commented-out [cluster] example, uncommented, is valid too.
#[test]
fn packaged_example_cluster_is_valid() {
    use crate::cluster::state;
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/ha.toml"));
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("\n# [cluster]\n").expect("a [cluster] example") + 1;
    let mut uncommented = text.clone();
    for line in text[start..].lines() {
        let line = match line {
            "#" => "",
            line => line.strip_prefix("# ").expect("a commented line"),
        };
        uncommented += line;
        uncommented += "\n";
    }
    let config = parse(path, &uncommented).unwrap_or_else(|e| panic!("{e}"));
    let cluster = config.cluster.expect("a cluster");
    assert_eq!(cluster.id, 42);
    assert_eq!(cluster.quorum, QuorumConfig::TwoNode);
    assert_eq!(cluster.nodes.len(), 2);
    assert_eq!(cluster.nodes[0].name, config.node.name);
    assert!(cluster.on_owner.is_some() && cluster.on_fault.is_some());
    // The values written in the example are the defaults, but for the
    // choices an example has to make.
    assert_eq!(cluster.port, DEFAULT_CLUSTER_PORT);
    assert_eq!(cluster.interval, state::DEFAULT_INTERVAL);
    assert_eq!(
        cluster.dead_after,
        state::DEFAULT_INTERVAL * state::DEFAULT_DEAD_INTERVALS
    );
    assert_eq!(
        (cluster.priority, cluster.preempt),
        (DEFAULT_PRIORITY, true)
    );
    assert_eq!(cluster.preempt_delay, Duration::ZERO);
    assert_eq!(cluster.fencing, FencingConfig::None);
    assert_eq!(cluster.announce_count, DEFAULT_ANNOUNCE_COUNT);
    assert_eq!(cluster.announce_interval, DEFAULT_ANNOUNCE_INTERVAL);
    assert_eq!(cluster.hook_timeout, DEFAULT_HOOK_TIMEOUT);
}
