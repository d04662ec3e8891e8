//! Errors of the TOML parser and of serde (syntax, unknown and missing
//! fields, wrong types): located at the right line, column and field.

use super::*;
use crate::config::error::line_column;

#[test]
fn config_syntax_error() {
    check(
        &base_with("name = \"lb1\"", "name = \"lb1"),
        2,
        12,
        "node.name",
        "",
    );
    check(
        &base_with("port = 80", "port = = 80"),
        7,
        8,
        "vip[0].port",
        "",
    );
    check(&base_with("[[vip]]", "[[vip]"), 5, 6, "vip", "");
    // A key with characters a bare key may not have.
    check(
        &base_with("port = 80", "pört = 80"),
        7,
        2,
        "vip[0].pört",
        "",
    );
    check("[node\n", 1, 6, "node", "");
}

#[test]
fn config_duplicate_key_is_a_syntax_error() {
    let e = err(&base_with("port = 80", "port = 80\nport = 81"));
    assert_eq!((e.line, e.field.as_str()), (8, "vip[0].port"), "{e}");
}

#[test]
fn config_unknown_field() {
    check(
        &base_with("interface", "interfase"),
        3,
        1,
        "node.interfase",
        "unknown field `interfase`",
    );
    check(
        &base_with("port = 80", "port = 80\nmode = \"dsr\""),
        8,
        1,
        "vip[0].mode",
        "unknown field `mode`",
    );
    check(
        &format!("{BASE}weigth = 2\n"),
        11,
        1,
        "vip[0].backend[0].weigth",
        "unknown field",
    );
    check(
        &format!("[clusters]\npeers = []\n{BASE}"),
        1,
        2,
        "clusters",
        "unknown field `clusters`",
    );
    check(
        &format!("[cluster]\npeers = []\n{BASE}"),
        2,
        1,
        "cluster.peers",
        "unknown field `peers`",
    );
}

#[test]
fn config_missing_field() {
    check(
        &base_with("name = \"lb1\"\n", ""),
        1,
        1,
        "node.name",
        "missing field `name`",
    );
    check(
        &base_with("protocol = \"tcp\"\n", ""),
        5,
        1,
        "vip[0].protocol",
        "missing field `protocol`",
    );
    check(
        &base_with("[node]\nname = \"lb1\"\ninterface = \"eth0\"\n", ""),
        1,
        1,
        "node",
        "missing field `node`",
    );
}

#[test]
fn config_wrong_type() {
    check(
        &base_with("port = 80", "port = \"80\""),
        7,
        8,
        "vip[0].port",
        "invalid type",
    );
    check(
        &base_with("name = \"lb1\"", "name = 1"),
        2,
        8,
        "node.name",
        "invalid type",
    );
    check(
        &base_with("port = 80", "port = 65536"),
        7,
        8,
        "vip[0].port",
        "65536",
    );
    check(
        &format!("{BASE}weight = -1\n"),
        11,
        10,
        "vip[0].backend[0].weight",
        "-1",
    );
    check(
        &base_with("\"tcp\"", "\"sctp\""),
        8,
        12,
        "vip[0].protocol",
        "unknown variant `sctp`",
    );
    check(
        &BASE.replace(
            "[[vip.backend]]\naddress = \"198.18.0.11\"\n",
            "backend = 3\n",
        ),
        9,
        11,
        "vip[0].backend",
        "invalid type",
    );
}

#[test]
fn config_columns_count_characters() {
    // "é" is two bytes but one column.
    let text = BASE.replace(
        "[node]\nname = \"lb1\"\ninterface = \"eth0\"\n",
        "node = { name = \"lb1\", interface = \"é\", mac = \"x\" }\n",
    );
    check(&text, 1, 47, "node.mac", "is not a MAC address");
    assert_eq!(line_column("aé\nbc", 3), (1, 3));
    assert_eq!(line_column("aé\nbc", 5), (2, 2));
    assert_eq!(line_column("ab", 99), (1, 3));
}
