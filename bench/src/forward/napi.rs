//! Finding and pinning the threaded-NAPI kthreads of the lab's veths.
//!
//! Why: with GRO on and threaded NAPI, a veth's receive work runs in a
//! `napi/<dev>-<id>` kthread; unpinned, the scheduler moves it between the
//! two cores and the benchmark measures the scheduler (PLATFORM.md,
//! "Measuring forwarding on veth"). The kthreads are re-created whenever an
//! XDP program attaches or detaches, so the bench pins again after every
//! process that attaches one (tandemd, the pktgen sender and receiver).
//!
//! Which kthread belongs to which device is asked of the kernel, not guessed
//! from the name: every lab names its veths `c0`/`out0`/`in0`/`s0`, and
//! another lab running at the same time has kthreads with the same names.
//! The `netdev` generic-netlink family's `napi-get` dump (per network
//! namespace) gives each NAPI instance's ifindex and kthread PID.

use std::io;

use netlink_sys::{protocols::NETLINK_GENERIC, Socket};
use tandem_netns::Netns;

use super::BenchError;

// linux/netlink.h
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
// linux/genetlink.h
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const GENL_HDRLEN: usize = 4;
// linux/netdev.h (Documentation/netlink/specs/netdev.yaml), checked
// against this kernel: napi-get is command 11; a NAPI's attributes are
// ifindex 1, id 2, irq 3, pid 4.
const NETDEV_CMD_NAPI_GET: u8 = 11;
const NETDEV_A_NAPI_IFINDEX: u16 = 1;
const NETDEV_A_NAPI_ID: u16 = 2;
const NETDEV_A_NAPI_PID: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One NAPI instance that runs in a kthread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiThread {
    pub ifindex: u32,
    pub napi_id: u32,
    pub pid: u32,
}

fn nl_err(ns: &Netns, what: &str, e: io::Error) -> BenchError {
    BenchError::Napi {
        ns: ns.name().to_string(),
        detail: format!("{what}: {e}"),
    }
}

fn push_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

fn request(family: u16, flags: u16, seq: u32, cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + GENL_HDRLEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&family.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // genlmsghdr: cmd, version 1, reserved.
    m.extend_from_slice(&[cmd, 1, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// `(type, payload)` of each attribute in `b`; stops at the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, at)?);
        let ty = u16_at(b, at + 2)? & NLA_TYPE_MASK;
        let data = b.get(at + 4..at + len.max(4))?;
        at += (len.max(4) + 3) & !3;
        Some((ty, data))
    })
}

/// What one reply datagram held.
enum Reply {
    /// More messages of a dump may follow.
    Messages,
    /// NLMSG_DONE, or the ACK of a non-dump request.
    Done,
}

