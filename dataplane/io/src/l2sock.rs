//! A plain AF_PACKET datagram socket for one EtherType on one device: the
//! transport of the failover and state links (EtherType 0x88B5, IEEE local
//! experimental), used by the management thread, never by a worker.
//!
//! SOCK_DGRAM: the kernel builds and strips the Ethernet header, so callers
//! deal in payloads and MAC addresses only. The socket is non-blocking;
//! [`L2Socket::recv`] waits with `poll()` for at most the given timeout, and
//! [`L2Socket::fd`] lets a caller poll several sockets at once.

use crate::uring::sock::setsockopt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Errors opening or using an [`L2Socket`]; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("L2 socket on {ifname}: device name is not a Linux interface name")]
    BadName { ifname: String },
    #[error("L2 socket on {ifname}: no such device: {source}")]
    NoDevice {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error("L2 socket on {ifname}: {op}: {source}")]
    Os {
        ifname: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// An AF_PACKET SOCK_DGRAM socket bound to one device and EtherType.
#[derive(Debug)]
pub struct L2Socket {
    fd: OwnedFd,
    ifindex: i32,
    ethertype: u16,
    ifname: String,
}

fn ifindex(ifname: &str) -> Result<i32, L2Error> {
    let c = std::ffi::CString::new(ifname).map_err(|_| L2Error::BadName {
        ifname: ifname.into(),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(L2Error::NoDevice {
            ifname: ifname.into(),
            source: io::Error::last_os_error(),
        });
    }
    i32::try_from(idx).map_err(|_| L2Error::BadName {
        ifname: ifname.into(),
    })
}

/// `linux/if_packet.h`: do not loop this host's transmissions back to the socket.
const PACKET_IGNORE_OUTGOING: i32 = 23;

/// Receive and send buffer sizes asked for (see [`L2Socket::open`]).
const L2_RCVBUF: i32 = 8 << 20;
const L2_SNDBUF: i32 = 4 << 20;

impl L2Socket {
    /// Open a socket receiving and sending `ethertype` frames on `ifname`.
    pub fn open(ifname: &str, ethertype: u16) -> Result<L2Socket, L2Error> {
        let ifindex = ifindex(ifname)?;
        let os = |op| {
            let source = io::Error::last_os_error();
            L2Error::Os {
                ifname: ifname.into(),
                op,
                source,
            }
        };
        // SAFETY: plain socket(2) call with constant arguments; the result is
        // checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ethertype.to_be()),
            )
        };
        if raw < 0 {
            return Err(os("socket"));
        }
        // SAFETY: `raw` is a freshly created descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sll = sockaddr(ifindex, ethertype, [0; 6]);
        // SAFETY: `sll` is a fully initialised sockaddr_ll and the length
        // passed is its size; `fd` is open.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os("bind"));
        }
        // A state-link bulk sync bursts thousands of frames: deep buffers
        // keep a briefly busy reader from losing them (each loss costs a NAK
        // and a retransmission). Best effort: FORCE needs CAP_NET_ADMIN.
        for (force, plain, size) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, L2_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, L2_SNDBUF),
        ] {
            let raw = fd.as_raw_fd();
            if setsockopt(raw, libc::SOL_SOCKET, force, &size).is_err() {
                let _ = setsockopt(raw, libc::SOL_SOCKET, plain, &size);
            }
        }
        // The host's own transmissions would be looped back to this socket
        // (PACKET_OUTGOING) only to be skipped in `try_recv`: one wasted copy
        // and receive call per frame sent, which on the state link is most of
        // the replication thread's receive work. Best effort (Linux >= 4.20);
        // `try_recv` still skips them on older kernels.
        let _ = setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &1i32,
        );
        Ok(L2Socket {
            fd,
            ifindex,
            ethertype,
            ifname: ifname.into(),
        })
    }

    /// The device this socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Send `payload` to `dst_mac` (e.g. [`BROADCAST`]). A full socket
    /// buffer drops the frame (`WouldBlock`), like a full wire would.
    pub fn send(&self, dst_mac: [u8; 6], payload: &[u8]) -> io::Result<()> {
        let sll = sockaddr(self.ifindex, self.ethertype, dst_mac);
        // SAFETY: `payload` is valid for `payload.len()` bytes for the call;
        // `sll` is initialised and its size is passed; `fd` is open.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                libc::MSG_DONTWAIT,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receive one frame into `buf`, waiting at most `timeout` (zero: do
    /// not wait). Returns the sender's MAC and the payload length (frames
    /// longer than `buf` are truncated to it), or `None` on timeout.
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<([u8; 6], usize)>> {
        loop {
            match self.try_recv(buf)? {
                Some(r) => return Ok(Some(r)),
                None if timeout.is_zero() => return Ok(None),
                None => {
                    let mut pfd = libc::pollfd {
                        fd: self.fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX);
                    // SAFETY: `pfd` is one valid pollfd for the call.
                    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
                    if rc < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        return Err(e);
                    }
                    if rc == 0 {
                        return Ok(None);
                    }
                    return self.try_recv(buf);
                }
            }
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<([u8; 6], usize)>> {
        // A packet socket also sees this host's own outgoing frames
        // (PACKET_OUTGOING); they are skipped, bounded by what is queued.
        loop {
            match self.recv_one(buf)? {
                Some((_, _, libc::PACKET_OUTGOING)) => continue,
                Some((mac, n, _)) => return Ok(Some((mac, n))),
                None => return Ok(None),
            }
        }
    }

    fn recv_one(&self, buf: &mut [u8]) -> io::Result<Option<([u8; 6], usize, u8)>> {
        // SAFETY: all-zero bytes are a valid sockaddr_ll (plain integers).
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is writable for `buf.len()` bytes; `sll`/`len` are a
        // writable address buffer and its size; `fd` is open.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(None);
            }
            return Err(e);
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&sll.sll_addr[..6]);
        Ok(Some((mac, n as usize, sll.sll_pkttype)))
    }

    /// The descriptor, for polling several sockets at once.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wait until one of `socks` is readable or `timeout` passes (to the
