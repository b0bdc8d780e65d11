//! The XDP side of one interface: the XSKMAP, tandem's redirect program
//! (optionally with the flow-offload fast path) and the BPF link that
//! attaches it, plus removal of a stale netlink-attached program left
//! behind by an earlier run.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{bpf, netlink, sys, FlowMap, XdpMode};
use crate::OpenError;

/// Name of tandem's programs and maps as `bpftool`/`ip -d link` show them.
const PROG_NAME: &str = "tandem_xsk";
const OFFLOAD_PROG_NAME: &str = "tandem_xsk_fo";
const MAP_NAME: &str = "tandem_xsks";

/// tandem's redirect program and XSKMAP attached to one interface.
///
/// The program runs `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`:
/// frames on a queue with a bound tandem socket go to it, all others
/// continue into the kernel stack. With a flow map
/// ([`XdpAttachment::attach_with_offload`]) the program first forwards
/// frames of offloaded flows itself (see [`crate::offload`]). Attached
/// through a BPF link, so it detaches when this value drops (closing the
/// link fd) and also when the process dies, even by SIGKILL.
#[derive(Debug)]
pub struct XdpAttachment {
    // Field order is drop order: the link first (detaches), then the
    // program and the map it references.
    /// The BPF link: detached explicitly on drop (see `Drop`).
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    /// The flow map the program reads, held so it outlives the attachment
    /// even if the caller drops its handles.
    flows: Option<FlowMap>,
    map_entries: u32,
    ifname: String,
    ifindex: u32,
    mode: XdpMode,
    queue_count: u32,
    mtu: Option<u32>,
}

fn mode_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Generic => sys::XDP_FLAGS_SKB_MODE,
        _ => sys::XDP_FLAGS_DRV_MODE,
    }
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Native => "native",
        XdpMode::Generic => "generic",
        XdpMode::Auto => "auto",
    }
}

impl XdpAttachment {
    /// Create the XSKMAP, load the redirect program and attach it to
    /// `ifname` (in the calling thread's network namespace) in `mode`.
    /// `Auto` tries native (driver) mode and falls back to generic (skb)
    /// mode with a warning naming the reason.
    ///
    /// A program left on the interface through netlink (which outlives its
    /// process) is removed first, with a warning; one held by a live BPF
    /// link belongs to a running process and makes this fail.
    pub fn attach(ifname: &str, mode: XdpMode) -> Result<XdpAttachment, OpenError> {
        Self::attach_with_offload(ifname, mode, None)
    }

    /// [`XdpAttachment::attach`], with the flow-offload fast path when
    /// `flows` is given: the program looks up each eligible frame in the
    /// map and forwards hits itself (`bpf_redirect` to the entry's egress
    /// device); misses take the plain path to the AF_XDP socket. Several
    /// attachments may share one map (entries are keyed by ingress ifindex).
    pub fn attach_with_offload(
        ifname: &str,
        mode: XdpMode,
        flows: Option<&FlowMap>,
    ) -> Result<XdpAttachment, OpenError> {
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(OpenError::Config(format!(
                "interface name {ifname:?} must be 1 to {} bytes",
                libc::IFNAMSIZ - 1
            )));
        }
        let os = |what, e| OpenError::os(ifname, what, e);
        let ifindex = sys::if_nametoindex(ifname).map_err(|e| os("no such interface", e))?;
        let link = netlink::get_link(ifindex).map_err(|e| os("RTM_GETLINK", e))?;

        // The driver's active RX queues; the netlink count (queues allocated)
        // is the fallback for drivers without ethtool channel support.
        let queue_count = match sys::rx_channels(ifname) {
            Ok(n) if n > 0 => n,
            _ => link.num_rx_queues.unwrap_or(1),
        }
        .max(1);
        // Size the map for every queue the device could enable, so that
        // `ethtool -L` after attach still finds a slot.
        let map_entries = queue_count.max(link.num_rx_queues.unwrap_or(1)).max(1);

        remove_stale(ifname, ifindex, link.xdp)?;

        let map = bpf::create_xskmap(map_entries, MAP_NAME).map_err(|e| os("create XSKMAP", e))?;
        let prog = load_program(&map, flows).map_err(|why| OpenError::Unsupported {
            ifname: ifname.to_string(),
            why,
        })?;

