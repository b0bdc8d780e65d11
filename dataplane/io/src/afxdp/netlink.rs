//! Just enough rtnetlink for XDP housekeeping: read a link's attached XDP
//! programs and queue count (`RTM_GETLINK`), and set or clear a
//! netlink-attached program (`RTM_SETLINK` with `IFLA_XDP`). A raw
//! `NETLINK_ROUTE` socket, one request, one reply; the parser is pure and
//! never panics on what the kernel sends.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::sys;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLA_HDR: usize = 4;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_MTU: u16 = 4;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;

/// XDP programs attached to a link, by mode (0 = none), however attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpProgs {
    pub drv: u32,
    pub skb: u32,
    pub hw: u32,
}

/// What tandem needs to know about a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// `dev->num_rx_queues`: RX queues allocated (the most a driver can enable).
    pub num_rx_queues: Option<u32>,
    pub mtu: Option<u32>,
    pub xdp: XdpProgs,
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = NLA_HDR + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(align4(buf.len()), 0);
}

/// An `ifinfomsg` request for `ifindex` with the given attributes bytes.
fn link_request(ty: u16, flags: u16, seq: u32, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + IFINFOMSG + attrs.len());
    let len = (NLMSG_HDR + IFINFOMSG + attrs.len()) as u32;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills ours
    m.push(libc::AF_UNSPEC as u8); // ifi_family
    m.push(0); // pad
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
    m.extend_from_slice(attrs);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterate `(type, payload)` over a run of netlink attributes, stopping at
/// the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let ty = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < NLA_HDR || len > b.len() {
            return None;
        }
        let payload = &b[NLA_HDR..len];
        b = b.get(align4(len)..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

/// What one reply datagram said.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Link(LinkInfo),
    /// `NLMSG_ERROR` with errno (0 is an ACK).
    Ack(i32),
    /// Nothing for our sequence number in this datagram.
    Other,
}

fn parse_reply(buf: &[u8], seq: u32) -> Reply {
    let mut off = 0;
    while let (Some(len), Some(ty), Some(mseq)) =
        (u32_at(buf, off), u16_at(buf, off + 4), u32_at(buf, off + 8))
    {
        let len = len as usize;
        if len < NLMSG_HDR || off + len > buf.len() {
            break;
        }
        let body = &buf[off + NLMSG_HDR..off + len];
        if mseq == seq {
            match ty {
                NLMSG_ERROR => {
                    let err = u32_at(body, 0).map_or(libc::EPROTO, |e| (e as i32).wrapping_neg());
                    return Reply::Ack(err);
                }
                RTM_NEWLINK => return Reply::Link(parse_link(body)),
                NLMSG_DONE => return Reply::Ack(0),
                _ => {}
            }
        }
        off += align4(len);
    }
    Reply::Other
}

