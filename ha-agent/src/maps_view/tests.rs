use super::*;
use std::net::Ipv4Addr;

#[test]
fn table_aligns_columns() {
    let t = table(
        &["A", "LONG"],
        &[
            vec!["xyz".into(), "1".into()],
            vec!["q".into(), "22".into()],
        ],
    );
    assert_eq!(t, "A    LONG\nxyz  1\nq    22\n");
}

#[test]
fn mapped_addresses_show_as_ipv4() {
    assert_eq!(
        ip(&ha_common::v4_mapped([198, 18, 0, 1])),
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))
    );
    let v6: Ipv6Addr = "2001:2::1".parse().unwrap();
    assert_eq!(ip(&v6.octets()), IpAddr::V6(v6));
}