        let attach_in = |m: XdpMode| bpf::link_create_xdp(prog.as_fd(), ifindex, mode_flags(m));
        let (link_fd, used) = match mode {
            XdpMode::Native | XdpMode::Generic => {
                let fd = attach_in(mode).map_err(|e| {
                    os(
                        if mode == XdpMode::Native {
                            "attach XDP program (native mode)"
                        } else {
                            "attach XDP program (generic mode)"
                        },
                        explain_attach(e),
                    )
                })?;
                (fd, mode)
            }
            XdpMode::Auto => match attach_in(XdpMode::Native) {
                Ok(fd) => (fd, XdpMode::Native),
                Err(native) => {
                    let native = explain_attach(native);
                    tracing::warn!(
                        ifname,
                        error = %native,
                        "native XDP attach failed; falling back to generic (skb) mode, which is slower"
                    );
                    let fd = attach_in(XdpMode::Generic).map_err(|e| {
                        os(
                            "attach XDP program (generic mode, after native failed)",
                            explain_attach(e),
                        )
                    })?;
                    (fd, XdpMode::Generic)
                }
            },
        };
        tracing::info!(
            ifname,
            ifindex,
            mode = mode_name(used),
            requested = mode_name(mode),
            queues = queue_count,
            flow_offload = flows.is_some(),
            "XDP redirect program attached (BPF link; detaches on exit)"
        );
        if flows.is_some() {
            // veth takes a redirected frame only when its peer has NAPI;
            // otherwise offloaded connections would be dropped, silently.
            if sys::driver_name(ifname).is_ok_and(|d| d == "veth") {
                tracing::warn!(
                    ifname,
                    "flow offload on a veth: the peer of every veth of this unit must have GRO on \
                     (`ethtool -K PEER gro on`) or an XDP program, or the kernel drops the frames \
                     the fast path redirects to it (tx_xdp_xmit_errors in `ethtool -S`)"
                );
            }
        }
        Ok(XdpAttachment {
            link: link_fd,
            prog,
            map,
            flows: flows.cloned(),
            map_entries,
            ifname: ifname.to_string(),
            ifindex,
            mode: used,
            queue_count,
            mtu: link.mtu,
        })
    }

    /// The mode actually in use: `Native` or `Generic`.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// RX queues of the device (ethtool channels: rx + combined).
    pub fn queue_count(&self) -> u32 {
        self.queue_count
    }

    /// The interface MTU when attached (for the backend's frame-size check).
    pub(crate) fn mtu(&self) -> Option<u32> {
        self.mtu
    }

    /// The XSKMAP (queue index → socket), for the backend to register into.
    pub(crate) fn xsk_map(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// Slots in the XSKMAP: the highest queue index a socket can use + 1.
    pub(crate) fn map_entries(&self) -> u32 {
        self.map_entries
    }

    /// Kernel id of the attached program (as `ip -d link` shows it).
    pub fn prog_id(&self) -> Option<u32> {
        bpf::prog_id(self.prog.as_fd()).ok()
    }

    /// The flow map the program forwards from, when attached with one.
    pub fn flow_map(&self) -> Option<&FlowMap> {
        self.flows.as_ref()
    }
}

/// Assemble and load the program for `xsks` (and `flows`); the error says
/// which program and carries the verifier's log.
fn load_program(xsks: &OwnedFd, flows: Option<&FlowMap>) -> Result<OwnedFd, String> {
    let (what, name, insns) = match flows {
        None => (
            "XDP redirect program",
            PROG_NAME,
            bpf::redirect_program(xsks.as_raw_fd()),
        ),
        Some(f) => (
            "XDP flow-offload program",
            OFFLOAD_PROG_NAME,
            bpf::offload_program(xsks.as_raw_fd(), f.fd().as_raw_fd()),
        ),
    };
    let insns = insns.map_err(|e| format!("assembling the {what} failed: {e}"))?;
    bpf::load_xdp(&insns, name).map_err(|e| {
        format!(
            "loading the {what} failed: {}; verifier log: {}",
            e.source, e.log
        )
    })
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        // Detach explicitly: closing our link fd detaches only when it is
        // the last reference, and a concurrent fork (any `Command::spawn` in
        // the process) briefly holds another. The fields' own drops then
        // close the link, program and map fds, each exactly once.
        match bpf::link_detach(self.link.as_fd()) {
            Ok(()) => tracing::info!(ifname = %self.ifname, "XDP redirect program detached"),
            // ENOLINK: already detached (the interface went away).
            Err(e) => tracing::debug!(ifname = %self.ifname, error = %e, "BPF_LINK_DETACH"),
        }
    }
}

/// Add what the usual attach errors mean on this kernel.
fn explain_attach(e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EEXIST) => {
            "a program in the other XDP mode is attached (native and generic cannot coexist)"
        }
        Some(libc::EBUSY) => "another XDP program or BPF link is attached to this interface",
        Some(libc::ERANGE) => "MTU too large for native XDP without multi-buffer support",
        Some(libc::EOPNOTSUPP) => "the driver does not support this XDP mode",
        _ => return e,
    };
    io::Error::new(e.kind(), format!("{e} ({hint})"))
}