/// Splits a datagram into netlink messages, handing each genl payload
/// (attributes after the genl header) to `each`.
fn parse_datagram(dgram: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<Reply> {
    let mut at = 0usize;
    while at + NLMSG_HDRLEN <= dgram.len() {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message");
        let len = u32_at(dgram, at).ok_or_else(bad)? as usize;
        let ty = u16_at(dgram, at + 4).ok_or_else(bad)?;
        if len < NLMSG_HDRLEN || at + len > dgram.len() {
            return Err(bad());
        }
        let body = &dgram[at + NLMSG_HDRLEN..at + len];
        match ty {
            NLMSG_DONE => return Ok(Reply::Done),
            NLMSG_ERROR => {
                let code = u32_at(body, 0).ok_or_else(bad)? as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(Reply::Done);
            }
            _ => {
                if let Some(attrs) = body.get(GENL_HDRLEN..) {
                    each(attrs);
                }
            }
        }
        at += (len + 3) & !3;
    }
    Ok(Reply::Messages)
}

/// Sends `req` (a dump, or a request with `NLM_F_ACK`) and collects the
/// genl payloads of every reply message until the dump's NLMSG_DONE or the ACK.
fn transact(sock: &Socket, req: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    sock.send(req, 0)?;
    let mut out = Vec::new();
    // Bounded in case the kernel never says it is done.
    for _ in 0..10_000 {
        let mut buf = Vec::with_capacity(64 << 10);
        sock.recv(&mut buf, 0)?;
        if let Reply::Done = parse_datagram(&buf, |a| out.push(a.to_vec()))? {
            return Ok(out);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "netlink reply never ended",
    ))
}

/// Every NAPI instance in `ns` that runs in a kthread (threaded NAPI).
pub fn napi_threads(ns: &Netns) -> Result<Vec<NapiThread>, BenchError> {
    // The netdev family and its dump are per network namespace: ask from
    // inside. The guard moves this thread back when it drops.
    let _inside = ns.enter()?;
    let mut sock = Socket::new(NETLINK_GENERIC).map_err(|e| nl_err(ns, "netlink socket", e))?;
    sock.bind_auto().map_err(|e| nl_err(ns, "bind", e))?;

    let mut name = Vec::new();
    push_attr(&mut name, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    let req = request(GENL_ID_CTRL, NLM_F_ACK, 1, CTRL_CMD_GETFAMILY, &name);
    let replies =
        transact(&sock, &req).map_err(|e| nl_err(ns, "resolve the netdev genl family", e))?;
    let family = replies
        .iter()
        .flat_map(|m| attrs(m))
        .find(|(ty, _)| *ty == CTRL_ATTR_FAMILY_ID)
        .and_then(|(_, d)| u16_at(d, 0))
        .ok_or_else(|| BenchError::Napi {
            ns: ns.name().to_string(),
            detail: "the kernel has no netdev genl family (needs Linux ≥ 6.5)".into(),
        })?;

    let req = request(family, NLM_F_DUMP, 2, NETDEV_CMD_NAPI_GET, &[]);
    let replies = transact(&sock, &req).map_err(|e| nl_err(ns, "napi-get dump", e))?;
    let mut found = Vec::new();
    for m in &replies {
        let (mut ifindex, mut napi_id, mut pid) = (None, None, None);
        for (ty, d) in attrs(m) {
            match ty {
                NETDEV_A_NAPI_IFINDEX => ifindex = u32_at(d, 0),
                NETDEV_A_NAPI_ID => napi_id = u32_at(d, 0),
                NETDEV_A_NAPI_PID => pid = u32_at(d, 0),
                _ => {}
            }
        }
        if let (Some(ifindex), Some(napi_id), Some(pid)) = (ifindex, napi_id, pid) {
            if pid != 0 {
                found.push(NapiThread {
                    ifindex,
                    napi_id,
                    pid,
                });
            }
        }
    }
    Ok(found)
}

/// The ifindex of `dev` in `ns` (sysfs as `ip netns exec` mounts it).
pub fn ifindex(ns: &Netns, dev: &str) -> Result<u32, BenchError> {
    let out = ns.exec("cat", &[&format!("/sys/class/net/{dev}/ifindex")])?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| BenchError::Napi {
            ns: ns.name().to_string(),
            detail: format!("ifindex of {dev}: {e}"),
        })
}

/// Pins thread `pid` to `core` (`taskset -p -c`).
pub fn pin(pid: u32, core: usize) -> Result<(), BenchError> {
    tandem_netns::run(std::process::Command::new("taskset").args([
        "-p",
        "-c",
        &core.to_string(),
        &pid.to_string(),
    ]))?;
    Ok(())
}

/// Gives thread `pid` SCHED_FIFO priority `prio` (`chrt -f -p`).
pub fn set_fifo(pid: u32, prio: u8) -> Result<(), BenchError> {
    tandem_netns::run(std::process::Command::new("chrt").args([
        "-f",
        "-p",
        &prio.to_string(),
        &pid.to_string(),
    ]))?;
    Ok(())
}

/// Pins the NAPI kthreads of `dev` in `ns` to `core`; returns how many.
pub fn pin_device(ns: &Netns, dev: &str, core: usize) -> Result<usize, BenchError> {
    let idx = ifindex(ns, dev)?;
    let mut n = 0;
    for t in napi_threads(ns)?.into_iter().filter(|t| t.ifindex == idx) {
        match pin(t.pid, core) {
            Ok(()) => n += 1,
            // The kthread went away (an attach or detach re-created it)
            // between the dump and taskset: the caller pins again after
            // the next attach anyway, and counts what was pinned.
            Err(_) if !std::path::Path::new(&format!("/proc/{}", t.pid)).exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_malformed_input_stops_cleanly() {
        let mut b = Vec::new();
        push_attr(&mut b, NETDEV_A_NAPI_IFINDEX, &7u32.to_ne_bytes());
        push_attr(&mut b, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
        push_attr(&mut b, NETDEV_A_NAPI_PID, &4242u32.to_ne_bytes());
        let got: Vec<_> = attrs(&b).map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (CTRL_ATTR_FAMILY_NAME, b"netdev\0".to_vec()));
        assert_eq!(u32_at(&got[2].1, 0), Some(4242));
        // A length running past the end ends the walk instead of panicking.
        let mut bad = b.clone();
        bad[0] = 200;
        assert_eq!(attrs(&bad).count(), 0);
        assert_eq!(attrs(&[1, 0]).count(), 0);
    }

    #[test]
    fn datagram_parser_reports_errors_and_done() {
        // nlmsghdr, then struct nlmsgerr: the error and the request's header.
        let len = (NLMSG_HDRLEN + 4 + NLMSG_HDRLEN) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        m.extend_from_slice(&request(20, 0, 1, 11, &[])[..NLMSG_HDRLEN]);
        let e = parse_datagram(&m, |_| {}).err().expect("error message");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(parse_datagram(&m[..10], |_| {}).is_ok());
        let mut short = m.clone();
        short[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_datagram(&short, |_| {}).is_err());
    }

    #[test]
    fn finds_the_napi_kthread_of_a_threaded_veth() {
        if !tandem_netns::have_privileges("finds_the_napi_kthread_of_a_threaded_veth") {
            return;
        }
        let a = Netns::new("napia").unwrap();
        let b = Netns::new("napib").unwrap();
        tandem_netns::veth(&a, "v0", &b, "v1").unwrap();
        tandem_netns::ensure_tool("ethtool", "ethtool").unwrap();
        a.exec("ethtool", &["-K", "v0", "gro", "on"]).unwrap();
        a.exec("sh", &["-c", "echo 1 > /sys/class/net/v0/threaded"])
            .unwrap();
        let idx = ifindex(&a, "v0").unwrap();
        let threads: Vec<_> = napi_threads(&a)
            .unwrap()
            .into_iter()
            .filter(|t| t.ifindex == idx)
            .collect();
        assert!(!threads.is_empty(), "no napi kthread for v0");
        for t in &threads {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", t.pid)).unwrap();
            assert_eq!(comm.trim(), format!("napi/v0-{}", t.napi_id));
        }
        assert_eq!(pin_device(&a, "v0", 0).unwrap(), threads.len());
        // The other end has no threaded NAPI.
        assert!(napi_threads(&b).unwrap().is_empty());
    }
}