fn parse_link(body: &[u8]) -> LinkInfo {
    let mut info = LinkInfo::default();
    let Some(attr_bytes) = body.get(IFINFOMSG..) else {
        return info;
    };
    for (ty, payload) in attrs(attr_bytes) {
        match ty {
            IFLA_NUM_RX_QUEUES => info.num_rx_queues = u32_at(payload, 0),
            IFLA_MTU => info.mtu = u32_at(payload, 0),
            IFLA_XDP => {
                for (xty, xp) in attrs(payload) {
                    let id = u32_at(xp, 0).unwrap_or(0);
                    match xty {
                        IFLA_XDP_DRV_PROG_ID => info.xdp.drv = id,
                        IFLA_XDP_SKB_PROG_ID => info.xdp.skb = id,
                        IFLA_XDP_HW_PROG_ID => info.xdp.hw = id,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// One request on a fresh socket in the calling thread's namespace, and the
/// reply to it.
fn transact(req: &[u8], seq: u32) -> io::Result<Reply> {
    let sock: OwnedFd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let fd = sock.as_raw_fd();
    // SAFETY: sockaddr_nl is plain integers; all-zero is a valid value.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `kernel` are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: a reply for our sequence number comes in the first datagram
    // or two; anything else (none expected on a fresh socket) is skipped.
    for _ in 0..8 {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        match parse_reply(&buf[..n as usize], seq) {
            Reply::Other => continue,
            r => return Ok(r),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no rtnetlink reply for our request",
    ))
}

fn next_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Queue count and XDP programs of link `ifindex`.
pub fn get_link(ifindex: u32) -> io::Result<LinkInfo> {
    let seq = next_seq();
    let req = link_request(RTM_GETLINK, NLM_F_REQUEST, seq, ifindex, &[]);
    match transact(&req, seq)? {
        Reply::Link(info) => Ok(info),
        Reply::Ack(0) | Reply::Other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_GETLINK reply carried no link",
        )),
        Reply::Ack(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Attach program `prog_fd` (or detach with -1) through netlink in the mode
/// of `xdp_flags`. A netlink attachment outlives the process, unlike a BPF
/// link; tandem only uses this to remove stale ones (and tests to make one).
pub fn set_xdp_fd(ifindex: u32, prog_fd: i32, xdp_flags: u32) -> io::Result<()> {
    let seq = next_seq();
    let mut nested = Vec::new();
    put_attr(&mut nested, IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    put_attr(&mut nested, IFLA_XDP_FLAGS, &xdp_flags.to_ne_bytes());
    let mut attrs = Vec::new();
    put_attr(&mut attrs, IFLA_XDP | NLA_F_NESTED, &nested);
    let req = link_request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifindex, &attrs);
    match transact(&req, seq)? {
        Reply::Ack(0) => Ok(()),
        Reply::Ack(e) => Err(io::Error::from_raw_os_error(e)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "RTM_SETLINK was not acknowledged",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn newlink(seq: u32, attrs: &[u8]) -> Vec<u8> {
        link_request(RTM_NEWLINK, 0, seq, 3, attrs)
    }

    #[test]
    fn parses_queue_count_and_per_mode_program_ids() {
        let mut xdp = Vec::new();
        put_attr(&mut xdp, 2, &[4]); // IFLA_XDP_ATTACHED = MULTI
        put_attr(&mut xdp, IFLA_XDP_SKB_PROG_ID, &41u32.to_ne_bytes());
        put_attr(&mut xdp, IFLA_XDP_DRV_PROG_ID, &42u32.to_ne_bytes());
        let mut a = Vec::new();
        put_attr(&mut a, 3, b"veth0\0"); // IFLA_IFNAME, odd length: padded
        put_attr(&mut a, IFLA_NUM_RX_QUEUES, &2u32.to_ne_bytes());
        put_attr(&mut a, IFLA_MTU, &1500u32.to_ne_bytes());
        put_attr(&mut a, IFLA_XDP | NLA_F_NESTED, &xdp);
        let msg = newlink(9, &a);
        assert_eq!(
            parse_reply(&msg, 9),
            Reply::Link(LinkInfo {
                num_rx_queues: Some(2),
                mtu: Some(1500),
                xdp: XdpProgs {
                    drv: 42,
                    skb: 41,
                    hw: 0
                }
            })
        );
        assert_eq!(parse_reply(&msg, 10), Reply::Other);
    }

    #[test]
    fn error_message_carries_negative_errno() {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&5u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        assert_eq!(parse_reply(&m, 5), Reply::Ack(libc::EBUSY));
    }

    #[test]
    fn set_request_layout() {
        let mut nested = Vec::new();
        put_attr(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        assert_eq!(nested.len(), 8);
        let req = link_request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 7, &nested);
        assert_eq!(req.len(), 40);
        assert_eq!(u32_at(&req, 0), Some(40));
        assert_eq!(u32_at(&req, 20), Some(7));
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), seq in 0u32..4) {
            let _ = parse_reply(&bytes, seq);
            let _ = parse_link(&bytes);
        }
    }
}
