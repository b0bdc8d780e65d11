//! AF_XDP backend: tandem's own XDP program and XSKMAP
//! ([`XdpAttachment`]), XSK sockets sharing one UMEM ([`AfXdpBackend`]),
//! and the kernel side of flow offload ([`FlowMap`], [`FlowTable`]).
//!
//! Pure Rust, no clang/libbpf/aya and no external tools at run time: the
//! programs are built with a small in-tree assembler (`asm`) and loaded with
//! raw `bpf()` calls, then attached with a BPF link (which the kernel
//! detaches when the process dies, even by SIGKILL); a stale netlink
//! attachment left by an older run or another tool is removed with one
//! `RTM_SETLINK`. See `../shared/PLATFORM.md` for what was verified on this
//! kernel (copy mode only on veth, EBUSY on quick rebind, 32 frames per
//! copy-mode TX kick).
//!
//! Two programs:
//! * the plain redirect program, five instructions (six slots):
//!   `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`;
//! * with a [`FlowMap`] ([`XdpAttachment::attach_with_offload`]), the
//!   flow-offload program (about 125 instructions): an eligible
//!   IPv4 TCP/UDP frame that matches an entry is rewritten (MACs, NAT,
//!   TTL, incremental checksums) and sent out with `bpf_redirect` without
//!   waking a worker; everything else takes the plain program's path. Its
//!   model is `offload::MemFlowTable::forward`, and `tests/offload_prog.rs`
//!   checks the two agree byte for byte through `BPF_PROG_TEST_RUN`.
//!
//! Typical use, per worker (in the interfaces' network namespace):
//!
//! ```no_run
//! use tandem_io::afxdp::{AfXdpBackend, XdpAttachment, XdpMode, ZeroCopy};
//! use tandem_io::{Backend, FrameConfig};
//! # fn main() -> Result<(), tandem_io::OpenError> {
//! let outside = XdpAttachment::attach("eth0", XdpMode::Auto)?;
//! let inside = XdpAttachment::attach("eth1", XdpMode::Auto)?;
//! // Worker 0 serves queue 0 of both interfaces; port 0 = eth0, port 1 = eth1.
//! let mut b = AfXdpBackend::open(&[(&outside, 0), (&inside, 0)], &FrameConfig::default(), ZeroCopy::Auto)?;
//! b.flush();
//! # Ok(()) }
//! ```
//!
//! Module map: `sys` (kernel ABI structs and syscall wrappers), `asm` (the
//! eBPF assembler), `bpf` (programs, maps, link, test runs), `flow` (the
//! flow-offload map and table), `netlink` (stale-program cleanup, queue count),
//! `ring` (shared-ring index arithmetic, tested against a model without the
//! kernel), `socket` (one XSK: UMEM registration, ring mmap, bind),
//! `attach` and `backend` (the public types). All `unsafe` of the backend
//! lives in these files, each block with a `// SAFETY:` comment.
//!
//! Deliberate departures from the first design notes:
//! * The queue count comes from `SIOCETHTOOL`/`ETHTOOL_GCHANNELS` (falling
//!   back to rtnetlink's `IFLA_NUM_RX_QUEUES`), not `/sys/class/net/IF/queues`:
//!   sysfs shows the namespace it was mounted in, so a thread that entered
//!   another namespace with `setns` would read the wrong device.
//! * Copy mode may kick TX more than once per port per `flush` (each kick
//!   sends at most 32 frames; the loop stops when the ring is empty or the
//!   kernel makes no progress, and is bounded by ring size / 32 + 2).
//! * `XdpAttachment`'s drop detaches with `BPF_LINK_DETACH` before closing
//!   the link fd: a concurrent `fork` (any `Command::spawn`) briefly holds a
//!   copy of the fd, and closing ours alone would detach only when that copy
//!   goes away.

mod asm;
mod attach;
mod backend;
mod bpf;
mod flow;
mod netlink;
mod ring;
mod socket;
mod sys;

pub use attach::testing;
pub use attach::XdpAttachment;
pub use backend::AfXdpBackend;
pub use flow::{FlowMap, FlowTable};

/// Which XDP attach mode to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a log line saying why.
    #[default]
    Auto,
    /// Driver mode only (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic (skb) mode only (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

/// Whether to bind the XSK sockets zero-copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ZeroCopy {
    /// Try `XDP_ZEROCOPY`, fall back to `XDP_COPY` with a log line.
    #[default]
    Auto,
    /// `XDP_ZEROCOPY` or fail.
    Required,
    /// `XDP_COPY`.
    Off,
}
