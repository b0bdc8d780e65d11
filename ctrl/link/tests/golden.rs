//! Golden bytes: the documented layouts (docs/secure-link.md) byte for byte, a fixed handshake's
//! messages as test vectors, and the key schedule recomputed independently from its description
//! with the hkdf/hmac/aes-gcm crates directly.

use core::time::Duration;

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tandem_link::wire::{
    DataPacket, DataRepr, HelloPacket, HelloRepr, LinkKind, Protection, DATA_HEADER_LEN,
    HELLO_BODY_LEN,
};
use tandem_link::{FailoverKey, IfName, LinkConfig, Received, SecureLink, Security};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn data_header_layout() {
    let repr = DataRepr {
        link: LinkKind::State,
        protection: Protection::Aes256Gcm,
        session: 0x1122_3344,
        seq: 0x0102_0304_0506_0708,
        payload_len: 3,
    };
    let mut buf = [0xeeu8; DATA_HEADER_LEN + 3 + 16];
    repr.emit(&mut buf).unwrap();
    let golden = unhex("01 02 02 01  11 22 33 44  01 02 03 04 05 06 07 08  00 03  00 00");
    assert_eq!(&buf[..DATA_HEADER_LEN], &golden[..]);
    assert!(
        buf[DATA_HEADER_LEN..].iter().all(|&b| b == 0xee),
        "payload untouched"
    );
    let p = DataPacket::new_checked(&buf[..]).unwrap();
    assert_eq!(DataRepr::parse(&p), Ok(repr));
    assert_eq!(p.frame_len(), DATA_HEADER_LEN + 3 + 16);
    // Clear text: the same header, protection 0, no tag.
    let clear = DataRepr {
        protection: Protection::Cleartext,
        ..repr
    };
    assert_eq!(clear.buffer_len(), DATA_HEADER_LEN + 3);
}

#[test]
fn hello_layout() {
    let repr = HelloRepr {
        link: LinkKind::Failover,
        protection: Protection::Aes256Gcm,
        nonce: [0xaa; 32],
        echo: Some([0xbb; 32]),
        confirmed: true,
        rekey: false,
    };
    let mut buf = [0u8; 104];
    repr.emit(&mut buf).unwrap();
    let mut golden = unhex("01 01 01 01  05  00 00 00");
    golden.extend([0xaa; 32]);
    golden.extend([0xbb; 32]);
    golden.extend([0x00; 32]);
    assert_eq!(&buf[..], &golden[..]);
    assert_eq!(
        HelloRepr::parse(&HelloPacket::new_checked(&buf[..]).unwrap()),
        Ok(repr)
    );
    // No echo: flag clear, echo field zero.
    let first = HelloRepr {
        echo: None,
        confirmed: false,
        rekey: true,
        ..repr
    };
    first.emit(&mut buf).unwrap();
    assert_eq!(&buf[..8], &unhex("01 01 01 01  02  00 00 00")[..]);
    assert_eq!(&buf[40..72], &[0u8; 32]);
}

const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f";
const NONCE_A: [u8; 32] = [0x11; 32];
const NONCE_B: [u8; 32] = [0x22; 32];

type Fixed = fn(&mut [u8; 32]);

/// A's first hello, B's answer, A's confirmation, A's first data frame (payload "tandem"), and B.
struct Vectors {
    h1: Vec<u8>,
    h2: Vec<u8>,
    h3: Vec<u8>,
    data: Vec<u8>,
    b: SecureLink<Fixed>,
}

/// The fixed handshake of the test vectors: failover link, key `hex 0001…0f`, A's nonce 0x11…,
/// B's 0x22….
fn fixed_handshake() -> Vectors {
    let s = Security::Encrypted(FailoverKey::hex(KEY_HEX).unwrap());
    let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap());
    let t = Duration::ZERO;
    let mut a = SecureLink::new(cfg, &s, (|n| *n = NONCE_A) as Fixed, t).unwrap();
    let mut b = SecureLink::new(cfg, &s, (|n| *n = NONCE_B) as Fixed, t).unwrap();
    let mut buf = [0u8; 256];
    let n = a.poll_transmit(t, &mut buf).unwrap();
    let h1 = buf[..n].to_vec();
    b.handle_frame(t, &mut buf[..n]);
    let n = b.poll_transmit(t, &mut buf).unwrap();
    let h2 = buf[..n].to_vec();
    a.handle_frame(t, &mut buf[..n]);
    let n = a.poll_transmit(t, &mut buf).unwrap();
    let h3 = buf[..n].to_vec();
    b.handle_frame(t, &mut buf[..n]);
    assert!(a.is_established() && b.is_established());
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + 6].copy_from_slice(b"tandem");
    let n = a.seal(t, 6, &mut buf).unwrap();
    let data = buf[..n].to_vec();
    let mut copy = data.clone();
    assert!(matches!(b.handle_frame(t, &mut copy), Received::Data(_)));
    Vectors {
        h1,
        h2,
        h3,
        data,
        b,
    }
}

const GOLDEN_H1: &str =
    "01010101000000001111111111111111111111111111111111111111111111111111111111111111\
                         0000000000000000000000000000000000000000000000000000000000000000";
const GOLDEN_H2: &str =
    "01010101040000002222222222222222222222222222222222222222222222222222222222222222\
                         1111111111111111111111111111111111111111111111111111111111111111";
