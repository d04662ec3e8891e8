//! `[health]` and `[vip.check]`: defaults, merging, types and values.

use super::*;
use crate::config::validate::parse_duration;

#[test]
fn config_check_defaults() {
    let config = ok(BASE);
    let vip = &config.vips[0];
    assert_eq!(
        vip.check,
        CheckConfig {
            kind: CheckKind::Tcp,
            port: 80,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        }
    );
    assert_eq!(vip.on_no_backend, NoBackend::Drop);
    assert_eq!(config.node.control_socket, Path::new("/run/ha/lb1.sock"));
    // Empty tables change nothing.
    assert_eq!(ok(&with_check("")).vips[0].check, vip.check);
    assert_eq!(ok(&with_health("")).vips[0].check, vip.check);
    // The defaults of each kind's fields.
    let http = ok(&with_check("type = \"http\"\n")).vips[0]
        .check
        .kind
        .clone();
    assert_eq!(
        http,
        CheckKind::Http {
            path: "/".into(),
            host: None,
            expect_status: 200,
            expect_body: None,
        }
    );
    let udp = ok(&with_check("type = \"udp\"\n")).vips[0]
        .check
        .kind
        .clone();
    assert_eq!(
        udp,
        CheckKind::Udp {
            send: String::new(),
            expect: None,
        }
    );
    let none = ok(&with_check("type = \"none\"\n")).vips[0].check.clone();
    assert_eq!(
        none,
        CheckConfig {
            kind: CheckKind::None,
            ..vip.check.clone()
        }
    );
    // The port follows the VIP's.
    let config = ok(&base_with("port = 80", "port = 443"));
    assert_eq!(config.vips[0].check.port, 443);
}

#[test]
fn config_check_merges_health_with_vip_check() {
    let health = "[health]\ntype = \"http\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\npath = \"/healthz\"\nhost = \"www.example.org\"\n";
    // vip[0] overrides some fields; vip[1] takes [health] as it is;
    // vip[2] switches to tcp, which leaves [health]'s http fields out.
    let text = format!(
        "{health}{}[vip.check]\nport = 8080\nexpect_status = 204\nexpect_body = \"ok\"\nrise = 1\n{}{}[vip.check]\ntype = \"tcp\"\n",
        BASE,
        second_vip("198.18.0.101", 80, "tcp", "").trim_start_matches(BASE),
        second_vip("198.18.0.102", 80, "tcp", "").trim_start_matches(BASE),
    );
    let config = ok(&text);
    let http = |expect_status, expect_body: Option<&str>| CheckKind::Http {
        path: "/healthz".into(),
        host: Some("www.example.org".into()),
        expect_status,
        expect_body: expect_body.map(str::to_owned),
    };
    let merged = |kind, port, rise| CheckConfig {
        kind,
        port,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(100),
        rise,
        fall: 2,
    };
    assert_eq!(config.vips[0].check, merged(http(204, Some("ok")), 8080, 1));
    assert_eq!(config.vips[1].check, merged(http(200, None), 80, 2));
    assert_eq!(config.vips[2].check, merged(CheckKind::Tcp, 80, 2));

    // [vip.check] may come before the backends, and the same type
    // keeps [health]'s type-specific fields.
    let text = format!(
        "{health}{}",
        base_with(
            "[[vip.backend]]",
            "[vip.check]\ntype = \"http\"\nexpect_status = 503\n[[vip.backend]]"
        )
    );
    assert_eq!(ok(&text).vips[0].check, merged(http(503, None), 80, 2));
}

