//! The failover-link payload codec (`tandem_ha::codec`): golden bytes for every message type,
//! checked by hand against the byte tables in `ctrl/ha/docs/failover-protocol.md`; the errors; and
//! property tests (round trip, canonical encoding, no panic on arbitrary or mutated bytes, no
//! panic and no partial write on a short buffer).

use core::time::Duration;

use proptest::prelude::*;
use tandem_ha::codec::{
    decode, encode, encoded_len, peek, DecodeError, EncodeError, MessageType, CONTROL_LEN,
    ETHERTYPE, HELLO_FIXED_LEN, INTERFACE_HELLO_LEN, LANTEST_LEN, MAX_ENCODED_LEN, MAX_INTERFACES,
    VERSION,
};
use tandem_ha::{
    ConfigChunk, Control, ExecReply, ExecRequest, Hello, IfIndex, InterfaceHello, InterfaceReport,
    InterfaceStatus, LanTest, LanTestKind, Mac, Message, Role, State,
};

// ---------------------------------------------------------------------------------------------
// Golden bytes
// ---------------------------------------------------------------------------------------------

fn golden_hello() -> Message {
    Message::Hello(Hello {
        role: Role::Secondary,
        state: State::StandbyReady,
        failover_enabled: true,
        term: 0x0102_0304_0506_0708,
        failover_mac: Mac([0x02, 0, 0, 0, 0, 0x02]),
        macs: vec![
            Mac([0x02, 0, 0, 0, 0x01, 0x02]),
            Mac([0x02, 0, 0, 0, 0x02, 0x02]),
        ],
        interfaces: vec![
            InterfaceReport {
                status: InterfaceStatus::Normal,
                counts_failed: false,
                rx_age: Some(Duration::from_micros(1500)),
            },
            InterfaceReport {
                status: InterfaceStatus::Failed,
                counts_failed: true,
                rx_age: None,
            },
        ],
    })
}

