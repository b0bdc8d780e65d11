//! The frame fuzz driver, shared by the `frame` fuzz target and `tests/fuzz_seeds.rs` (which runs
//! it on stable over the seed corpus and mutations of it): parsing never panics, an accepted frame
//! re-encodes to exactly the input (canonical encoding), and the sender and receiver survive it.

use tandem_sync::wire::{emit_control, emit_sequenced, stamp, Frame, FrameType, HEADER_LEN};
use tandem_sync::{
    Delivery, FrameEncoder, Put, Receiver, ReceiverConfig, Sender, SenderConfig, SyncBuf,
};

/// Runs every check on one input; panics (the fuzzer's crash signal) on a violated property.
pub fn all(data: &[u8]) {
    if let Ok(frame) = Frame::parse(data) {
        let mut out = vec![0u8; data.len().max(HEADER_LEN)];
        match frame {
            Frame::Data {
                epoch,
                stream,
                seq,
                bulk,
                records,
            } => {
                let size = data.len().max(tandem_sync::wire::MIN_FRAME_LEN);
                let mut enc = FrameEncoder::new(stream, size).expect("valid frame size");
                let _ = enc.begin(SyncBuf::with_capacity(size), bulk);
                for (i, r) in records.enumerate() {
                    // Distinct keys: nothing coalesces, so the frame is rebuilt record by record.
                    let put = enc.put(0, r.kind, r.op, i as u64, r.payload);
                    assert_eq!(put, Put::Written, "an accepted record does not re-encode");
                }
                let mut buf = enc.finish().expect("an accepted data frame has records");
                stamp(buf.as_bytes_mut(), epoch, seq);
                assert_eq!(buf.as_bytes(), data, "accepted data frame is not canonical");
            }
            Frame::BulkBegin {
                epoch,
                stream,
                seq,
                total,
            } => {
                let n = emit_sequenced(FrameType::BulkBegin, epoch, stream, seq, total, &mut out)
                    .unwrap();
                assert_eq!(&out[..n], data);
            }
            Frame::BulkEnd {
                epoch,
                stream,
                seq,
                sent,
            } => {
                let n =
                    emit_sequenced(FrameType::BulkEnd, epoch, stream, seq, sent, &mut out).unwrap();
                assert_eq!(&out[..n], data);
            }
            Frame::Control { epoch, control } => {
                let n = emit_control(epoch, &control, &mut out).unwrap();
                assert_eq!(&out[..n], data);
            }
        }
    }
    // Both state machines take anything without panicking.
    let mut rx = Receiver::new(ReceiverConfig::new(4)).unwrap();
    let mut delivered = 0usize;
    if let Delivery::Records { records, .. } = rx.handle_frame(0, data) {
        delivered += records.count();
    }
    let _ = delivered;
    let mut ctl = [0u8; 64];
    while rx.poll_control(1, &mut ctl).is_some() {}
    let mut tx = Sender::new(SenderConfig::new(1, 4)).unwrap();
    let _ = tx.handle_control(0, data);
    while tx.poll_retransmit(u64::MAX / 2).is_some() {}
}