#[test]
fn config_check_timeout_exceeds_interval() {
    check(
        &with_check("interval = \"200ms\"\ntimeout = \"300ms\"\n"),
        13,
        11,
        "vip[0].check.timeout",
        "timeout 300ms must not exceed the interval 200ms",
    );
    // The interval's default.
    check(
        &with_check("timeout = \"2s\"\n"),
        12,
        11,
        "vip[0].check.timeout",
        "timeout 2s must not exceed the interval 1s (default)",
    );
    // The timeout's default.
    check(
        &with_check("interval = \"200ms\"\n"),
        12,
        12,
        "vip[0].check.interval",
        "interval 200ms is shorter than the timeout 500ms (default)",
    );
    // A VIP's interval against [health]'s timeout: the VIP's value is
    // the one to blame.
    let text = format!(
        "{}[health]\ntimeout = \"800ms\"\n",
        with_check("interval = \"500ms\"\n")
    );
    check(
        &text,
        12,
        12,
        "vip[0].check.interval",
        "shorter than the timeout 800ms (health.timeout)",
    );
    let text = format!(
        "{}[health]\ninterval = \"500ms\"\n",
        with_check("timeout = \"800ms\"\n")
    );
    check(
        &text,
        12,
        11,
        "vip[0].check.timeout",
        "timeout 800ms must not exceed the interval 500ms (health.interval)",
    );
    // [health] alone: the VIP that inherits it is named.
    check(
        &with_health("timeout = \"3s\"\ninterval = \"2s\"\n"),
        12,
        11,
        "health.timeout",
        "timeout 3s must not exceed the interval 2s (for vip[0])",
    );
    // Equal is fine, and a VIP may repair [health]'s defaults.
    let config = ok(&with_check("interval = \"200ms\"\ntimeout = \"200ms\"\n"));
    assert_eq!(config.vips[0].check.timeout, Duration::from_millis(200));
    let text = format!(
        "{}[health]\ntimeout = \"3s\"\n",
        with_check("interval = \"5s\"\n")
    );
    assert_eq!(ok(&text).vips[0].check.timeout, Duration::from_secs(3));
}

#[test]
fn config_check_rise_fall() {
    for (line, field) in [
        ("rise = 0", "rise"),
        ("fall = 0", "fall"),
        ("rise = 101", "rise"),
        ("fall = 101", "fall"),
    ] {
        check(
            &with_check(&format!("{line}\n")),
            12,
            8,
            &format!("vip[0].check.{field}"),
            "must be 1..=100",
        );
        check(
            &with_health(&format!("{line}\n")),
            12,
            8,
            &format!("health.{field}"),
            "must be 1..=100",
        );
    }
    check(&with_check("rise = -1\n"), 12, 8, "vip[0].check.rise", "-1");
    let check = ok(&with_check("rise = 100\nfall = 1\n")).vips[0]
        .check
        .clone();
    assert_eq!((check.rise, check.fall), (100, 1));
}

#[test]
fn config_check_unknown_type() {
    check(
        &with_check("type = \"grpc\"\n"),
        12,
        8,
        "vip[0].check.type",
        "unknown variant `grpc`",
    );
    check(
        &with_health("type = \"ping\"\n"),
        12,
        8,
        "health.type",
        "unknown variant `ping`",
    );
    check(
        &with_check("kind = \"tcp\"\n"),
        12,
        1,
        "vip[0].check.kind",
        "unknown field `kind`",
    );
}

#[test]
fn config_check_field_of_another_type() {
    check(
        &with_check("path = \"/healthz\"\n"),
        12,
        8,
        "vip[0].check.path",
        "`path` only applies to http and https checks; this check's type is tcp (the default)",
    );
    check(
        &with_check("type = \"tcp\"\nhost = \"a\"\n"),
        13,
        8,
        "vip[0].check.host",
        "`host` only applies to http and https checks; this check's type is tcp (vip[0].check.type)",
    );
    check(
        &with_check("type = \"http\"\nsend = \"x\"\n"),
        13,
        8,
        "vip[0].check.send",
        "`send` only applies to udp checks",
    );
    check(
        &with_check("type = \"udp\"\ncommand = [\"/bin/true\"]\n"),
        13,
        11,
        "vip[0].check.command",
        "`command` only applies to exec checks",
    );
    check(
        &with_check("type = \"none\"\nexpect = \"x\"\n"),
        13,
        10,
        "vip[0].check.expect",
        "`expect` only applies to udp checks",
    );
    // In [health], against its own type.
    check(
        &with_health("expect_status = 200\n"),
        12,
        17,
        "health.expect_status",
        "`expect_status` only applies to http and https checks",
    );
    // A VIP that inherits [health]'s type may set that type's fields.
    let text = format!("{}[health]\ntype = \"udp\"\n", with_check("path = \"/\"\n"));
    check(
        &text,
        12,
        8,
        "vip[0].check.path",
        "this check's type is udp (health.type)",
    );
    let text = format!("{}[health]\ntype = \"udp\"\n", with_check("send = \"x\"\n"));
    assert_eq!(
        ok(&text).vips[0].check.kind,
        CheckKind::Udp {
            send: "x".into(),
            expect: None
        }
    );
}

