//! Replication records: the fixed-layout payload of each kind, the [`RecordSink`] the packet path
//! writes them into, and the rules for what is replicated.
//!
//! A record is `(kind, op, key, payload)`. `tandem-sync` knows nothing else: it writes the payload
//! bytes into a state-link frame, coalesces records with the same `(kind, key)` within a frame
//! (the later one overwrites the earlier), and on the standby hands `(kind, op, payload)` to
//! [`crate::Shard::apply`], which reads the payload in place (`ref_from_bytes`, no copy).
//!
//! Every payload is a `#[repr(C)]` zerocopy struct of a fixed size per kind, with explicit padding
//! and multi-byte fields in network byte order. A delete carries the same struct with the key
//! fields set and the rest zero. Times are relative (`idle_ms`, `*_remaining`), converted from and
//! to the local monotonic clock at encode and apply time: the units' clocks are unrelated.
//!
//! # What is replicated (seeds 004, "Supported Features" / "Unsupported Features")
//!
//! | state | replicated | why |
//! |---|---|---|
//! | TCP connections (state, translation, interfaces, idle age) | yes | "TCP and UDP connections and states" |
//! | UDP connections | yes | same |
//! | TCP to port 80 on the responder side (HTTP) | only with `replicate_http` (default off) | "By default, the ASA does not replicate HTTP session information"; seeds 003 `replication http`: HTTP connections are short-lived and clients retry |
//! | ICMP echo connections | only when the ingress interface is in an ASR group | "ICMP connection replication is enabled only if the respective interface is assigned to an asymmetric routing group" |
//! | other IP protocols | no (not tracked at all) | "Other types of IP protocols, and ICMP, are not parsed by the active unit, because they get established on the new active unit when a new packet arrives" |
//! | PAT xlates (both indexes: real→mapped and mapped→real) | yes, when a replicated connection uses them | "NAT translation table"; the standby rebuilds both indexes from one record |
//! | static NAT | no record needed | it is configuration, replicated with the configuration |
//! | ARP entries | yes, record defined here, applied by the dataplane's ARP table | "The ARP table" |
//! | IPsec SAs | yes | "The ISAKMP and IPsec SA table" |
//! | uauth, TCP state bypass, multicast, module state, clientless SSL VPN | no | "Unsupported Features" |
//!
//! When records are emitted:
//!
//! * connection create (after its xlate's record if the xlate is new to replication), every TCP
//!   state change, delete (RST, close, expiry);
//! * not per packet: idle refresh reaches the standby through a *touch* (an upsert with the current
//!   idle age) emitted by [`crate::Shard::expire`]'s sweep for a live connection that saw traffic
//!   and whose last record is older than a quarter of its idle timeout, so the standby never
//!   expires a flow the active still sees;
//! * xlate create (when first used by a replicated connection) and delete (when its PAT idle
//!   timeout runs out after the last connection);
//! * SA add and remove, and an outbound SA's sequence number every [`SA_SEQ_STEP`] packets (the
//!   standby resumes at the replicated value + `SA_SEQ_STEP`, so a sequence number is never reused
//!   after a failover).

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Where the packet path (and bulk sync) writes records. `tandem-sync`'s frame encoder implements
/// it; `key` identifies the entry within its kind for coalescing.
pub trait RecordSink {
    /// One record; `payload` is the kind's fixed-size struct as bytes.
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]);
}

/// A sink that drops everything (the standby, or a unit without a mate).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl RecordSink for NullSink {
    #[inline]
    fn put(&mut self, _: u8, _: u8, _: u64, _: &[u8]) {}
}

/// Create or update.
pub const OP_UPSERT: u8 = 1;
/// Delete.
pub const OP_DELETE: u8 = 2;

/// A connection ([`ConnRecord`]).
pub const KIND_CONN: u8 = 1;
/// A PAT xlate ([`XlateRecord`]).
pub const KIND_XLATE: u8 = 2;
/// An ARP entry ([`ArpRecord`]).
pub const KIND_ARP: u8 = 3;
/// An IPsec SA ([`SaRecord`]).
pub const KIND_SA: u8 = 4;

/// An outbound SA's sequence number is replicated every this many packets.
pub const SA_SEQ_STEP: u64 = 4096;

/// Connection flag: HTTP (TCP to port 80 on the responder side).
pub const CONN_FLAG_HTTP: u8 = 0x01;
/// Connection flag: the source translation is a PAT xlate (the standby refs or creates it).
pub const CONN_FLAG_PAT: u8 = 0x02;

/// A connection. Key: a stable hash of the original tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ConnRecord {
    /// Original tuple source address (as seen on the originating side).
    pub src: [u8; 4],
    /// Original destination.
    pub dst: [u8; 4],
    /// Translated source (as forwarded).
    pub xsrc: [u8; 4],
    /// Translated destination.
    pub xdst: [u8; 4],
    /// Original source port (ICMP echo request: the identifier).
    pub sport: U16,
    /// Original destination port (ICMP: 0).
    pub dport: U16,
    /// Translated source port.
    pub xsport: U16,
    /// Translated destination port.
    pub xdport: U16,
    /// Ingress interface of the originating side.
    pub in_if: U16,
    /// Egress interface.
    pub out_if: U16,
    /// IP protocol (1, 6, 17).
    pub proto: u8,
    /// [`crate::TcpState`] as `u8` (0 for UDP/ICMP).
    pub tcp_state: u8,
    /// [`crate::TimeoutClass`] as `u8` (informational: derived from proto and state on apply).
    pub class: u8,
    /// `CONN_FLAG_*`.
    pub flags: u8,
    /// Time since the last packet, in ms.
    pub idle_ms: U32,
    /// Explicit padding, zero.
    pub _pad: [u8; 4],
}