#[rustfmt::skip]
const GOLDEN_HELLO: &[u8] = &[
    // common header: version 1, type 1 (hello)
    0x01, 0x01,
    // role 2 (secondary), state 4 (standby ready), flags 0x01 (failover enabled), reserved
    0x02, 0x04, 0x01, 0x00,
    // term 0x0102030405060708, big-endian
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    // failover-link MAC 02:00:00:00:00:02
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    // mac_count 2, report_count 2
    0x00, 0x02, 0x00, 0x02,
    // MAC list
    0x02, 0x00, 0x00, 0x00, 0x01, 0x02,
    0x02, 0x00, 0x00, 0x00, 0x02, 0x02,
    // report 0: status 2 (normal), flags 0x02 (rx_age present), rx_age 1 500 000 ns = 0x16e360
    0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0xe3, 0x60,
    // report 1: status 6 (failed), flags 0x01 (counts failed), no rx_age (zeros)
    0x06, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Every message type, with its hand-checked encoding.
fn goldens() -> Vec<(Message, Vec<u8>)> {
    vec![
        (golden_hello(), GOLDEN_HELLO.to_vec()),
        (
            // The smallest hello: a unit without data interfaces, primary, negotiating, failover
            // disabled (flags 0), term 0.
            Message::Hello(Hello {
                role: Role::Primary,
                state: State::Negotiation,
                failover_enabled: false,
                term: 0,
                failover_mac: Mac([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]),
                macs: vec![],
                interfaces: vec![],
            }),
            vec![
                0x01, 0x01, 0x01, 0x02, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0xaa, 0xbb, 0xcc,
                0xdd, 0xee, 0x00, 0x00, 0x00, 0x00,
            ],
        ),
        (
            Message::LanTest(LanTest {
                kind: LanTestKind::Request,
                nonce: 0xdead_beef,
            }),
            vec![0x01, 0x02, 0x01, 0xde, 0xad, 0xbe, 0xef],
        ),
        (
            Message::LanTest(LanTest {
                kind: LanTestKind::Reply,
                nonce: 7,
            }),
            vec![0x01, 0x02, 0x02, 0x00, 0x00, 0x00, 0x07],
        ),
        (
            Message::InterfaceHello(InterfaceHello {
                iface: IfIndex(0x0102),
            }),
            vec![0x01, 0x03, 0x01, 0x02],
        ),
        (Message::Control(Control::TakeOver), vec![0x01, 0x04, 0x01]),
        (Message::Control(Control::Reset), vec![0x01, 0x04, 0x02]),
        (
            Message::ExecRequest(ExecRequest {
                id: 0x0102_0304,
                command: "show failover".into(),
            }),
            [
                &[0x01, 0x10, 0x01, 0x02, 0x03, 0x04, 0x00, 0x0d][..],
                b"show failover",
            ]
            .concat(),
        ),
        (
            Message::ExecReply(ExecReply {
                id: 0x0102_0304,
                seq: 2,
                last: true,
                data: b"{}".to_vec(),
            }),
            vec![
                0x01, 0x11, 0x01, 0x02, 0x03, 0x04, 0x00, 0x02, 0x01, 0x00, 0x00, 0x02, b'{', b'}',
            ],
        ),
        (
            Message::ConfigChunk(ConfigChunk {
                generation: 5,
                seq: 0,
                last: false,
                data: b"[arp]".to_vec(),
            }),
            vec![
                0x01, 0x12, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, b'[', b'a',
                b'r', b'p', b']',
            ],
        ),
    ]
}

#[test]
fn exec_messages_refuse_bad_lengths_flags_and_text() {
    use tandem_ha::{MAX_EXEC_CHUNK, MAX_EXEC_COMMAND};
    // Request: announced length beyond the limit, short, long, invalid UTF-8.
    let mut too_long = vec![0x01, 0x10, 0, 0, 0, 1];
    too_long.extend_from_slice(&u16::try_from(MAX_EXEC_COMMAND + 1).unwrap().to_be_bytes());
    assert!(matches!(
        decode(&too_long),
        Err(DecodeError::TooLong {
            field: "command",
            ..
        })
    ));
    assert!(matches!(
        decode(&[0x01, 0x10, 0, 0, 0, 1, 0, 3, b'a']),
        Err(DecodeError::Truncated {
            need: 11,
            have: 9,
            ..
        })
    ));
    assert!(matches!(
        decode(&[0x01, 0x10, 0, 0, 0, 1, 0, 1, b'a', b'b']),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    assert!(matches!(
        decode(&[0x01, 0x10, 0, 0, 0, 1, 0, 2, b'a', 0xff]),
        Err(DecodeError::InvalidField {
            field: "command",
            value: 0xff,
            ..
        })
    ));
    // Reply: unknown flag, reserved byte, too long.
    assert!(matches!(
        decode(&[0x01, 0x11, 0, 0, 0, 1, 0, 0, 0x02, 0, 0, 0]),
        Err(DecodeError::InvalidField { field: "flags", .. })
    ));
    assert!(matches!(
        decode(&[0x01, 0x11, 0, 0, 0, 1, 0, 0, 0x01, 0x01, 0, 0]),
        Err(DecodeError::InvalidField {
            field: "reserved",
            ..
        })
    ));
    let mut big = vec![0x01, 0x11, 0, 0, 0, 1, 0, 0, 0, 0];
    big.extend_from_slice(&u16::try_from(MAX_EXEC_CHUNK + 1).unwrap().to_be_bytes());
    assert!(matches!(
        decode(&big),
        Err(DecodeError::TooLong { field: "data", .. })
    ));
    // Encoding refuses what decoding would.
    let m = Message::ExecReply(ExecReply {
        id: 1,
        seq: 0,
        last: true,
        data: vec![0; MAX_EXEC_CHUNK + 1],
    });
    assert!(matches!(encoded_len(&m), Err(EncodeError::TooLong { .. })));
    let m = Message::ExecRequest(ExecRequest {
        id: 1,
        command: "x".repeat(MAX_EXEC_COMMAND + 1),
    });
    assert!(matches!(encoded_len(&m), Err(EncodeError::TooLong { .. })));
}

#[test]
fn every_message_type_encodes_to_its_golden_bytes_and_back() {
    for (msg, bytes) in goldens() {
        let mut buf = [0u8; 128];
        let n = encode(&msg, &mut buf).expect("encodes");
        assert_eq!(&buf[..n], &bytes[..], "{msg:?}");
        assert_eq!(encoded_len(&msg), Ok(n));
        assert_eq!(decode(&bytes), Ok(msg.clone()));
        assert_eq!(peek(&bytes), Ok(MessageType::of(&msg)));
    }
}

#[test]
fn fixed_lengths_and_constants_are_the_documented_ones() {
    assert_eq!(VERSION, 1);
    assert_eq!(ETHERTYPE, 0x88b5);
    assert_eq!(MAX_INTERFACES, tandem_ha::MAX_MONITORED);
    assert_eq!(
        (
            HELLO_FIXED_LEN,
            LANTEST_LEN,
            INTERFACE_HELLO_LEN,
            CONTROL_LEN
        ),
        (24, 7, 4, 3)
    );
    assert_eq!(GOLDEN_HELLO.len(), 24 + 2 * 6 + 2 * 10);
}

// ---------------------------------------------------------------------------------------------
// Decode errors
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_version_and_type_are_named() {
    assert_eq!(
        decode(&[0x02, 0x01, 0x00]),
        Err(DecodeError::UnsupportedVersion(2))
    );
    assert_eq!(
        decode(&[0x00]),
        Err(DecodeError::Truncated {
            what: "message",
            need: 2,
            have: 1
        })
    );
    assert_eq!(
        decode(&[]),
        Err(DecodeError::Truncated {
            what: "message",
            need: 2,
            have: 0
        })
    );
    for t in [0u8, 5, 0x80, 0xff] {
        assert_eq!(decode(&[0x01, t, 0x01]), Err(DecodeError::UnknownType(t)));
    }
    let e = decode(&[0x07, 0x01]).unwrap_err().to_string();
    assert!(e.contains("version 7") && e.contains("version 1"), "{e}");
}

#[test]
fn trailing_and_missing_bytes_are_errors_for_every_type() {
    for (msg, bytes) in goldens() {
        let what = MessageType::of(&msg).name();
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode(&long),
            Err(DecodeError::TrailingBytes {
                what,
                len: bytes.len(),
                extra: 1
            }),
            "{msg:?}"
        );
        // Every proper prefix that still has the common header is truncated.
        for n in 2..bytes.len() {
            match decode(&bytes[..n]) {
                Err(DecodeError::Truncated { .. }) => {}
                other => panic!("{msg:?} cut to {n} bytes: {other:?}"),
            }
        }
    }
}

#[test]
fn invalid_field_values_are_refused_with_the_field_name() {
    let field = |offset: usize, value: u8| {
        let mut b = GOLDEN_HELLO.to_vec();
        b[offset] = value;
        decode(&b)
    };
    let invalid = |field: &'static str, value: u8| {
        Err(DecodeError::InvalidField {
            what: "hello",
            field,
            value,
        })
    };
    assert_eq!(field(2, 0), invalid("role", 0));
    assert_eq!(field(2, 3), invalid("role", 3));
    assert_eq!(field(3, 7), invalid("state", 7));
    assert_eq!(field(4, 0x03), invalid("flags", 0x03));
    assert_eq!(field(5, 0x01), invalid("reserved", 0x01));
    // Report 0 starts at 24 + 12 = 36; report 1 at 46.
    assert_eq!(
        field(46, 0),
        Err(DecodeError::InvalidReport {
            iface: 1,
            field: "status",
            value: 0
        })
    );
    assert_eq!(
        field(37, 0x04),
        Err(DecodeError::InvalidReport {
            iface: 0,
            field: "flags",
            value: 4
        })
    );
    // An absent rx_age must be zero (canonical encoding).
    assert_eq!(
        field(55, 0x01),
        Err(DecodeError::InvalidReport {
            iface: 1,
            field: "rx_age_ns",
            value: 1
        })
    );
    assert_eq!(
        decode(&[0x01, 0x02, 0x03, 0, 0, 0, 0]),
        Err(DecodeError::InvalidField {
            what: "LANTEST",
            field: "kind",
            value: 3
        })
    );
    assert_eq!(
        decode(&[0x01, 0x04, 0x00]),
        Err(DecodeError::InvalidField {
            what: "control message",
            field: "command",
            value: 0
        })
    );
    let e = field(46, 9).unwrap_err().to_string();
    assert!(
        e.contains("interface report 1") && e.contains("status"),
        "{e}"
    );
}

fn hello_with(n_macs: usize, n_reports: usize) -> Message {
    Message::Hello(Hello {
        role: Role::Primary,
        state: State::Active,
        failover_enabled: true,
        term: 3,
        failover_mac: Mac([2, 0, 0, 0, 0, 1]),
        macs: vec![Mac([2, 0, 0, 0, 1, 1]); n_macs],
        interfaces: vec![
            InterfaceReport {
                status: InterfaceStatus::Normal,
                counts_failed: false,
                rx_age: Some(Duration::from_millis(1)),
            };
            n_reports
        ],
    })
}

#[test]
fn interface_counts_are_limited_to_the_monitored_interface_limit() {
    let mut buf = vec![0u8; MAX_ENCODED_LEN + 64];
    // At the limit: fine, and exactly MAX_ENCODED_LEN bytes.
    let full = hello_with(MAX_INTERFACES, MAX_INTERFACES);
    let n = encode(&full, &mut buf).expect("1025 interfaces encode");
    assert_eq!(n, MAX_ENCODED_LEN);
    assert_eq!(decode(&buf[..n]), Ok(full));
    // One more: refused on both sides, naming the list.
    for (m, r, field) in [
        (MAX_INTERFACES + 1, 0, "interface MACs"),
        (0, MAX_INTERFACES + 1, "interface reports"),
    ] {
        let want = EncodeError::TooManyInterfaces {
            field,
            count: MAX_INTERFACES + 1,
            max: MAX_INTERFACES,
        };
        assert_eq!(encode(&hello_with(m, r), &mut buf), Err(want));
        assert_eq!(encoded_len(&hello_with(m, r)), Err(want));
    }
    // A received count above the limit is refused before the length is looked at (no
    // allocation for a bogus count), whatever follows.
    let mut b = GOLDEN_HELLO.to_vec();
    b[20..22].copy_from_slice(&1026u16.to_be_bytes());
    assert_eq!(
        decode(&b),
        Err(DecodeError::TooManyInterfaces {
            field: "interface MACs",
            count: 1026,
            max: MAX_INTERFACES
        })
    );
    b[20..22].copy_from_slice(&[0, 2]);
    b[22..24].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(
        decode(&b),
        Err(DecodeError::TooManyInterfaces {
            field: "interface reports",
            count: 65535,
            max: MAX_INTERFACES
        })
    );
    // A count within the limit but without the bytes behind it is truncated.
    b[22..24].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(
        decode(&b),
        Err(DecodeError::Truncated {
            what: "hello",
            need: 24 + 12 + 30,
            have: GOLDEN_HELLO.len()
        })
    );
}

#[test]
fn rx_age_beyond_u64_nanoseconds_saturates() {
    let Message::Hello(mut h) = hello_with(0, 1) else {
        unreachable!()
    };
    h.interfaces[0].rx_age = Some(Duration::MAX);
    let mut buf = [0u8; 64];
    let n = encode(&Message::Hello(h.clone()), &mut buf).unwrap();
    let Ok(Message::Hello(back)) = decode(&buf[..n]) else {
        panic!("saturated hello must decode")
    };
    assert_eq!(
        back.interfaces[0].rx_age,
        Some(Duration::from_nanos(u64::MAX))
    );
}

// ---------------------------------------------------------------------------------------------
// Short buffers
// ---------------------------------------------------------------------------------------------

#[test]
fn encode_into_every_too_small_buffer_errors_and_writes_nothing() {
    for (msg, bytes) in goldens() {
        for n in 0..bytes.len() {
            let mut buf = vec![0xa5u8; n];
            assert_eq!(
                encode(&msg, &mut buf),
                Err(EncodeError::BufferTooSmall {
                    what: MessageType::of(&msg).name(),
                    need: bytes.len(),
                    have: n
                })
            );
            assert!(buf.iter().all(|&b| b == 0xa5), "{msg:?} into {n} bytes");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Primary), Just(Role::Secondary)]
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Disabled),
        Just(State::Negotiation),
        Just(State::Active),
        Just(State::StandbyReady),
        Just(State::Failed),
        Just(State::PseudoStandby),
    ]
}