/// Detach every netlink-attached XDP program on the interface. One held by
/// a BPF link cannot be detached this way (EBUSY): that belongs to a
/// running process, so report it instead of fighting over the interface.
fn remove_stale(ifname: &str, ifindex: u32, progs: netlink::XdpProgs) -> Result<(), OpenError> {
    for (id, flags, mode) in [
        (progs.drv, sys::XDP_FLAGS_DRV_MODE, "native"),
        (progs.skb, sys::XDP_FLAGS_SKB_MODE, "generic"),
        (progs.hw, sys::XDP_FLAGS_HW_MODE, "offloaded"),
    ] {
        if id == 0 {
            continue;
        }
        let name = bpf::prog_name_by_id(id).unwrap_or_default();
        match netlink::set_xdp_fd(ifindex, -1, flags) {
            Ok(()) => tracing::warn!(
                ifname,
                prog_id = id,
                prog_name = %name,
                mode,
                "removed a stale XDP program left attached through netlink (by an earlier run or another tool)"
            ),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(OpenError::Unsupported {
                    ifname: ifname.to_string(),
                    why: format!(
                        "XDP program {id} ({name:?}, {mode} mode) is attached through a BPF link \
                         held by a running process; stop that process first"
                    ),
                });
            }
            Err(e) => {
                return Err(OpenError::os(
                    ifname,
                    "detach stale XDP program (RTM_SETLINK)",
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// Test support: what a crashed run that attached through netlink leaves
/// behind. Not for production use.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// Load an `XDP_PASS` program named `stale_pass` and attach it to
    /// `ifname` through netlink (`IFLA_XDP`) in `mode` (`Native` or
    /// `Generic`), then close our fd: the program stays attached after this
    /// process exits, like one left by a crash. Returns its program id.
    pub fn leak_netlink_program(ifname: &str, mode: XdpMode) -> Result<u32, OpenError> {
        let os = |what, e| OpenError::os(ifname, what, e);
        let ifindex = sys::if_nametoindex(ifname).map_err(|e| os("no such interface", e))?;
        let insns = bpf::pass_program().map_err(|e| OpenError::Config(e.to_string()))?;
        let prog = bpf::load_xdp(&insns, "stale_pass")
            .map_err(|e| os("load XDP_PASS program", e.source))?;
        let id = bpf::prog_id(prog.as_fd()).map_err(|e| os("BPF_OBJ_GET_INFO_BY_FD", e))?;
        netlink::set_xdp_fd(ifindex, prog.as_raw_fd(), mode_flags(mode))
            .map_err(|e| os("attach through netlink (RTM_SETLINK)", e))?;
        Ok(id)
    }

    /// XDP verdicts as `test_run_xdp` returns them.
    pub const XDP_PASS: u32 = sys::XDP_PASS as u32;
    pub const XDP_REDIRECT: u32 = sys::XDP_REDIRECT as u32;

    /// Load tandem's flow-offload program for `flows` (with an empty XSKMAP,
    /// so frames it does not forward come back as `XDP_PASS`), unattached,
    /// for [`test_run_xdp`]. The program keeps its maps alive.
    pub fn load_offload_program(flows: &FlowMap) -> Result<OwnedFd, OpenError> {
        let xsks =
            bpf::create_xskmap(1, MAP_NAME).map_err(|e| OpenError::os("-", "create XSKMAP", e))?;
        load_program(&xsks, Some(flows)).map_err(|why| OpenError::Unsupported {
            ifname: "-".into(),
            why,
        })
    }

    /// Run an XDP program once on `frame` with `BPF_PROG_TEST_RUN`, as if
    /// received on queue 0 of `ifindex` (a device in the calling thread's
    /// namespace, e.g. `lo`); returns the verdict (`XDP_PASS` = 2,
    /// `XDP_REDIRECT` = 4, ...) and the frame as the program left it.
    /// Nothing is sent: a redirect is only recorded. The kernel refuses
    /// frames shorter than 14 bytes (`EINVAL`).
    pub fn test_run_xdp(
        prog: BorrowedFd<'_>,
        frame: &[u8],
        ifindex: u32,
    ) -> io::Result<(u32, Vec<u8>)> {
        bpf::test_run_xdp(prog, frame, ifindex)
    }

    /// Program ids attached to `ifname` per mode, as `(native, generic)`.
    pub fn attached_programs(ifname: &str) -> Result<(u32, u32), OpenError> {
        let os = |what, e| OpenError::os(ifname, what, e);
        let ifindex = sys::if_nametoindex(ifname).map_err(|e| os("no such interface", e))?;
        let l = netlink::get_link(ifindex).map_err(|e| os("RTM_GETLINK", e))?;
        Ok((l.xdp.drv, l.xdp.skb))
    }
}
