//! `type = "https"`: the http fields with their defaults and inheritance,
//! and `sni`, `ca_file`, `verify`.

use super::*;

/// The https check of BASE's VIP with `lines` in its `[vip.check]` (from
/// line 12).
fn https(lines: &str) -> CheckKind {
    ok(&with_check(&format!("type = \"https\"\n{lines}"))).vips[0]
        .check
        .kind
        .clone()
}

/// An https check with `host`, `sni` and `verify`, and every other field
/// at its default.
fn https_with(host: Option<&str>, sni: Option<&str>, verify: bool) -> CheckKind {
    CheckKind::Https {
        path: "/".into(),
        host: host.map(str::to_owned),
        expect_status: 200,
        expect_body: None,
        sni: sni.map(str::to_owned),
        ca_file: None,
        verify,
    }
}

/// An https check with every field at its default.
fn default_https() -> CheckKind {
    https_with(None, None, true)
}

#[test]
fn config_https_defaults_and_every_field() {
    let config = ok(&with_check("type = \"https\"\n"));
    assert_eq!(config.vips[0].check.kind, default_https());
    assert_eq!(config.vips[0].check.kind.name(), "https");
    // Like the other kinds, the port is the VIP's unless written.
    assert_eq!(config.vips[0].check.port, 80);
    assert_eq!(
        https(
            "port = 8443\npath = \"/healthz\"\nhost = \"www.example.org\"\nexpect_status = 204\nexpect_body = \"ok\"\nsni = \"api.example.org\"\nca_file = \"/etc/ha/ca.pem\"\nverify = true\n"
        ),
        CheckKind::Https {
            path: "/healthz".into(),
            host: Some("www.example.org".into()),
            expect_status: 204,
            expect_body: Some("ok".into()),
            sni: Some("api.example.org".into()),
            ca_file: Some(PathBuf::from("/etc/ha/ca.pem")),
            verify: true,
        }
    );
    // Accepting any certificate.
    assert_eq!(https("verify = false\n"), https_with(None, None, false));
}

#[test]
fn config_https_sni_defaults_to_a_host_name() {
    let sni = |host: &str| match https(&format!("host = \"{host}\"\n")) {
        CheckKind::Https { sni, .. } => sni,
        other => panic!("{other:?}"),
    };
    assert_eq!(sni("www.example.org"), Some("www.example.org".into()));
    // A Host header with a port names the server without it.
    assert_eq!(sni("www.example.org:8443"), Some("www.example.org".into()));
    // An address is no server name: the certificate must name the address.
    assert_eq!(sni("198.18.0.11"), None);
    assert_eq!(sni("198.18.0.11:8443"), None);
    assert_eq!(sni("[2001:2::11]:443"), None);
    // A written sni wins; with verify = false the host still names the
    // server (sent, not verified).
    assert_eq!(
        https("host = \"www.example.org\"\nsni = \"api.example.org\"\n"),
        https_with(Some("www.example.org"), Some("api.example.org"), true)
    );
    assert_eq!(
        https("host = \"www.example.org\"\nverify = false\n"),
        https_with(Some("www.example.org"), Some("www.example.org"), false)
    );
}

#[test]
fn config_https_inherits_from_health_of_the_same_type() {
    let health = "[health]\ntype = \"https\"\npath = \"/healthz\"\nexpect_status = 204\nsni = \"lb.example.org\"\nca_file = \"/etc/ha/ca.pem\"\n";
    let https_health = CheckKind::Https {
        path: "/healthz".into(),
        host: None,
        expect_status: 204,
        expect_body: None,
        sni: Some("lb.example.org".into()),
        ca_file: Some(PathBuf::from("/etc/ha/ca.pem")),
        verify: true,
    };
    // No [vip.check], an empty one, or one of the same type: inherited.
    assert_eq!(
        ok(&format!("{health}{BASE}")).vips[0].check.kind,
        https_health
    );
    let same = format!("{health}{BASE}[vip.check]\ntype = \"https\"\nexpect_status = 200\n");
    assert_eq!(
        ok(&same).vips[0].check.kind,
        CheckKind::Https {
            path: "/healthz".into(),
            host: None,
            expect_status: 200,
            expect_body: None,
            sni: Some("lb.example.org".into()),
            ca_file: Some(PathBuf::from("/etc/ha/ca.pem")),
            verify: true,
        }
    );
    // Another type takes none of them, not even http from https.
    let http = format!("{health}{BASE}[vip.check]\ntype = \"http\"\n");
    assert_eq!(
        ok(&http).vips[0].check.kind,
        CheckKind::Http {
            path: "/".into(),
            host: None,
            expect_status: 200,
            expect_body: None,
        }
    );
    // Nor https from http.
    let text = format!(
        "[health]\ntype = \"http\"\npath = \"/x\"\nhost = \"h\"\n{BASE}[vip.check]\ntype = \"https\"\n"
    );
    assert_eq!(ok(&text).vips[0].check.kind, default_https());
}