fn status() -> impl Strategy<Value = InterfaceStatus> {
    prop_oneof![
        Just(InterfaceStatus::Unknown),
        Just(InterfaceStatus::Normal),
        Just(InterfaceStatus::Testing),
        Just(InterfaceStatus::LinkDown),
        Just(InterfaceStatus::NoLink),
        Just(InterfaceStatus::Failed),
    ]
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

/// Every `rx_age` a unit can report: a difference of two nanosecond timestamps.
fn report() -> impl Strategy<Value = InterfaceReport> {
    (
        status(),
        any::<bool>(),
        proptest::option::of(any::<u64>().prop_map(Duration::from_nanos)),
    )
        .prop_map(|(status, counts_failed, rx_age)| InterfaceReport {
            status,
            counts_failed,
            rx_age,
        })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        role(),
        state(),
        any::<bool>(),
        any::<u64>(),
        mac(),
        // Usually as many MACs as reports (what a unit sends), but the lists are independent on
        // the wire.
        prop_oneof![
            3 => (0usize..40).prop_flat_map(|n| (
                proptest::collection::vec(mac(), n),
                proptest::collection::vec(report(), n)
            )),
            1 => (
                proptest::collection::vec(mac(), 0..40),
                proptest::collection::vec(report(), 0..40)
            ),
        ],
    )
        .prop_map(
            |(role, state, failover_enabled, term, failover_mac, (macs, interfaces))| Hello {
                role,
                state,
                failover_enabled,
                term,
                failover_mac,
                macs,
                interfaces,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        (
            prop_oneof![Just(LanTestKind::Request), Just(LanTestKind::Reply)],
            any::<u32>()
        )
            .prop_map(|(kind, nonce)| Message::LanTest(LanTest { kind, nonce })),
        any::<u16>().prop_map(|i| Message::InterfaceHello(InterfaceHello { iface: IfIndex(i) })),
        prop_oneof![Just(Control::TakeOver), Just(Control::Reset)].prop_map(Message::Control),
        (any::<u32>(), "[ -~]{0,64}")
            .prop_map(|(id, command)| Message::ExecRequest(ExecRequest { id, command })),
        (
            any::<u32>(),
            any::<u16>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, seq, last, data)| Message::ExecReply(ExecReply {
                id,
                seq,
                last,
                data
            })),
        (
            any::<u32>(),
            any::<u16>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(
                |(generation, seq, last, data)| Message::ConfigChunk(ConfigChunk {
                    generation,
                    seq,
                    last,
                    data
                })
            ),
    ]
}

fn encoded(msg: &Message) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_ENCODED_LEN];
    let n = encode(msg, &mut buf).expect("valid message encodes");
    buf.truncate(n);
    buf
}