/// A PAT translation. Key: `proto << 48 | real ip << 16 | real port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct XlateRecord {
    /// IP protocol.
    pub proto: u8,
    /// [`XLATE_PAT`] (static translations are configuration and never sent; the value is
    /// reserved).
    pub kind: u8,
    /// Explicit padding, zero.
    pub _pad: [u8; 2],
    /// Real address.
    pub real: [u8; 4],
    /// Mapped address.
    pub mapped: [u8; 4],
    /// Real port (ICMP: echo identifier).
    pub real_port: U16,
    /// Mapped port.
    pub mapped_port: U16,
}

/// [`XlateRecord::kind`]: dynamic PAT.
pub const XLATE_PAT: u8 = 1;
/// [`XlateRecord::kind`]: static (reserved, not emitted).
pub const XLATE_STATIC: u8 = 2;

/// An ARP entry. Key: `ifindex << 32 | ip`. Applied by the dataplane's ARP table, not by
/// [`crate::Shard::apply`] (which answers [`crate::ApplyError::NotMine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ArpRecord {
    /// Interface index.
    pub ifindex: U16,
    /// MAC address.
    pub mac: [u8; 6],
    /// IPv4 address.
    pub ip: [u8; 4],
    /// Time since last confirmed, in ms.
    pub age_ms: U32,
}

impl ArpRecord {
    /// Reads a payload in place.
    pub fn parse(payload: &[u8]) -> Result<&ArpRecord, crate::ApplyError> {
        ArpRecord::ref_from_bytes(payload).map_err(|_| crate::ApplyError::Length {
            kind: KIND_ARP,
            len: payload.len(),
            want: core::mem::size_of::<ArpRecord>(),
        })
    }
}

/// An IPsec SA. Key: `spi << 8 | direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct SaRecord {
    /// SPI.
    pub spi: U32,
    /// [`crate::SaDirection`] as `u8`.
    pub direction: u8,
    /// IP protocol of the SA (50, ESP).
    pub protocol: u8,
    /// [`crate::Cipher`] as `u8`.
    pub cipher: u8,
    /// [`crate::Integrity`] as `u8`.
    pub integrity: u8,
    /// Peer address.
    pub peer: [u8; 4],
    /// Local address.
    pub local: [u8; 4],
    /// Encryption key length in bytes.
    pub enc_key_len: u8,
    /// Integrity key length in bytes.
    pub auth_key_len: u8,
    /// Replay window size in packets (64 or 128; 0 for outbound).
    pub replay_window: u8,
    /// Explicit padding, zero.
    pub _pad: u8,
    /// AEAD salt (RFC 4106 / RFC 7634), zero for other ciphers.
    pub salt: [u8; 4],
    /// Encryption key, `enc_key_len` bytes used.
    pub enc_key: [u8; 32],
    /// Integrity key, `auth_key_len` bytes used.
    pub auth_key: [u8; 64],
    /// Next sequence number (64-bit ESN) for outbound; highest seen for inbound.
    pub seq: U64,
    /// Replay window top (inbound).
    pub replay_top: U64,
    /// Replay bitmap, bit i = `replay_top - i` seen (big-endian u128).
    pub replay_bitmap: [u8; 16],
    /// Remaining lifetime in seconds (`u32::MAX`: none).
    pub life_secs_remaining: U32,
    /// Explicit padding, zero.
    pub _pad2: [u8; 4],
    /// Remaining lifetime in bytes (`u64::MAX`: none).
    pub life_bytes_remaining: U64,
    /// Age of the SA in ms.
    pub created_age_ms: U64,
}

/// Payload size of each kind (`None` for an unknown kind).
pub const fn payload_len(kind: u8) -> Option<usize> {
    match kind {
        KIND_CONN => Some(core::mem::size_of::<ConnRecord>()),
        KIND_XLATE => Some(core::mem::size_of::<XlateRecord>()),
        KIND_ARP => Some(core::mem::size_of::<ArpRecord>()),
        KIND_SA => Some(core::mem::size_of::<SaRecord>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_are_fixed_and_padded_explicitly() {
        // No implicit padding: IntoBytes would not derive otherwise; the sizes are part of the
        // wire contract with tandem-sync.
        assert_eq!(core::mem::size_of::<ConnRecord>(), 40);
        assert_eq!(core::mem::size_of::<XlateRecord>(), 16);
        assert_eq!(core::mem::size_of::<ArpRecord>(), 16);
        assert_eq!(core::mem::size_of::<SaRecord>(), 176);
    }

    #[test]
    fn golden_conn_record_bytes() {
        let r = ConnRecord {
            src: [198, 18, 0, 2],
            dst: [198, 19, 0, 2],
            xsrc: [198, 19, 0, 1],
            xdst: [198, 19, 0, 2],
            sport: U16::new(40000),
            dport: U16::new(80),
            xsport: U16::new(5555),
            xdport: U16::new(80),
            in_if: U16::new(1),
            out_if: U16::new(0),
            proto: 6,
            tcp_state: 3,
            class: 1,
            flags: CONN_FLAG_PAT,
            idle_ms: U32::new(1000),
            _pad: [0; 4],
        };
        let b = r.as_bytes();
        assert_eq!(&b[0..4], &[198, 18, 0, 2]);
        assert_eq!(&b[16..18], &40000u16.to_be_bytes());
        assert_eq!(&b[18..20], &[0, 80]);
        assert_eq!(&b[24..28], &[0, 1, 0, 0]);
        assert_eq!(&b[28..32], &[6, 3, 1, 2]);
        assert_eq!(&b[32..36], &1000u32.to_be_bytes());
        assert_eq!(ConnRecord::ref_from_bytes(b).unwrap(), &r);
    }
}
