//! Sequence-number arithmetic (RFC 1982 serial numbers over `u32`): comparisons that stay right
//! when a stream's sequence number wraps.

/// `a` comes before `b`.
pub(crate) fn serial_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes before `b` or is `b`.
pub(crate) fn serial_le(a: u32, b: u32) -> bool {
    a == b || serial_lt(a, b)
}

/// `b - a` as a signed distance (positive when `b` is ahead).
pub(crate) fn serial_diff(a: u32, b: u32) -> i32 {
    b.wrapping_sub(a) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert!(serial_lt(u32::MAX, 0));
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 2));
        assert!(serial_le(2, 2));
        assert_eq!(serial_diff(u32::MAX, 1), 2);
        assert_eq!(serial_diff(1, u32::MAX), -2);
    }
}
