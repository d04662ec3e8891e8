use super::*;
use std::time::Instant;

const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];

#[test]
fn gratuitous_arp_bytes() {
    let frame = gratuitous_arp(MAC, Ipv4Addr::new(198, 18, 0, 100));
    #[rustfmt::skip]
        let want: [u8; 60] = [
            // Ethernet: broadcast, from MAC, ARP.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
            0x08, 0x06,
            // ARP: Ethernet/IPv4, 6/4, request.
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            // Sender: MAC, VIP.
            0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 198, 18, 0, 100,
            // Target: broadcast, VIP.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 198, 18, 0, 100,
            // Padding to 60 bytes.
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
    assert_eq!(frame, want);
    assert_eq!(frame.len(), ARP_FRAME_LEN);
}

/// The one's-complement sum of 16-bit big-endian words (an odd last
/// byte padded with zero), written independently of the module's.
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let high = u32::from(bytes[i]) << 8;
        let low = if i + 1 < bytes.len() {
            u32::from(bytes[i + 1])
        } else {
            0
        };
        sum += high | low;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    sum as u16
}

/// Whether the ICMPv6 checksum of the IPv6 packet in `frame` is right:
/// pseudo header plus message (checksum included) sum to 0xffff.
fn checksum_ok(frame: &[u8]) -> bool {
    let ip = &frame[14..];
    let message = &ip[40..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[8..40]); // source, destination
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ip[6]]);
    pseudo.extend_from_slice(message);
    ones_complement_sum(&pseudo) == 0xffff
}

