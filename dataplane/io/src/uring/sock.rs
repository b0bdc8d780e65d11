//! AF_PACKET socket setup for the io_uring backend: one raw socket per
//! interface, bound to its ifindex, with the options that make it usable as
//! a data-path port (see packet(7)).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::OpenError;

/// Receive buffer asked for with SO_RCVBUFFORCE. PLATFORM.md: the default
/// (~200 KiB) drops most frames at a few hundred kpps; 16 MiB did not.
pub(crate) const RCVBUF: i32 = 16 << 20;
/// Send buffer: the in-flight sends of a full budget (1024 × ~2.3 KiB of
/// skb truesize) exceed the default 208 KiB, which would make every batch
/// beyond it wait for poll re-arming in the kernel.
const SNDBUF: i32 = 4 << 20;

// include/uapi/linux/if_packet.h
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_STATISTICS: i32 = 6;
const PACKET_FANOUT: i32 = 18;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_MR_PROMISC: u16 = 1;
const ETH_P_ALL: u16 = 0x0003;

/// An open port socket and what we learnt about its interface.
pub(crate) struct PortSocket {
    pub(crate) fd: OwnedFd,
    pub(crate) ifindex: u32,
    pub(crate) mtu: u32,
    /// Fanout group id this socket joined, if any.
    pub(crate) fanout_id: Option<u16>,
}

/// The PACKET_FANOUT group id used on an interface for a backend's
/// `fanout_group`. Linux ties a fanout group to one device (fanout_add
/// refuses to join a group bound to another interface), so each interface
/// gets its own id, derived from the ifindex so that every worker opening
/// the same interfaces, in any order, lands in the same group.
pub fn fanout_id(group: u16, ifindex: u32) -> u16 {
    group.wrapping_add(ifindex as u16)
}

fn os(ifname: &str, what: &'static str) -> OpenError {
    OpenError::os(ifname, what, io::Error::last_os_error())
}

pub(crate) fn setsockopt<T>(fd: RawFd, level: i32, name: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live, initialised T and the length passed is its
    // exact size, so the kernel reads only memory we own.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ifreq_for(ifname: &str) -> Result<libc::ifreq, OpenError> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(OpenError::Config(format!(
            "interface name {ifname:?} is not a valid Linux interface name"
        )));
    }
    // SAFETY: ifreq is plain old data (a name and a union of integers and
    // pointers); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// Open and configure the socket for `ifname` in the calling thread's
/// network namespace.
pub(crate) fn open_port(
    ifname: &str,
    fanout_group: Option<u16>,
    promisc: bool,
) -> Result<PortSocket, OpenError> {
    // Protocol 0: the socket receives nothing until `bind` names both the
    // protocol and the interface, so no frame of another interface sneaks
    // into the queue in between.
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(os(ifname, "socket(AF_PACKET, SOCK_RAW)"));
    }
    // SAFETY: `raw` is a freshly created descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let s = fd.as_raw_fd();

    let mut req = ifreq_for(ifname)?;
    // SAFETY: SIOCGIFINDEX reads the name and writes ifru_ifindex inside
    // `req`, which lives across the call.
    if unsafe { libc::ioctl(s, libc::SIOCGIFINDEX, &mut req) } < 0 {
        return Err(os(
            ifname,
            "no such interface in this network namespace (SIOCGIFINDEX)",
        ));
    }
    // SAFETY: SIOCGIFINDEX succeeded, so the union holds the index.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex } as u32;
    // SAFETY: as above; SIOCGIFMTU writes ifru_mtu.
    if unsafe { libc::ioctl(s, libc::SIOCGIFMTU, &mut req) } < 0 {
        return Err(os(ifname, "reading MTU (SIOCGIFMTU)"));
    }
    // SAFETY: SIOCGIFMTU succeeded, so the union holds the MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu } as u32;

    // Our own transmits must not come back to us as receives.
    setsockopt(s, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)
        .map_err(|e| OpenError::os(ifname, "PACKET_IGNORE_OUTGOING (Linux ≥ 4.20)", e))?;
    // Frames go straight to the driver: tandem is the scheduler.
    setsockopt(s, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &1i32)
        .map_err(|e| OpenError::os(ifname, "PACKET_QDISC_BYPASS", e))?;
    if let Err(e) = setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF) {
        tracing::warn!(
            ifname,
            error = %e,
            "SO_RCVBUFFORCE needs CAP_NET_ADMIN; falling back to SO_RCVBUF (capped by net.core.rmem_max): expect drops at high rates"
        );
        setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF)
            .map_err(|e| OpenError::os(ifname, "SO_RCVBUF", e))?;
    }
    if setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SNDBUF).is_err() {
        let _ = setsockopt(s, libc::SOL_SOCKET, libc::SO_SNDBUF, &SNDBUF);
    }

    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length is its size.
    let rc = unsafe {
        libc::bind(
            s,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(os(ifname, "bind to the interface"));
    }

    if promisc {
        // SAFETY: packet_mreq is plain old data; all-zero is valid.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = ifindex as i32;
        mr.mr_type = PACKET_MR_PROMISC;
        // The membership is dropped by the kernel when the socket closes,
        // so a crashed tandem never leaves an interface promiscuous.
        setsockopt(s, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr)
            .map_err(|e| OpenError::os(ifname, "PACKET_MR_PROMISC", e))?;
    }

    let fanout_id = match fanout_group {
        Some(group) => {
            let id = fanout_id(group, ifindex);
            // FANOUT_HASH uses the symmetric flow hash. It hashes IP
            // fragments, the first included, on addresses alone, so a
            // datagram's fragments reach one worker, which steers them on
            // (tandem_state::frag). No FANOUT_FLAG_DEFRAG: the kernel would
            // reassemble them into one frame larger than the MTU, which a
            // forwarder cannot send on.
            let arg = id as u32 | (PACKET_FANOUT_HASH << 16);
            setsockopt(s, libc::SOL_PACKET, PACKET_FANOUT, &arg).map_err(|e| {
                OpenError::os(
                    ifname,
                    "PACKET_FANOUT (group taken by another kind of socket?)",
                    e,
                )
            })?;
            Some(id)
        }
        None => None,
    };

    Ok(PortSocket {
        fd,
        ifindex,
        mtu,
        fanout_id,
    })
}

/// Kernel drop count since the previous call (PACKET_STATISTICS resets the
/// counters on every read): frames the socket had no room for.
pub(crate) fn take_drops(fd: RawFd) -> io::Result<u64> {
    #[repr(C)]
    #[derive(Default)]
    struct TpacketStats {
        tp_packets: u32,
        tp_drops: u32,
    }
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: `st` and `len` are live and `len` is the size of `st`, so the
    // kernel writes at most that many bytes into memory we own.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.tp_drops as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_ids_differ_per_interface_and_agree_per_group() {
        assert_eq!(fanout_id(100, 3), fanout_id(100, 3));
        assert_ne!(fanout_id(100, 3), fanout_id(100, 4));
        assert_eq!(fanout_id(u16::MAX, 2), 1, "wraps instead of overflowing");
    }

    #[test]
    fn bad_interface_names_are_config_errors() {
        assert!(matches!(ifreq_for(""), Err(OpenError::Config(_))));
        assert!(matches!(
            ifreq_for("a-very-long-interface-name"),
            Err(OpenError::Config(_))
        ));
        assert!(matches!(ifreq_for("e\0x"), Err(OpenError::Config(_))));
        assert!(ifreq_for("eth0").is_ok());
    }
}