#[test]
fn config_check_exec() {
    let config = ok(&with_check(
        "type = \"exec\"\ncommand = [\"/usr/local/bin/check-db\", \"--quick\"]\n",
    ));
    assert_eq!(
        config.vips[0].check.kind,
        CheckKind::Exec {
            command: vec!["/usr/local/bin/check-db".into(), "--quick".into()]
        }
    );
    check(
        &with_check("type = \"exec\"\n"),
        12,
        8,
        "vip[0].check.type",
        "an exec check needs `command`",
    );
    // From [health]: its type is the place, the VIP is named.
    check(
        &with_health("type = \"exec\"\n"),
        12,
        8,
        "health.type",
        "an exec check needs `command`, e.g. command = [\"/usr/local/bin/check\", \"--quick\"] (for vip[0])",
    );
    // ... unless the VIP gives one.
    let text = format!(
        "{}[health]\ntype = \"exec\"\n",
        with_check("command = [\"/bin/true\"]\n")
    );
    assert_eq!(
        ok(&text).vips[0].check.kind,
        CheckKind::Exec {
            command: vec!["/bin/true".into()]
        }
    );
    check(
        &with_check("type = \"exec\"\ncommand = [\"check-db\", \"--quick\"]\n"),
        13,
        12,
        "vip[0].check.command[0]",
        "`check-db` must be an absolute path",
    );
    check(
        &with_check("type = \"exec\"\ncommand = [\"\"]\n"),
        13,
        12,
        "vip[0].check.command[0]",
        "must be an absolute path",
    );
    check(
        &with_check("type = \"exec\"\ncommand = []\n"),
        13,
        11,
        "vip[0].check.command",
        "must name a program",
    );
    check(
        &with_check("type = \"exec\"\ncommand = [\"/bin/x\", \"a\\u0000b\"]\n"),
        13,
        22,
        "vip[0].check.command[1]",
        "NUL",
    );
    check(
        &with_check("type = \"exec\"\ncommand = \"/bin/true\"\n"),
        13,
        11,
        "vip[0].check.command",
        "invalid type",
    );
}

#[test]
fn config_check_durations() {
    for bad in [
        "1",
        "1 s",
        "1m",
        "1h",
        "s",
        "ms",
        "-1s",
        "+1s",
        "1.5s",
        "",
        "1S",
        "99999999999999999999ms",
        "18446744073709551615s",
    ] {
        check(
            &with_check(&format!("interval = \"{bad}\"\n")),
            12,
            12,
            "vip[0].check.interval",
            "is not a duration; write e.g. \"500ms\" or \"2s\"",
        );
        check(
            &with_health(&format!("timeout = \"{bad}\"\n")),
            12,
            11,
            "health.timeout",
            "is not a duration",
        );
    }
    for out_of_range in ["0ms", "0s", "3601s", "3600001ms"] {
        check(
            &with_check(&format!("interval = \"{out_of_range}\"\n")),
            12,
            12,
            "vip[0].check.interval",
            "must be 1ms..=3600s",
        );
    }
    check(
        &with_check("interval = 5\n"),
        12,
        12,
        "vip[0].check.interval",
        "invalid type",
    );
    let check = ok(&with_check("interval = \"3600s\"\ntimeout = \"1ms\"\n")).vips[0]
        .check
        .clone();
    assert_eq!(check.interval, Duration::from_secs(3600));
    assert_eq!(check.timeout, Duration::from_millis(1));
    let check = ok(&with_check("interval = \"0250ms\"\ntimeout = \"10ms\"\n"));
    assert_eq!(check.vips[0].check.interval, Duration::from_millis(250));

    assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    assert_eq!(format_duration(Duration::ZERO), "0ms");
}

