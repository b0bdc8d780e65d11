//! The codec fuzz driver, shared by the `codec` fuzz target and `tests/codec_fuzz_seeds.rs` (which
//! runs it on stable over the seed corpus): decoding never panics, peek agrees with decode, and
//! whatever is accepted re-encodes to exactly the input (canonical encoding), refuses a buffer one
//! byte short without writing to it.

use tandem_ha::codec::{decode, encode, encoded_len, peek, EncodeError, MessageType};

/// Runs every check on one input; panics (the fuzzer's crash signal) on a violated property.
pub fn all(data: &[u8]) {
    let peeked = peek(data);
    let decoded = decode(data);
    match decoded {
        Ok(msg) => {
            assert_eq!(
                peeked,
                Ok(MessageType::of(&msg)),
                "peek disagrees with decode"
            );
            let n = encoded_len(&msg).expect("a decoded message is encodable");
            assert_eq!(
                n,
                data.len(),
                "encoded_len differs from the accepted input's length"
            );
            let mut buf = vec![0u8; n];
            assert_eq!(encode(&msg, &mut buf), Ok(n));
            assert_eq!(&buf[..], data, "accepted input is not canonical");
            let mut short = vec![0x5au8; n - 1];
            assert!(matches!(
                encode(&msg, &mut short),
                Err(EncodeError::BufferTooSmall { need, have, .. }) if need == n && have == n - 1
            ));
            assert!(
                short.iter().all(|&b| b == 0x5a),
                "a refused encode wrote bytes"
            );
        }
        Err(e) => {
            // A header error is the decoder's error too; the error always renders.
            if let Err(p) = peeked {
                assert_eq!(e, p, "decode and peek disagree on a bad header");
            }
            let _ = e.to_string();
        }
    }
}
