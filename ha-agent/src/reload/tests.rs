use super::*;
use crate::config::tests::ok;

const BASE: &str = r#"
[node]
name = "lb1"
interface = "eth0"

[[vip]]
name = "web"
address = "198.18.0.100"
port = 80
protocol = "tcp"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"

[[vip]]
name = "dns"
address = "2001:2::100"
port = 53
protocol = "udp"
  [[vip.backend]]
  address = "2001:2::11"
"#;

fn edit(from: &str, to: &str) -> Config {
    assert!(BASE.contains(from), "{from}");
    ok(&BASE.replacen(from, to, 1))
}

#[test]
fn the_same_file_changes_nothing() {
    let changes = diff(&ok(BASE), &ok(BASE)).unwrap();
    assert!(changes.is_empty());
    assert_eq!(changes.to_string(), "no change");
}

#[test]
fn vips_and_backends_added_removed_and_changed_are_counted() {
    let old = ok(BASE);
    let new = edit(
        "  [[vip.backend]]\n  address = \"198.18.0.11\"\n",
        "  [[vip.backend]]\n  address = \"198.18.0.13\"\n",
    );
    let changes = diff(&old, &new).unwrap();
    assert_eq!((changes.backends_added, changes.backends_removed), (1, 1));
    assert_eq!(
        changes.to_string(),
        "backends added: 1; backends removed: 1"
    );

    let new = ok(&format!(
        "{}\n[[vip]]\nname = \"api\"\naddress = \"198.18.0.101\"\nport = 443\n\
             protocol = \"tcp\"\n  [[vip.backend]]\n  address = \"198.18.0.21\"\n  weight = 3\n",
        BASE.replacen(
            "  address = \"198.18.0.12\"",
            "  address = \"198.18.0.12\"\n  weight = 2",
            1
        )
    ));
    let changes = diff(&old, &new).unwrap();
    assert_eq!(changes.vips_added, ["api"]);
    assert_eq!((changes.backends_added, changes.backends_changed), (1, 1));
}

#[test]
fn a_removed_vip_is_named() {
    let old = ok(BASE);
    let cut = BASE.find("[[vip]]\nname = \"dns\"").unwrap();
    let changes = diff(&old, &ok(&BASE[..cut])).unwrap();
    assert_eq!(changes.vips_removed, ["dns"]);
    assert_eq!(changes.backends_removed, 1);
}

#[test]
fn restart_only_sections_are_refused_by_name() {
    let old = ok(BASE);
    let new = edit(
        "interface = \"eth0\"",
        "interface = \"eth1\"\n[datapath]\nring_size = 13",
    );
    assert_eq!(
        diff(&old, &new).unwrap_err().to_string(),
        "[node], [datapath] changed: restart the agent to apply (nothing was changed)"
    );
}

#[test]
fn backend_state_follows_the_backend_not_its_position() {
    let old = ok(BASE);
    // A backend is inserted before 198.18.0.12 and the first VIP moves
    // behind the second.
    let web = &BASE[BASE.find("[[vip]]\nname = \"web\"").unwrap()
        ..BASE.find("[[vip]]\nname = \"dns\"").unwrap()];
    let dns = &BASE[BASE.find("[[vip]]\nname = \"dns\"").unwrap()..];
    let head = &BASE[..BASE.find("[[vip]]").unwrap()];
    let web = web.replacen(
            "  [[vip.backend]]\n  address = \"198.18.0.12\"",
            "  [[vip.backend]]\n  address = \"198.18.0.14\"\n  [[vip.backend]]\n  address = \"198.18.0.12\"",
            1,
        );
    let new = ok(&format!("{head}{dns}\n{web}"));
    let down: BTreeSet<BackendKey> = [
        BackendKey { vip: 0, backend: 1 }, // web 198.18.0.12
        BackendKey { vip: 1, backend: 0 }, // dns 2001:2::11
    ]
    .into();
    let followed = follow(&old, &new, &down);
    assert_eq!(
        followed,
        [
            BackendKey { vip: 0, backend: 0 }, // dns 2001:2::11
            BackendKey { vip: 1, backend: 2 }, // web 198.18.0.12
        ]
        .into()
    );
}
