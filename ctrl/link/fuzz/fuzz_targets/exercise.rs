//! Drives every parser and the receive path of tandem-link over one input. Shared by the fuzz
//! target and by the crate's "never panics" property tests (`tests/no_panic.rs` includes this
//! file), so both exercise exactly the same code.
//!
//! The input is handed, as is and with a valid preamble or a live session's id patched in (so
//! the fuzzer reaches the MAC, the AEAD and the replay window without guessing them), to the wire
//! views and Reprs and to `SecureLink::handle_frame` of a fresh link and of links with a running
//! session, encrypted and clear text. A panic anywhere is the bug being searched for.
#![allow(dead_code)]

use core::time::Duration;

use tandem_link::testutil::{Dir, LinkPair};
use tandem_link::wire::{
    self, DataPacket, DataRepr, HelloPacket, HelloRepr, DATA_HEADER_LEN, HELLO_LEN,
};
use tandem_link::{
    CleartextAck, FailoverKey, IfName, LinkConfig, LinkKind, Protection, Received, Security,
};

/// Largest input copied for the mutable checks (a stack buffer: no allocation).
const MAX: usize = 2048;

fn copy(data: &[u8], buf: &mut [u8; MAX]) -> usize {
    let n = data.len().min(MAX);
    buf[..n].copy_from_slice(&data[..n]);
    n
}

/// A pair with a running session, encrypted or clear text.
pub fn established(encrypted: bool) -> LinkPair {
    let security = if encrypted {
        Security::Encrypted(FailoverKey::parse("fuzz-key").expect("valid key"))
    } else {
        Security::Cleartext(CleartextAck::acknowledge(|_| {}))
    };
    let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").expect("valid name"));
    let mut pair = LinkPair::new(cfg, &security, &security, 1, 2);
    pair.exchange();
    assert!(pair.a.is_established() && pair.b.is_established());
    pair
}

/// Everything, on one input.
pub fn all(data: &[u8]) {
    views(data);
    for encrypted in [true, false] {
        let mut pair = established(encrypted);
        receive(&mut pair, data);
    }
}

/// The wire views, getters, Reprs, and emit of whatever parsed.
pub fn views(data: &[u8]) {
    let _ = wire::peek(data);
    if let Ok(p) = DataPacket::new_checked(data) {
        let _ = (
            p.version(),
            p.frame_type(),
            p.link(),
            p.protection(),
            p.reserved(),
        );
        let _ = (
            p.session(),
            p.seq(),
            p.frame_len(),
            p.header_bytes(),
            p.payload(),
            p.tag(),
        );
        if let Ok(r) = DataRepr::parse(&p) {
            let mut buf = [0u8; MAX];
            let n = copy(data, &mut buf);
            r.emit(&mut buf[..n])
                .expect("emit into the parsed frame's own buffer");
            let again = DataRepr::parse(&DataPacket::new_checked(&buf[..n]).expect("re-check"));
            assert_eq!(again, Ok(r));
        }
    }
    let mut buf = [0u8; MAX];
    let n = copy(data, &mut buf);
    let mut p = DataPacket::new_unchecked(&mut buf[..n]);
    p.set_seq(7);
    p.set_session(9);
    let _ = p.split_mut();
    let _ = p.payload_mut();

    if let Ok(p) = HelloPacket::new_checked(data) {
        let _ = (p.version(), p.link(), p.protection(), p.flags());
        let _ = (p.nonce(), p.echo(), p.mac(), p.authenticated_bytes());
        if let Ok(r) = HelloRepr::parse(&p) {
            let mut out = [0u8; HELLO_LEN];
            r.emit(&mut out).expect("hello fits");
            let again = HelloRepr::parse(&HelloPacket::new_checked(&out[..]).expect("re-check"));
            assert_eq!(again, Ok(r));
        }
    }
    let mut buf = [0u8; MAX];
    let n = copy(data, &mut buf);
    let mut p = HelloPacket::new_unchecked(&mut buf[..n]);
    p.set_mac(&[0xa5; 32]);
    p.set_flags(0xff);
}

/// The receive path: the raw input, then the input behind a valid preamble, then as a data frame
/// of the live session, delivered to both units; then a genuine frame must still get through.
pub fn receive(pair: &mut LinkPair, data: &[u8]) {
    let now = pair.now;
    let mut buf = [0u8; MAX];
    let protection = pair.a.protection() as u8;
    let clear = pair.a.protection() == Protection::Cleartext;
    let session = pair.b.session_id().map_or(0, |s| s.0);

    let n = copy(data, &mut buf);
    let mut accepted = check(pair.a.handle_frame(now, &mut buf[..n]), &buf[..n], clear);

    // Valid preamble: version 1, the frame type chosen by the first byte, this link, this
    // protection; the rest of the input follows.
    for frame_type in [1u8, 2] {
        let mut n = copy(data, &mut buf);
        n = n.max(4);
        buf[..4].copy_from_slice(&[
            wire::VERSION,
            frame_type,
            LinkKind::Failover as u8,
            protection,
        ]);
        accepted |= check(pair.b.handle_frame(now, &mut buf[..n]), &buf[..n], clear);
    }

    // A data frame of the live session: the input provides sequence number, length and bytes.
    let mut n = copy(data, &mut buf);
    n = n.max(DATA_HEADER_LEN);
    buf[..4].copy_from_slice(&[wire::VERSION, 2, LinkKind::Failover as u8, protection]);
    buf[4..8].copy_from_slice(&session.to_be_bytes());
    accepted |= check(pair.b.handle_frame(now, &mut buf[..n]), &buf[..n], clear);

    // Timers and output keep working whatever was received.
    let later = now + Duration::from_secs(30);
    pair.a.handle_timeout(later);
    pair.b.handle_timeout(later);
    while pair.a.poll_event().is_some() {}
    while pair.b.poll_event().is_some() {}
    pair.exchange();

    // A genuine frame still gets through: refused input never wedges the session, and neither
    // does a replayed genuine hello. (Exempt: input accepted as data — a recording of a genuine
    // frame of this deterministic pair uses up its sequence number — and any clear-text input
    // that was taken in, since clear text is unauthenticated by definition.)
    if !accepted && pair.a.is_established() && pair.b.is_established() {
        let frame = pair.seal(Dir::AtoB, b"still alive").expect("seal");
        match pair.deliver(Dir::AtoB, &frame) {
            Ok(p) => assert_eq!(p, b"still alive"),
            Err(r) => panic!("genuine frame refused after garbage: {r:?}"),
        }
    }
}

/// Checks an accepted frame's payload range; true if the input was taken in (see above).
fn check(r: Received, frame: &[u8], clear: bool) -> bool {
    match r {
        Received::Data(o) => {
            assert!(
                o.payload.end <= frame.len(),
                "payload range outside the frame"
            );
            true
        }
        Received::Handshake => clear,
        Received::Dropped(_) => false,
    }
}