#[test]
fn config_check_values() {
    check(
        &with_check("port = 0\n"),
        12,
        8,
        "vip[0].check.port",
        "must be 1..=65535",
    );
    check(
        &with_health("port = 0\n"),
        12,
        8,
        "health.port",
        "must be 1..=65535",
    );
    check(
        &with_check("port = 65536\n"),
        12,
        8,
        "vip[0].check.port",
        "65536",
    );
    let http = |line: &str| with_check(&format!("type = \"http\"\n{line}\n"));
    for bad in ["healthz", "", "/a b", "/a\\r\\nX: y"] {
        check(
            &http(&format!("path = \"{bad}\"")),
            13,
            8,
            "vip[0].check.path",
            "must start with `/`",
        );
    }
    for bad in ["", "a b", "a\\r\\nX-Injected: 1"] {
        check(
            &http(&format!("host = \"{bad}\"")),
            13,
            8,
            "vip[0].check.host",
            "host name",
        );
    }
    for bad in [99, 600, 0] {
        check(
            &http(&format!("expect_status = {bad}")),
            13,
            17,
            "vip[0].check.expect_status",
            "must be 100..=599",
        );
    }
    check(
        &http("expect_body = \"\""),
        13,
        15,
        "vip[0].check.expect_body",
        "must be 1..=1024 bytes",
    );
    let long = "x".repeat(1025);
    check(
        &http(&format!("expect_body = \"{long}\"")),
        13,
        15,
        "vip[0].check.expect_body",
        "1..=1024",
    );
    let udp = |line: &str| with_check(&format!("type = \"udp\"\n{line}\n"));
    check(
        &udp("expect = \"\""),
        13,
        10,
        "vip[0].check.expect",
        "must be 1..=1024 bytes",
    );
    let long = "x".repeat(65_508);
    check(
        &udp(&format!("send = \"{long}\"")),
        13,
        8,
        "vip[0].check.send",
        "at most 65507 bytes",
    );
    // Good values.
    let config = ok(&http(
        "path = \"/health?full=1\"\nhost = \"[2001:db8::1]:8080\"\nexpect_status = 599",
    ));
    assert_eq!(
        config.vips[0].check.kind,
        CheckKind::Http {
            path: "/health?full=1".into(),
            host: Some("[2001:db8::1]:8080".into()),
            expect_status: 599,
            expect_body: None,
        }
    );
    assert_eq!(
        ok(&udp("send = \"\"")).vips[0].check.kind,
        CheckKind::Udp {
            send: String::new(),
            expect: None
        }
    );
}

#[test]
fn config_check_serializes_to_json() {
    let config = ok(&with_check(
        "type = \"http\"\ninterval = \"1500ms\"\nexpect_body = \"ok\"\n",
    ));
    let json = serde_json::to_value(&config).unwrap();
    let vip = &json["vips"][0];
    assert_eq!(vip["on_no_backend"], "drop");
    assert_eq!(
        vip["check"],
        serde_json::json!({
            "type": "http",
            "path": "/",
            "host": null,
            "expect_status": 200,
            "expect_body": "ok",
            "port": 80,
            "interval": "1500ms",
            "timeout": "500ms",
            "rise": 2,
            "fall": 3,
        })
    );
    assert_eq!(json["node"]["control_socket"], "/run/ha/lb1.sock");
    let json = serde_json::to_value(ok(&with_check("type = \"none\"\n"))).unwrap();
    assert_eq!(json["vips"][0]["check"]["type"], "none");
    let json = serde_json::to_value(ok(&with_check(
        "type = \"exec\"\ncommand = [\"/bin/true\"]\n",
    )))
    .unwrap();
    assert_eq!(
        json["vips"][0]["check"]["command"],
        serde_json::json!(["/bin/true"])
    );
    assert_eq!(CheckKind::Tcp.name(), "tcp");
}