#[test]
fn unsolicited_na_fields() {
    let vip: Ipv6Addr = "2001:2::100".parse().unwrap();
    let frame = unsolicited_na(MAC, vip);
    assert_eq!(frame.len(), NA_FRAME_LEN);
    assert_eq!(frame.len(), 86);
    // Ethernet: all-nodes MAC, from MAC, IPv6.
    assert_eq!(frame[0..6], [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(frame[6..12], MAC);
    assert_eq!(frame[12..14], [0x86, 0xdd]);
    // IPv6: version 6, no traffic class or flow label, 32 bytes of
    // ICMPv6, hop limit 255, from the VIP to ff02::1.
    let ip = &frame[14..54];
    assert_eq!(ip[0..4], [0x60, 0, 0, 0]);
    assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 32);
    assert_eq!(ip[6], 58);
    assert_eq!(ip[7], 255);
    assert_eq!(ip[8..24], vip.octets());
    assert_eq!(ip[24..40], "ff02::1".parse::<Ipv6Addr>().unwrap().octets());
    // ICMPv6: NA, code 0; flags: override only (router and solicited
    // clear); reserved zero; the VIP as target.
    let icmp = &frame[54..];
    assert_eq!(icmp.len(), 32);
    assert_eq!((icmp[0], icmp[1]), (136, 0));
    assert_eq!(icmp[4], 0b0010_0000);
    assert_eq!(icmp[4] & 0x80, 0, "router flag");
    assert_eq!(icmp[4] & 0x40, 0, "solicited flag");
    assert_eq!(icmp[4] & 0x20, 0x20, "override flag");
    assert_eq!(icmp[5..8], [0, 0, 0]);
    assert_eq!(icmp[8..24], vip.octets());
    // Option: target link-layer address, length 1 (8 bytes), the MAC.
    assert_eq!(icmp[24..26], [2, 1]);
    assert_eq!(icmp[26..32], MAC);
    // Checksum.
    assert_ne!(icmp[2..4], [0, 0]);
    assert!(checksum_ok(&frame));
}

#[test]
fn unsolicited_na_checksum() {
    for (vip, mac) in [
        ("2001:2::100", MAC),
        ("fe80::1", [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", [0xfe; 6]),
        ("2001:2::", [0x02, 0, 0, 0, 0, 0]),
    ] {
        let frame = unsolicited_na(mac, vip.parse().unwrap());
        assert!(checksum_ok(&frame), "{vip}");
        // The check is not vacuous: any changed byte breaks it.
        for i in [22, 30, 54, 62, 70, 85] {
            let mut broken = frame.clone();
            broken[i] ^= 0x01;
            assert!(!checksum_ok(&broken), "{vip}: byte {i}");
        }
    }
    // A known answer: all-zero message from :: to ::, length 0 and
    // next header 58: the sum is 58, the checksum its complement.
    assert_eq!(
        icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &[]),
        !58
    );
    // An odd length is padded with a zero byte.
    assert_eq!(
        icmpv6_checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, &[0x01]),
        !(58 + 1 + 0x0100)
    );
}

#[test]
fn announcement_dispatches() {
    let v4 = Ipv4Addr::new(198, 18, 0, 100);
    let v6: Ipv6Addr = "2001:2::100".parse().unwrap();
    assert_eq!(announcement(MAC, IpAddr::V4(v4)), gratuitous_arp(MAC, v4));
    assert_eq!(announcement(MAC, IpAddr::V6(v6)), unsolicited_na(MAC, v6));
}

#[tokio::test]
async fn announce_sends_count_rounds_interval_apart() {
    let frames = vec![vec![1u8; 60], vec![2u8; 86]];
    let mut sent: Vec<(u8, Instant)> = Vec::new();
    let start = Instant::now();
    send_rounds(
        |frame| {
            sent.push((frame[0], Instant::now()));
            Ok(())
        },
        &frames,
        3,
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let order: Vec<u8> = sent.iter().map(|(f, _)| *f).collect();
    assert_eq!(order, [1, 2, 1, 2, 1, 2]);
    // Rounds are at least the interval apart; no sleep before the first
    // round or after the last.
    assert!(sent[2].1 - sent[1].1 >= Duration::from_millis(20));
    assert!(sent[4].1 - sent[3].1 >= Duration::from_millis(20));
    assert!(sent[0].1 - start < Duration::from_millis(20));
    // Nothing to send: returns at once.
    let start = Instant::now();
    send_rounds(|_| panic!("sent"), &[], 5, Duration::from_secs(1))
        .await
        .unwrap();
    send_rounds(|_| panic!("sent"), &frames, 0, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn announce_tries_every_frame_and_reports_failures() {
    let frames = vec![vec![1u8; 60], vec![2u8; 86]];
    let mut tried = 0;
    let e = send_rounds(
        |frame| {
            tried += 1;
            if frame[0] == 2 {
                bail!("no buffer space");
            }
            Ok(())
        },
        &frames,
        2,
        Duration::from_millis(1),
    )
    .await
    .unwrap_err();
    assert_eq!(tried, 4);
    let text = format!("{e:#}");
    assert!(
        text.contains("2 of 4 announcements could not be sent"),
        "{text}"
    );
    assert!(text.contains("no buffer space"), "{text}");
}

#[test]
fn raw_sender_rejects_bad_input() {
    assert!(RawSender::open(0).is_err());
    assert!(RawSender::open(u32::MAX).is_err());
}

/// Needs CAP_NET_RAW (skipped without). Opens a sender on the loopback
/// interface and sends nothing.
#[test]
fn raw_sender_opens_and_refuses_a_short_frame() {
    let lo = nix::net::if_::if_nametoindex("lo").expect("a loopback interface");
    let sender = match RawSender::open(lo) {
        Ok(sender) => sender,
        Err(e) => {
            let denied = e
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied);
            if denied {
                eprintln!("no CAP_NET_RAW: skipping the live send ({e:#})");
                return;
            }
            panic!("{e:#}");
        }
    };
    // Nothing is sent from a unit test (the lab tests send for real,
    // inside their own namespaces): a frame too short is refused first.
    let e = sender.send(&[0; 13]).unwrap_err();
    assert!(e.to_string().contains("no Ethernet header"), "{e}");
    // An interface index that does not exist.
    let missing = RawSender::open(i32::MAX as u32).unwrap_err();
    assert!(
        format!("{missing:#}").contains("cannot bind"),
        "{missing:#}"
    );
}