const GOLDEN_H3: &str =
    "01010101050000001111111111111111111111111111111111111111111111111111111111111111\
                         2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn fixed_handshake_test_vectors() {
    let Vectors {
        h1,
        h2,
        h3,
        data,
        b,
    } = fixed_handshake();
    // Bodies: layout only (nonces and flags) — stable by construction.
    assert_eq!(hex(&h1[..HELLO_BODY_LEN]), GOLDEN_H1);
    assert_eq!(hex(&h2[..HELLO_BODY_LEN]), GOLDEN_H2);
    assert_eq!(hex(&h3[..HELLO_BODY_LEN]), GOLDEN_H3);
    // MACs, session id and ciphertext: pin the key schedule and AEAD use. A change here breaks
    // interoperability between tandem releases and must come with a version bump.
    assert_eq!(hex(&h1[HELLO_BODY_LEN..]), GOLDEN_H1_MAC);
    assert_eq!(hex(&h2[HELLO_BODY_LEN..]), GOLDEN_H2_MAC);
    assert_eq!(hex(&h3[HELLO_BODY_LEN..]), GOLDEN_H3_MAC);
    assert_eq!(hex(&data), GOLDEN_DATA);
    assert_eq!(b.session_id().unwrap().0, GOLDEN_SESSION);
}

const GOLDEN_H1_MAC: &str = "cfb38c829073118f9e10cb20bdcd218dc5fe8d99059f96584e31428aa7c9e2db";
const GOLDEN_H2_MAC: &str = "695c404acbcdff2ba62b2316f040c89455a599ca191de38801ed5f90446d337e";
const GOLDEN_H3_MAC: &str = "a9fa436fde2941aaf7d77cd35303f7a0ab214256fd5996ab336fd070fc376f6e";
/// Header (version 1, data, failover link, AES-256-GCM, session, seq 0, length 6,
/// reserved), ciphertext of "tandem", tag.
const GOLDEN_DATA: &str = "01020101bc7a4a73000000000000000000060000\
                           610f00ed6ba5\
                           48ad5c29835e249227a7ca8d09f92fa6";
const GOLDEN_SESSION: u32 = 0xbc7a_4a73;

fn expand(hk: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    hk.expand(info, out).unwrap();
}

#[test]
fn key_schedule_matches_its_description() {
    let Vectors { h1, data, b, .. } = fixed_handshake();
    // Failover key: HKDF-Extract(salt "tandem secure link v1", IKM = 0x02 (hex form) || 16 bytes).
    let mut ikm = vec![0x02];
    ikm.extend(unhex(KEY_HEX));
    let psk = Hkdf::<Sha256>::new(Some(b"tandem secure link v1"), &ikm);
    // Per link kind (failover = 0x01): link PSK and hello MAC key.
    let mut link_psk = [0u8; 32];
    expand(&psk, b"tandem v1 link psk\x01", &mut link_psk);
    let mut hello_key = [0u8; 32];
    expand(&psk, b"tandem v1 hello mac\x01", &mut hello_key);
    // Hello MAC: HMAC-SHA256(hello key, first 72 bytes).
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&hello_key).unwrap();
    mac.update(&h1[..HELLO_BODY_LEN]);
    assert_eq!(&mac.finalize().into_bytes()[..], &h1[HELLO_BODY_LEN..]);
    // Session: HKDF-Extract(salt = lower nonce || higher nonce, IKM = link PSK).
    let mut salt = NONCE_A.to_vec();
    salt.extend(NONCE_B);
    let session = Hkdf::<Sha256>::new(Some(&salt), &link_psk);
    let mut id = [0u8; 4];
    expand(&session, b"tandem v1 session id\x01", &mut id);
    assert_eq!(u32::from_be_bytes(id), b.session_id().unwrap().0);
    assert_eq!(&data[4..8], &id);
    // A holds the lower nonce: it seals with the lo->hi key, direction byte 0.
    let mut key = [0u8; 32];
    expand(&session, b"tandem v1 data lo->hi\x01", &mut key);
    let cipher = Aes256Gcm::new(&key.into());
    let seq = u64::from_be_bytes(data[8..16].try_into().unwrap());
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let (header, rest) = data.split_at(DATA_HEADER_LEN);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let mut pt = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &nonce.into(),
            header,
            pt.as_mut_slice().into(),
            tag.try_into().unwrap(),
        )
        .unwrap();
    assert_eq!(pt, b"tandem");
}

/// Regenerates the fuzz seed corpus from genuine frames:
/// `cargo test -p tandem-link --test golden -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand after a format change"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/frame");
    std::fs::create_dir_all(&dir).unwrap();
    let Vectors {
        h1, h2, h3, data, ..
    } = fixed_handshake();
    for (name, bytes) in [
        ("hello-first", h1),
        ("hello-echo", h2),
        ("hello-confirm", h3),
        ("data-sealed", data),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    // The exercise's own session (key "fuzz-key", seeds 1 and 2) in both protections, so the
    // fuzzer starts from frames the established links accept.
    for (tag, sec) in [
        (
            "enc",
            Security::Encrypted(FailoverKey::parse("fuzz-key").unwrap()),
        ),
        (
            "clear",
            Security::Cleartext(tandem_link::CleartextAck::acknowledge(|_| {})),
        ),
    ] {
        let cfg = LinkConfig::new(LinkKind::Failover, IfName::new("fo0").unwrap());
        let mut p = tandem_link::testutil::LinkPair::new(cfg, &sec, &sec, 1, 2);
        p.exchange();
        let f = p.seal(tandem_link::testutil::Dir::AtoB, b"record").unwrap();
        std::fs::write(dir.join(format!("exercise-{tag}-data")), f).unwrap();
        let (_, h) = &p.hellos[1];
        std::fs::write(dir.join(format!("exercise-{tag}-hello")), h).unwrap();
    }
}
