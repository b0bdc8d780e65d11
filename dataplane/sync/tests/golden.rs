//! Golden bytes of every frame type, exactly as `docs/state-link-protocol.md` tabulates them.
//! A change here is a wire-format change: bump `wire::VERSION`.

use tandem_sync::wire::{
    emit_control, emit_sequenced, stamp, BulkReason, Control, Frame, FrameType, ALL_STREAMS,
};
use tandem_sync::{FrameEncoder, Put, SyncBuf};

const EPOCH: u32 = 0x0102_0304;

#[rustfmt::skip]
const DATA: [u8; 56] = [
    0x54, 0x53, 0x01, 0x01, 0x01, 0x02, 0x03, 0x04, // magic "TS", version 1, type data, epoch
    0x00, 0x05, 0x01, 0x00, 0x0a, 0x0b, 0x0c, 0x0d, // stream 5, flags BULK, reserved, seq
    0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, // count 2, body_len 32, arg 0
    0x01, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, // record: kind 1, op 1, len 3, reserved
    0x61, 0x62, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, //   "abc" + 5 bytes padding
    0x02, 0x02, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, // record: kind 2, op 2, len 8, reserved
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, //   payload
];

#[rustfmt::skip]
const ACK: [u8; 24] = [
    0x54, 0x53, 0x01, 0x08, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // stream 5, next expected 7
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

#[rustfmt::skip]
const NAK: [u8; 24] = [
    0x54, 0x53, 0x01, 0x09, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // stream 5, first missing 7
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, // 3 frames not delivered
];

#[rustfmt::skip]
const BULK_REQUEST: [u8; 24] = [
    0x54, 0x53, 0x01, 0x0a, 0x00, 0x00, 0x00, 0x00, // epoch 0: none known yet
    0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // all streams
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // reason 1: join
];

#[rustfmt::skip]
const BULK_BEGIN: [u8; 24] = [
    0x54, 0x53, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // stream 5, seq 9
    0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42, 0x40, // 1 000 000 entries
];

#[rustfmt::skip]
const BULK_END: [u8; 24] = [
    0x54, 0x53, 0x01, 0x03, 0x01, 0x02, 0x03, 0x04,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, // stream 5, seq 10
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe7, // 999 records
];

fn data_frame() -> Vec<u8> {
    let mut enc = FrameEncoder::new(5, 1464).unwrap();
    let _ = enc.begin(SyncBuf::with_capacity(1464), true);
    assert_eq!(enc.put(0, 1, 1, 100, b"abc"), Put::Written);
    assert_eq!(
        enc.put(
            0,
            2,
            2,
            100,
            &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        ),
        Put::Written
    );
    let mut buf = enc.finish().unwrap();
    stamp(buf.as_bytes_mut(), EPOCH, 0x0a0b_0c0d);
    buf.as_bytes().to_vec()
}

fn control(epoch: u32, c: Control) -> Vec<u8> {
    let mut out = [0u8; 24];
    let n = emit_control(epoch, &c, &mut out).unwrap();
    out[..n].to_vec()
}

fn sequenced(ty: FrameType, seq: u32, arg: u32) -> Vec<u8> {
    let mut out = [0u8; 24];
    let n = emit_sequenced(ty, EPOCH, 5, seq, arg, &mut out).unwrap();
    out[..n].to_vec()
}

fn all_golden() -> Vec<(&'static str, Vec<u8>, &'static [u8])> {
    vec![
        ("data-bulk", data_frame(), &DATA),
        (
            "ack",
            control(EPOCH, Control::Ack { stream: 5, next: 7 }),
            &ACK,
        ),
        (
            "nak",
            control(
                EPOCH,
                Control::Nak {
                    stream: 5,
                    first: 7,
                    count: 3,
                },
            ),
            &NAK,
        ),
        (
            "bulk-request-all",
            control(
                0,
                Control::BulkRequest {
                    stream: ALL_STREAMS,
                    reason: BulkReason::Join,
                },
            ),
            &BULK_REQUEST,
        ),
        (
            "bulk-begin",
            sequenced(FrameType::BulkBegin, 9, 1_000_000),
            &BULK_BEGIN,
        ),
        (
            "bulk-end",
            sequenced(FrameType::BulkEnd, 10, 999),
            &BULK_END,
        ),
    ]
}

#[test]
fn every_frame_type_encodes_to_its_golden_bytes() {
    for (name, got, want) in all_golden() {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn golden_frames_parse_back() {
    let Frame::Data {
        epoch,
        stream,
        seq,
        bulk,
        records,
    } = Frame::parse(&DATA).unwrap()
    else {
        panic!()
    };
    assert_eq!((epoch, stream, seq, bulk), (EPOCH, 5, 0x0a0b_0c0d, true));
    let r: Vec<_> = records
        .map(|r| (r.kind, r.op, r.payload.to_vec()))
        .collect();
    assert_eq!(
        r,
        [
            (1, 1, b"abc".to_vec()),
            (2, 2, vec![0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        ]
    );
    assert!(matches!(
        Frame::parse(&NAK).unwrap(),
        Frame::Control {
            epoch: EPOCH,
            control: Control::Nak {
                stream: 5,
                first: 7,
                count: 3
            }
        }
    ));
    assert!(matches!(
        Frame::parse(&BULK_BEGIN).unwrap(),
        Frame::BulkBegin {
            epoch: EPOCH,
            stream: 5,
            seq: 9,
            total: 1_000_000
        }
    ));
}

#[test]
fn malformed_frames_are_refused_with_a_reason() {
    use tandem_sync::wire::DecodeError::*;
    let e = |b: &[u8]| Frame::parse(b).unwrap_err();
    assert!(matches!(e(&DATA[..23]), Truncated { need: 24, have: 23 }));
    assert!(matches!(e(&DATA[..50]), Truncated { need: 56, have: 50 }));
    let mut long = DATA.to_vec();
    long.push(0);
    assert!(matches!(e(&long), TrailingBytes { len: 56, extra: 1 }));
    let mut b = DATA;
    b[0] = 0;
    assert!(matches!(e(&b), BadMagic(0x0053)));
    let mut b = DATA;
    b[2] = 2;
    assert!(matches!(e(&b), UnsupportedVersion(2)));
    let mut b = DATA;
    b[3] = 77;
    assert!(matches!(e(&b), UnknownType(77)));
    let mut b = DATA;
    b[36] = 1; // padding byte of record 0
    assert!(matches!(e(&b), BadRecord { index: 0, .. }));
    let mut b = DATA;
    b[27] = 40; // record 0 claims 40 payload bytes
    assert!(matches!(e(&b), BadRecord { .. }));
    let mut b = DATA;
    b[17] = 3; // count 3, two present
    assert!(matches!(e(&b), BadRecord { index: 2, .. }));
    let mut b = DATA;
    b[4..8].fill(0); // a sender's epoch is never 0
    assert!(matches!(e(&b), InvalidField { field: "epoch", .. }));
    let mut b = NAK;
    b[23] = 0; // NAK of 0 frames
    assert!(matches!(e(&b), InvalidField { field: "arg", .. }));
    let msg = e(&DATA[..10]).to_string();
    assert_eq!(msg, "state-link frame truncated: needs 24 bytes, got 10");
}

/// Regenerates the fuzz seeds: `cargo test -p tandem-sync --test golden -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/frame");
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes, _) in all_golden() {
        std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
    }
}
