//! The messages two units exchange, as plain Rust values. Encoding, authentication and encryption
//! are the link crate's job; this crate only decides what to say and when.
//!
//! Seeds 004, "Failover Link Data": the failover link carries the unit state, hello messages,
//! network link status, MAC address exchange and configuration replication. tandem puts the
//! first four in [`Hello`]; configuration replication is the control plane's (see
//! [`crate::Event::MateJoined`]). Remote command execution ([`ExecRequest`], [`ExecReply`]) is
//! carried here but acted on by the control plane only. LANTEST (seeds 004, "Unit Health Monitoring") goes on the failover
//! link and every data interface; interface hellos on every monitored data interface.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::types::{IfIndex, InterfaceStatus, Mac, Role, State};

/// A message between the two units of a pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Unit hello, on the failover link every unit polltime and at once on any change.
    Hello(Hello),
    /// LANTEST request or reply, on any link.
    LanTest(LanTest),
    /// Interface hello, on a monitored data interface every interface polltime.
    InterfaceHello(InterfaceHello),
    /// Operator command effect for the mate, on the failover link.
    Control(Control),
    /// `failover exec mate <command>`: run a command on the mate (control plane, type 16).
    ExecRequest(ExecRequest),
    /// One chunk of the mate's answer to an [`ExecRequest`] (control plane, type 17).
    ExecReply(ExecReply),
    /// One chunk of the active unit's configuration for its standby (control plane, type 18).
    ConfigChunk(ConfigChunk),
}

/// Seeds 004, "Running Configuration Replication": one chunk of the configuration the active
/// unit sends to a standby that joins (and again on `write standby`). The chunks' data,
/// concatenated in `seq` order, is the configuration text (TOML) without this unit's
/// bootstrap settings. Same size limit as [`ExecReply`]: [`MAX_EXEC_CHUNK`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChunk {
    /// Which sending of the configuration this chunk belongs to; a new generation restarts the
    /// reassembly.
    pub generation: u32,
    /// Position of this chunk, from 0.
    pub seq: u16,
    /// Whether this is the last chunk.
    pub last: bool,
    /// At most [`MAX_EXEC_CHUNK`] bytes of the configuration.
    pub data: Vec<u8>,
}

/// Longest command line an [`ExecRequest`] carries, in bytes.
pub const MAX_EXEC_COMMAND: usize = 1024;
/// Longest chunk of an [`ExecReply`], in bytes: with the headers it fits a 1500-byte failover
/// link MTU.
pub const MAX_EXEC_CHUNK: usize = 1200;

/// Seeds 003, "Remote command execution": a command for the mate's own command executor. The
/// unit state machine never sees it; the control plane (`tandemd`) runs it and answers with
/// [`ExecReply`] chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// Chosen by the requester, echoed in every reply chunk; a reply to another id is stale.
    pub id: u32,
    /// The command words (UTF-8, at most [`MAX_EXEC_COMMAND`] bytes).
    pub command: String,
}

/// One chunk of the answer to an [`ExecRequest`]: the chunks' data, concatenated in `seq`
/// order, is the answer (the control API's JSON response line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecReply {
    /// The request's id.
    pub id: u32,
    /// Position of this chunk, from 0.
    pub seq: u16,
    /// Whether this is the last chunk.
    pub last: bool,
    /// At most [`MAX_EXEC_CHUNK`] bytes of the answer.
    pub data: Vec<u8>,
}

/// The unit hello: who the sender is, its state, and its view of its interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's configured role.
    pub role: Role,
    /// The sender's failover state.
    pub state: State,
    /// Whether failover is enabled on the sender (`no failover` clears it; the mate's standby
    /// then becomes pseudo-standby).
    pub failover_enabled: bool,
    /// The sender's activation term: how many times the pair has changed its active unit, as the
    /// sender knows it. Decides which unit keeps active when both are (see
    /// [`crate::Reason::DualActive`]).
    pub term: u64,
    /// The sender's own MAC on the failover link (tie-break for a role conflict).
    pub failover_mac: Mac,
    /// MAC address exchange: the sender's own (burned-in) MAC of each data interface, in
    /// interface order.
    pub macs: Vec<Mac>,
    /// Network link status: the sender's report for each data interface, in interface order.
    pub interfaces: Vec<InterfaceReport>,
}

/// One unit's report on one of its data interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceReport {
    /// The sender's own status of the interface (before the both-units rule).
    pub status: InterfaceStatus,
    /// Whether the sender counts it as failed for the interface policy (monitored, and failed,
    /// or without link for at least an interface polltime).
    pub counts_failed: bool,
    /// How long before sending the hello the sender last received a frame on the interface
    /// (`None`: never). Tells the mate whether "this same interface on the other unit continues to
    /// successfully pass traffic" (seeds 004) without synchronised clocks.
    pub rx_age: Option<Duration>,
}

/// LANTEST: "validate whether or not the peer is responsive" (seeds 004, "Unit Health
/// Monitoring").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanTest {
    /// Request or reply.
    pub kind: LanTestKind,
    /// Chosen by the requester, echoed by the replier; a reply to an older round is ignored.
    pub nonce: u32,
}

/// Direction of a LANTEST message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanTestKind {
    /// Sent by the unit that missed hellos.
    Request,
    /// Sent back on the link the request came in on.
    Reply,
}

/// Interface hello: "hello messages are exchanged during every interface poll frequency time
/// period" (seeds 003).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceHello {
    /// The interface it is sent on (a check against miswiring).
    pub iface: IfIndex,
}

/// Effects of operator commands that the mate must carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// `no failover active` on the active unit: "mate, become active". Repeated every unit
    /// polltime until the mate is active or a unit holdtime has passed.
    TakeOver,
    /// `failover reset` on the active unit: "mate, if you are failed, return to standby" (seeds
    /// 004, "Restore a Failed Unit": "Clicking this button on the active unit resets the standby
    /// unit").
    Reset,
}
