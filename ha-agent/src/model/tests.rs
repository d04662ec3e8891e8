use super::*;

#[test]
fn mac_round_trips_through_text() {
    let mac: Mac = "02:AB:cd:00:00:0f".parse().unwrap();
    assert_eq!(mac, Mac([0x02, 0xab, 0xcd, 0, 0, 0x0f]));
    assert_eq!(mac.to_string(), "02:ab:cd:00:00:0f");
    assert_eq!(
        serde_json::to_string(&mac).unwrap(),
        "\"02:ab:cd:00:00:0f\""
    );
}

#[test]
fn mac_rejects_malformed_text() {
    for text in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "2:00:00:00:00:00",
        "0g:00:00:00:00:00",
        "02-00-00-00-00-00",
    ] {
        assert_eq!(text.parse::<Mac>(), Err(MacParseError), "{text}");
    }
}

#[test]
fn mac_unicast() {
    assert!(Mac([0x02, 0, 0, 0, 0, 1]).is_unicast());
    assert!(!Mac([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
    assert!(!Mac([0; 6]).is_unicast());
}

#[test]
fn vip_keys_of_both_families() {
    let v4 = vip_key("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    assert_eq!(v4.addr[10..], [0xff, 0xff, 198, 18, 0, 100]);
    assert_eq!(u16::from_be(v4.port_be), 80);
    assert_eq!(v4.proto, PROTO_TCP);
    let v6 = vip_key("2001:2::100".parse().unwrap(), 53, Protocol::Udp);
    assert_eq!(v6.addr[..4], [0x20, 0x01, 0, 2]);
    assert_eq!(v6.proto, PROTO_UDP);
}