/// nanosecond, see [`wait_fds`]); returns a bit mask of the readable ones
/// (bit i = `socks[i]`, at most 64 sockets).
pub fn wait_readable(socks: &[&L2Socket], timeout: Duration) -> io::Result<u64> {
    let mut fds = [-1; 64];
    let n = socks.len().min(64);
    for (f, s) in fds.iter_mut().zip(&socks[..n]) {
        *f = s.fd();
    }
    wait_fds(&fds[..n], timeout)
}

/// Wait until one of `fds` is readable or `timeout` passes, to the
/// nanosecond (`ppoll`: a sub-millisecond wait sleeps on a high-resolution
/// timer, where `poll`'s whole milliseconds would round a hello due in
/// 300 µs up to 1 ms, late by most of a 1 ms polltime); returns a bit mask
/// of the readable ones (bit i = `fds[i]`, at most 64). An interrupted wait
/// returns 0.
pub fn wait_fds(fds: &[RawFd], timeout: Duration) -> io::Result<u64> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 64];
    let n = fds.len().min(64);
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9: fits any c_long.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `pfds[..n]` are initialised pollfds owned by this frame and `n`
    // is at most their count; `ts` outlives the call; a null signal mask
    // leaves the thread's mask unchanged.
    let rc = unsafe { libc::ppoll(pfds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    let mut mask = 0u64;
    for (i, p) in pfds[..n].iter().enumerate() {
        if p.revents & libc::POLLIN != 0 {
            mask |= 1 << i;
        }
    }
    Ok(mask)
}

fn sockaddr(ifindex: i32, ethertype: u16, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero bytes are a valid sockaddr_ll (plain integers).
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&mac);
    sll
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_device_is_named_in_the_error() {
        let e = L2Socket::open("nosuchdev0", 0x88b5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuchdev0"), "{e}");
    }
}