#[test]
fn config_https_bad_values() {
    // The http fields are validated as for http.
    check(
        &with_check("type = \"https\"\npath = \"healthz\"\n"),
        13,
        8,
        "vip[0].check.path",
        "must start with `/`",
    );
    check(
        &with_check("type = \"https\"\nexpect_status = 99\n"),
        13,
        17,
        "vip[0].check.expect_status",
        "must be 100..=599",
    );
    check(
        &with_check("type = \"https\"\nexpect_body = \"\"\n"),
        13,
        15,
        "vip[0].check.expect_body",
        "must be 1..=1024 bytes",
    );
    check(
        &with_check("type = \"https\"\nhost = \"a b\"\n"),
        13,
        8,
        "vip[0].check.host",
        "without whitespace",
    );
    // sni: a DNS name, not an address.
    for address in ["198.18.0.11", "2001:2::11"] {
        check(
            &with_check(&format!("type = \"https\"\nsni = \"{address}\"\n")),
            13,
            7,
            "vip[0].check.sni",
            "must be a DNS name, not an IP address",
        );
    }
    for bad in [
        "",
        "www example.org",
        "[2001:2::11]",
        "a..b",
        "-a.example.org",
    ] {
        check(
            &with_check(&format!("type = \"https\"\nsni = \"{bad}\"\n")),
            13,
            7,
            "vip[0].check.sni",
            "must be a DNS name such as www.example.org",
        );
    }
    // ca_file: absolute.
    check(
        &with_check("type = \"https\"\nca_file = \"ca.pem\"\n"),
        13,
        11,
        "vip[0].check.ca_file",
        "must be an absolute path",
    );
    // verify: a boolean.
    check(
        &with_check("type = \"https\"\nverify = \"no\"\n"),
        13,
        10,
        "vip[0].check.verify",
        "invalid type: string \"no\", expected a boolean",
    );
}

#[test]
fn config_https_fields_of_another_type() {
    for (line, column, name) in [
        ("sni = \"www.example.org\"", 7, "sni"),
        ("ca_file = \"/etc/ha/ca.pem\"", 11, "ca_file"),
        ("verify = false", 10, "verify"),
    ] {
        check(
            &with_check(&format!("type = \"http\"\n{line}\n")),
            13,
            column,
            &format!("vip[0].check.{name}"),
            &format!(
                "`{name}` only applies to https checks; this check's type is http (vip[0].check.type)"
            ),
        );
        check(
            &with_health(&format!("{line}\n")),
            12,
            column,
            &format!("health.{name}"),
            &format!(
                "`{name}` only applies to https checks; this check's type is tcp (the default)"
            ),
        );
    }
    // The other kinds' fields on an https check.
    check(
        &with_check("type = \"https\"\nsend = \"x\"\n"),
        13,
        8,
        "vip[0].check.send",
        "`send` only applies to udp checks; this check's type is https (vip[0].check.type)",
    );
}

#[test]
fn config_https_verify_false_contradicts_sni_and_ca_file() {
    // Both in the VIP's check: at `verify`.
    check(
        &with_check("type = \"https\"\nverify = false\nca_file = \"/etc/ha/ca.pem\"\n"),
        13,
        10,
        "vip[0].check.verify",
        "false accepts any certificate, but `ca_file` (vip[0].check.ca_file) names the CAs it is verified against; leave one of them out",
    );
    check(
        &with_check("type = \"https\"\nsni = \"www.example.org\"\nverify = false\n"),
        14,
        10,
        "vip[0].check.verify",
        "`sni` (vip[0].check.sni) names the server it is verified against",
    );
    // Both in [health]: at its `verify`, naming the VIP.
    check(
        &with_health("type = \"https\"\nverify = false\nsni = \"www.example.org\"\n"),
        13,
        10,
        "health.verify",
        "`sni` (health.sni) names the server it is verified against; leave one of them out (for vip[0])",
    );
    // verify = false in [health], ca_file in the VIP's check: at the VIP's.
    let text = format!(
        "[health]\ntype = \"https\"\nverify = false\n{BASE}[vip.check]\nca_file = \"/etc/ha/ca.pem\"\n"
    );
    check(
        &text,
        15,
        11,
        "vip[0].check.ca_file",
        "`ca_file` names the CAs the certificate is verified against, but verify = false (health.verify) accepts any certificate; leave one of them out",
    );
    // The other way round: at the VIP's `verify`.
    let text = format!(
        "[health]\ntype = \"https\"\nsni = \"www.example.org\"\n{BASE}[vip.check]\nverify = false\n"
    );
    check(
        &text,
        15,
        10,
        "vip[0].check.verify",
        "`sni` (health.sni) names the server it is verified against",
    );
    // A host is no contradiction: it only names the server by default.
    assert!(matches!(
        https("host = \"www.example.org\"\nverify = false\n"),
        CheckKind::Https { verify: false, .. }
    ));
}

#[test]
fn config_https_track_and_json() {
    let track = "[[cluster.track]]\naddress = \"127.0.0.1\"\n  [cluster.track.check]\n  type = \"https\"\n  port = 8443\n  verify = false\n";
    let text = format!(
        "{BASE}[cluster]\nid = 1\nkey_file = \"/etc/ha/cluster.key\"\nquorum = \"two_node\"\n[[cluster.node]]\nname = \"lb1\"\naddress = \"198.18.1.1\"\n[[cluster.node]]\nname = \"lb2\"\naddress = \"198.18.1.2\"\n{track}"
    );
    let cluster = ok(&text).cluster.unwrap();
    assert_eq!(
        (
            cluster.tracks[0].check.kind.clone(),
            cluster.tracks[0].check.port
        ),
        (https_with(None, None, false), 8443)
    );
    // Serialized like the file.
    let config = ok(&with_check(
        "type = \"https\"\nsni = \"www.example.org\"\nca_file = \"/etc/ha/ca.pem\"\n",
    ));
    let json = serde_json::to_value(&config.vips[0].check).unwrap();
    assert_eq!(json["type"], "https");
    assert_eq!(json["path"], "/");
    assert_eq!(json["expect_status"], 200);
    assert_eq!(json["sni"], "www.example.org");
    assert_eq!(json["ca_file"], "/etc/ha/ca.pem");
    assert_eq!(json["verify"], true);
}