/// What every decoder run must satisfy: no panic (the harness catches it), and anything accepted
/// is canonical — re-encoding gives back exactly the input.
fn check_decode(bytes: &[u8]) {
    if let Ok(m) = decode(bytes) {
        assert_eq!(
            encoded(&m),
            bytes,
            "accepted bytes are not canonical: {m:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_message_round_trips(msg in message()) {
        let bytes = encoded(&msg);
        prop_assert_eq!(encoded_len(&msg), Ok(bytes.len()));
        prop_assert_eq!(peek(&bytes), Ok(MessageType::of(&msg)));
        prop_assert_eq!(decode(&bytes), Ok(msg));
    }

    #[test]
    fn encode_into_a_short_buffer_errors(msg in message(), cut in any::<prop::sample::Index>()) {
        let need = encoded_len(&msg).unwrap();
        let n = cut.index(need);
        let mut buf = vec![0u8; n];
        let is_too_small = matches!(
            encode(&msg, &mut buf),
            Err(EncodeError::BufferTooSmall { need: x, have: y, .. }) if x == need && y == n
        );
        prop_assert!(is_too_small);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_decode(&bytes);
    }

    #[test]
    fn decode_never_panics_behind_a_valid_header(
        ty in 0u8..6,
        body in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![VERSION, ty];
        bytes.extend_from_slice(&body);
        check_decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_encodings(
        msg in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut bytes = encoded(&msg);
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len() + 1));
        }
        bytes.extend_from_slice(&extra);
        check_decode(&bytes);
    }
}

#[test]
fn every_single_bit_flip_of_every_golden_is_refused_or_canonical() {
    for (_, bytes) in goldens() {
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                check_decode(&b);
            }
        }
    }
}

/// Regenerates `fuzz/seeds/codec/` from the golden messages (run after a format change):
/// `cargo test -p tandem-ha --test codec -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand after a format change"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/codec");
    std::fs::create_dir_all(&dir).unwrap();
    let names = [
        "hello",
        "hello-empty",
        "lantest-request",
        "lantest-reply",
        "interface-hello",
        "control-takeover",
        "control-reset",
    ];
    for ((_, bytes), name) in goldens().into_iter().zip(names) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let mut big = vec![0u8; MAX_ENCODED_LEN];
    let n = encode(&hello_with(8, 8), &mut big).unwrap();
    std::fs::write(dir.join("hello-8-interfaces"), &big[..n]).unwrap();
}
