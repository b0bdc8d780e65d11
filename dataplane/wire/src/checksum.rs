//! The internet checksum: RFC 1071 ones' complement sums over byte slices, the IPv4 pseudo-header
//! for UDP/TCP, and RFC 1624 incremental updates for header rewrites (TTL decrement, NAT).
//!
//! Vocabulary: a *sum* is the folded 16-bit ones' complement sum of the data; the *checksum* that
//! goes on the wire is its complement, `!sum`. Sums combine with [`combine`], so a checksum over
//! pseudo-header + header + payload is `!combine(&[pseudo, sum(header), sum(payload)])` provided
//! every part but the last has even length (true for all the headers here).

use core::net::Ipv4Addr;

/// Folds a wide accumulator into 16 bits with end-around carry.
#[inline]
const fn fold(mut acc: u64) -> u16 {
    // Two folds of a u64 can leave a carry; loop until it fits (at most four rounds).
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The ones' complement sum of `data` read as big-endian 16-bit words, an odd final byte padded
/// with zero (RFC 1071 section 4.1).
///
/// The loop reads 32-bit words into a 64-bit accumulator: since 2^16 ≡ 1 (mod 2^16 - 1), the
/// ones' complement sum of 32-bit words folded to 16 bits equals the sum of the 16-bit words
/// (RFC 1071 section 2(B), "parallel summation"), and 2^32 words cannot overflow the accumulator.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// Ones' complement addition of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum to put on the wire for `data` (`!sum(data)`).
///
/// A header whose checksum field holds this value sums to `0xffff`, which is what
/// [`verify`] tests.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// True when `data`, checksum field included, sums to `0xffff` (RFC 1071 section 1(3)).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// The sum of the IPv4 pseudo-header used by UDP and TCP (RFC 768, RFC 9293 section 3.1):
/// source, destination, zero, protocol, and the L4 length (header + payload).
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    fold(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(protocol)
            + u64::from(l4_len),
    )
}

/// RFC 1624 incremental update: the new checksum after one 16-bit word of the covered data changes
/// from `old` to `new`, without touching the rest of the data.
///
/// Uses equation 3, `HC' = ~(~HC + ~m + m')`, which (unlike RFC 1141's equation) never produces
/// the `0x0000`/`0xffff` error the RFC describes. It matches a full recompute for any data that is
/// not all zeros after the update (an all-zero IPv4/TCP/UDP header cannot occur).
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!csum) + u64::from(!old) + u64::from(new))
}

/// [`update_u16`] for a 32-bit field (an IPv4 address, a TCP sequence number) aligned on a 16-bit
/// boundary of the covered data.
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let (oh, ol) = ((old >> 16) as u16, old as u16);
    let (nh, nl) = ((new >> 16) as u16, new as u16);
    !fold(u64::from(!csum) + u64::from(!oh) + u64::from(!ol) + u64::from(nh) + u64::from(nl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the textbook 16-bit loop from RFC 1071 section 4.1.
    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            acc += word;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn golden_ipv4_header_checksum() {
        // A captured IPv4 header (Wikipedia's "IPv4 header checksum" example): checksum b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&hdr));
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    proptest! {
        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            // The 32-bit loop and the 16-bit loop agree up to the ±0 representation, which only
            // differs for inputs whose sum is 0 in ones' complement; both fold identically here.
            prop_assert_eq!(sum(&data), naive_sum(&data));
        }

        #[test]
        fn combine_is_concatenation(a in proptest::collection::vec(any::<u8>(), 0..64),
                                    b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut a = a;
            if a.len() % 2 == 1 { a.pop(); }
            let mut ab = a.clone();
            ab.extend_from_slice(&b);
            prop_assert_eq!(combine(&[sum(&a), sum(&b)]), sum(&ab));
        }

        #[test]
        fn update_u16_equals_full_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 2..128),
            word in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = word.index(data.len() / 2) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            // RFC 1624 equation 3 is exact except when the updated data is all zeros, whose
            // ones' complement sum has two representations.
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update_u16(before, old, new), checksum(&data));
        }

        #[test]
        fn update_u32_equals_full_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..128),
            word in any::<prop::sample::Index>(),
            new in any::<u32>(),
        ) {
            if data.len() % 2 == 1 { data.pop(); }
            let i = word.index(data.len() / 2 - 1) * 2;
            let before = checksum(&data);
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            data[i..i + 4].copy_from_slice(&new.to_be_bytes());
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update_u32(before, old, new), checksum(&data));
        }

        #[test]
        fn pseudo_header_matches_bytes(src in any::<u32>(), dst in any::<u32>(), proto in any::<u8>(), len in any::<u16>()) {
            let mut b = [0u8; 12];
            b[0..4].copy_from_slice(&src.to_be_bytes());
            b[4..8].copy_from_slice(&dst.to_be_bytes());
            b[9] = proto;
            b[10..12].copy_from_slice(&len.to_be_bytes());
            prop_assert_eq!(
                pseudo_header_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst), proto, len),
                sum(&b)
            );
        }
    }
}
