//! L2Socket on a veth pair between two network namespaces: frames of one
//! EtherType go both ways with the sender's MAC, the socket never sees its
//! own outgoing frames, and `recv` times out when nothing comes. Needs root;
//! every loop is bounded by count and deadline.

use std::time::{Duration, Instant};

use tandem_io::l2sock::{wait_readable, L2Socket, BROADCAST};
use tandem_netns::{have_privileges, veth, Netns};

const ETHERTYPE: u16 = 0x88b5;

#[test]
fn frames_cross_a_veth_pair_with_the_sender_mac() {
    if !have_privileges("frames_cross_a_veth_pair_with_the_sender_mac") {
        return;
    }
    let a = Netns::new("l2a").expect("ns a");
    let b = Netns::new("l2b").expect("ns b");
    veth(&a, "fo0", &b, "fo0").expect("veth");
    let mac_a = a.mac("fo0").expect("mac a");
    let sa = {
        let _g = a.enter().expect("enter a");
        L2Socket::open("fo0", ETHERTYPE).expect("open a")
    };
    let sb = {
        let _g = b.enter().expect("enter b");
        L2Socket::open("fo0", ETHERTYPE).expect("open b")
    };
    let mut buf = [0u8; 256];
    // The veth may take a moment to get carrier: resend until heard.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        let _ = sa.send(BROADCAST, b"hello from a");
        got = sb
            .recv(&mut buf, Duration::from_millis(50))
            .expect("recv b");
    }
    let (src, n) = got.expect("b heard a");
    assert_eq!(src, mac_a);
    assert_eq!(&buf[..n.min(12)], b"hello from a");
    // A never sees its own outgoing frames.
    assert!(sa.recv(&mut buf, Duration::ZERO).expect("recv a").is_none());
    // Unicast back to the learned MAC; wait_readable reports it.
    let mac_b = b.mac("fo0").expect("mac b");
    sb.send(src, b"hi a").expect("send b");
    let ready = wait_readable(&[&sb, &sa], Duration::from_secs(2)).expect("poll");
    assert_eq!(ready, 0b10, "only a's socket is readable");
    let (src, n) = sa
        .recv(&mut buf, Duration::from_secs(1))
        .expect("recv a")
        .expect("a heard b");
    assert_eq!(src, mac_b);
    assert_eq!(&buf[..n.min(4)], b"hi a");
    // Nothing more: a bounded wait times out.
    assert!(sb
        .recv(&mut buf, Duration::from_millis(20))
        .expect("recv")
        .is_none());
}
