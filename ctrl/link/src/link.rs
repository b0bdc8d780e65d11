//! [`SecureLink`]: the sans-IO session layer of one failover or state link — the nonce
//! handshake that yields a fresh session per pair of unit incarnations, sealing and opening data
//! frames in place, the replay window, rekeying, and the events and counters the daemon logs.
//!
//! The handshake (details and diagrams in `docs/secure-link.md`): each side sends a hello with a
//! fresh random nonce; a side that learns the other's nonce answers with a hello that echoes it;
//! a side whose own current nonce comes back in an authenticated hello knows the mate is live and
//! holds the failover key, and establishes the session keyed by HKDF(link key, both nonces). A
//! hello that echoes a nonce this side no longer holds (a recording of an older handshake) is
//! ignored, so replayed hellos can neither establish nor disturb a session; frames of an older
//! session carry an unknown session id and fail.

use core::fmt;
use core::ops::Range;
use core::time::Duration;

use crate::crypto::{LinkSecrets, SessionKeys};
use crate::key::Security;
use crate::replay::{ReplayError, ReplayWindow};
use crate::wire::{
    self, DataPacket, DataRepr, FrameType, HelloPacket, HelloRepr, LinkKind, Protection, WireError,
    DATA_HEADER_LEN, HELLO_LEN, MAX_PAYLOAD, NONCE_LEN,
};

/// Where the link gets handshake nonces. Production: the operating system's CSPRNG (e.g.
/// `getrandom`); the nonces must never repeat and should be unpredictable. Tests: a seeded fake
/// (`testutil::FakeNonces`).
pub trait NonceSource {
    /// Fills `nonce` with fresh random bytes.
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]);
}

impl<F: FnMut(&mut [u8; NONCE_LEN])> NonceSource for F {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) {
        self(nonce)
    }
}

/// Linux interface name (at most 15 bytes), kept inline so events and errors can name the link's
/// interface without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; 15],
}

impl IfName {
    /// `name` must be 1 to 15 bytes without whitespace or `/` (the kernel's rules).
    pub fn new(name: &str) -> Result<IfName, LinkConfigError> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 15 || b.iter().any(|c| c.is_ascii_whitespace() || *c == b'/') {
            return Err(LinkConfigError::InterfaceName { len: b.len() });
        }
        let mut bytes = [0u8; 15];
        bytes[..b.len()].copy_from_slice(b);
        Ok(IfName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Settings of one link. [`LinkConfig::new`] gives the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Failover link or state link.
    pub kind: LinkKind,
    /// The interface the link runs on (for events and errors).
    pub interface: IfName,
    /// First hello retransmission while a handshake is incomplete (default 100 ms); doubled after
    /// each retransmission up to `handshake_retransmit_max`.
    pub handshake_retransmit: Duration,
    /// Longest retransmission interval (default 1 s).
    pub handshake_retransmit_max: Duration,
    /// How long a handshake that an unconfirmed hello started is kept while a session is running
    /// (default 5 s). Such a hello may be a replay; the running session is never disturbed by
    /// it, and the probe is dropped if the mate does not answer.
    pub probe_lifetime: Duration,
    /// Least time between two reports of rejected frames (default 10 s); rejections in between
    /// are counted and the count goes with the next report.
    pub reject_report_interval: Duration,
    /// Frames sent in one session before a new handshake starts (default 2^40). Sealing refuses
    /// at twice this number if that handshake has not finished, so a nonce is never reused.
    /// At most 2^62.
    pub rekey_after_frames: u64,
    /// Payload bytes sealed in one session before a new handshake starts (default 2^38 = 256
    /// GiB, i.e. 2^34 AES blocks, keeping the GCM distinguishing advantage near 2^-60; TLS 1.3
    /// and QUIC bound AES-GCM usage the same way, RFC 8446 §5.5, RFC 9001 §6.6). Sealing refuses
    /// at twice this number if that handshake has not finished. At most 2^62.
    pub rekey_after_bytes: u64,
    /// Frames that failed authentication in one session before a new handshake starts (default
    /// 2^52, the AES-GCM integrity limit of RFC 9001 §6.6).
    pub rekey_after_forgeries: u64,
    /// After a rekey, how long frames of the replaced session are still accepted (default 2 s):
    /// the mate switches one round trip later, and frames it sealed meanwhile are genuine. Not
    /// after a mate restart: the old incarnation's frames are refused at once.
    pub rekey_grace: Duration,
}

impl LinkConfig {
    /// The defaults for `kind` on `interface`.
    pub fn new(kind: LinkKind, interface: IfName) -> LinkConfig {
        LinkConfig {
            kind,
            interface,
            handshake_retransmit: Duration::from_millis(100),
            handshake_retransmit_max: Duration::from_secs(1),
            probe_lifetime: Duration::from_secs(5),
            reject_report_interval: Duration::from_secs(10),
            rekey_after_frames: 1 << 40,
            rekey_after_bytes: 1 << 38,
            rekey_after_forgeries: 1 << 52,
            rekey_grace: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> Result<(), LinkConfigError> {
        if self.handshake_retransmit.is_zero() {
            return Err(LinkConfigError::ZeroRetransmit);
        }
        if self.handshake_retransmit_max < self.handshake_retransmit {
            return Err(LinkConfigError::RetransmitMaxBelowFirst);
        }
        if self.rekey_after_frames == 0 || self.rekey_after_frames > 1 << 62 {
            return Err(LinkConfigError::RekeyAfterFrames {
                value: self.rekey_after_frames,
            });
        }
        if self.rekey_after_bytes == 0 || self.rekey_after_bytes > 1 << 62 {
            return Err(LinkConfigError::RekeyAfterBytes {
                value: self.rekey_after_bytes,
            });
        }
        if self.rekey_after_forgeries == 0 {
            return Err(LinkConfigError::ZeroForgeries);
        }
        Ok(())
    }
}

/// A [`LinkConfig`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkConfigError {
    /// Interface name empty, too long or with forbidden characters.
    #[error("interface name must be 1 to 15 bytes without spaces or '/' ({len} bytes given)")]
    InterfaceName {
        /// Bytes given.
        len: usize,
    },
    /// `handshake_retransmit` is zero.
    #[error("secure link: handshake_retransmit must be above zero")]
    ZeroRetransmit,
    /// `handshake_retransmit_max` < `handshake_retransmit`.
    #[error("secure link: handshake_retransmit_max must be at least handshake_retransmit")]
    RetransmitMaxBelowFirst,
    /// `rekey_after_frames` out of range.
    #[error("secure link: rekey_after_frames {value} is out of range 1..=2^62")]
    RekeyAfterFrames {
        /// Value given.
        value: u64,
    },
    /// `rekey_after_bytes` out of range.
    #[error("secure link: rekey_after_bytes {value} is out of range 1..=2^62")]
    RekeyAfterBytes {
        /// Value given.
        value: u64,
    },
    /// `rekey_after_forgeries` is zero.
    #[error("secure link: rekey_after_forgeries must be above zero")]
    ZeroForgeries,
}

/// Names one session: derived from both handshake nonces, carried in every data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u32);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// Why a session came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstablishCause {
    /// The first session of this unit's life.
    First,
    /// The mate started afresh (a restart, or its first session) while this unit held a session.
    MateRestarted,
    /// A planned replacement of a running session (sequence or forgery limit).
    Rekeyed,
}

/// Why a mate's frames are refused; reported as [`EventKind::Rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A hello whose MAC does not verify: the failover keys most likely differ.
    AuthenticationFailed,
    /// The mate runs in clear text while this unit has a failover key.
    MateCleartext,
    /// The mate has a failover key while this unit runs in clear text.
    MateEncrypted,
    /// The mate speaks another secure-link version.
    Version(u8),
    /// The mate sends the other link's frames on this interface.
    WrongLink(LinkKind),
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::AuthenticationFailed => {
                f.write_str("authentication failed — failover keys differ?")
            }
            RejectReason::MateCleartext => f.write_str(
                "it sends clear text but this unit has a failover key — configure the same key \
                 on both units",
            ),
            RejectReason::MateEncrypted => f.write_str(
                "it uses a failover key but this unit has none — configure the same key on both \
                 units",
            ),
            RejectReason::Version(v) => write!(
                f,
                "it speaks secure-link version {v}, this unit version {} — run the same tandem \
                 release on both units",
                wire::VERSION
            ),
            RejectReason::WrongLink(k) => write!(
                f,
                "it sends {} frames on this interface — failover/state link settings differ?",
                k.name()
            ),
        }
    }
}

/// What happened, for the daemon to log (and count). `Display` gives the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Which link.
    pub link: LinkKind,
    /// On which interface.
    pub interface: IfName,
    /// What.
    pub kind: EventKind,
}

/// The events of a [`SecureLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A session with the mate is up; data frames of any older session are refused from now on.
    Established {
        /// The new session.
        session: SessionId,
        /// First, after a mate restart, or a rekey.
        cause: EstablishCause,
        /// Encrypted or clear text.
        protection: Protection,
    },
    /// Frames from the mate were refused and not trusted.
    Rejected {
        /// Why.
        reason: RejectReason,
        /// Frames refused for this reason since the previous report (including this one).
        count: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (link, ifc) = (self.link.name(), self.interface);
        match self.kind {
            EventKind::Established {
                session,
                cause,
                protection,
            } => {
                let how = match protection {
                    Protection::Aes256Gcm => "encrypted, AES-256-GCM",
                    Protection::Cleartext => "CLEAR TEXT, no failover key",
                };
                match cause {
                    EstablishCause::First => {
                        write!(
                            f,
                            "{link} {ifc}: session {session} with the mate up ({how})"
                        )
                    }
                    EstablishCause::MateRestarted => write!(
                        f,
                        "{link} {ifc}: mate restarted; new session {session} ({how}), frames of \
                         the old session are refused"
                    ),
                    EstablishCause::Rekeyed => {
                        write!(f, "{link} {ifc}: session rekeyed, now {session} ({how})")
                    }
                }
            }
            EventKind::Rejected { reason, count } => write!(
                f,
                "mate at {ifc} rejected ({link}): {reason} ({count} frame{} since the last report)",
                if count == 1 { "" } else { "s" }
            ),
        }
    }
}

/// Why a received frame was dropped. Every drop is also counted in [`LinkCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed secure-link frame.
    Malformed,
    /// Another secure-link version.
    Version,
    /// A frame of the other link.
    WrongLink,
    /// Clear text where a key is configured, or the reverse.
    ProtectionMismatch,
    /// Hello MAC did not verify.
    AuthFailed,
    /// Data frame did not authenticate (tampered, forged, or sealed with other keys).
    DecryptFailed,
    /// Sequence number already received.
    Duplicate,
    /// Sequence number older than the replay window.
    TooOld,
    /// Data frame of a session this unit does not hold (an older session, or none yet).
    UnknownSession,
    /// Hello carrying this unit's own nonce (reflected back).
    Reflected,
    /// Hello answering a nonce this unit no longer holds (delayed or replayed).
    StaleHello,
}

/// Counters of one link, bumped once per frame; for `show failover` and scraping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Data frames sealed.
    pub tx_data: u64,
    /// Hellos sent.
    pub tx_hello: u64,
    /// Data frames accepted.
    pub rx_data: u64,
    /// Authenticated hellos received.
    pub rx_hello: u64,
    /// [`DropReason::Malformed`].
    pub drop_malformed: u64,
    /// [`DropReason::Version`].
    pub drop_version: u64,
    /// [`DropReason::WrongLink`].
    pub drop_wrong_link: u64,
    /// [`DropReason::ProtectionMismatch`].
    pub drop_protection_mismatch: u64,
    /// [`DropReason::AuthFailed`].
    pub drop_auth_failed: u64,
    /// [`DropReason::DecryptFailed`].
    pub drop_decrypt_failed: u64,
    /// [`DropReason::Duplicate`].
    pub drop_duplicate: u64,
    /// [`DropReason::TooOld`].
    pub drop_too_old: u64,
    /// [`DropReason::UnknownSession`].
    pub drop_unknown_session: u64,
    /// [`DropReason::Reflected`].
    pub drop_reflected: u64,
    /// [`DropReason::StaleHello`].
    pub drop_stale_hello: u64,
    /// Sessions established (all causes).
    pub sessions: u64,
    /// Of which rekeys.
    pub rekeys: u64,
    /// Handshakes started (own start, rekeys, probes after a mate's new nonce).
    pub handshakes_started: u64,
    /// Probes dropped after `probe_lifetime` without an answer.
    pub probes_abandoned: u64,
    /// Events lost because the daemon did not drain `poll_event` (queue of 8).
    pub events_lost: u64,
}

impl LinkCounters {
    fn bump_drop(&mut self, r: DropReason) {
        let c = match r {
            DropReason::Malformed => &mut self.drop_malformed,
            DropReason::Version => &mut self.drop_version,
            DropReason::WrongLink => &mut self.drop_wrong_link,
            DropReason::ProtectionMismatch => &mut self.drop_protection_mismatch,
            DropReason::AuthFailed => &mut self.drop_auth_failed,
            DropReason::DecryptFailed => &mut self.drop_decrypt_failed,
            DropReason::Duplicate => &mut self.drop_duplicate,
            DropReason::TooOld => &mut self.drop_too_old,
            DropReason::UnknownSession => &mut self.drop_unknown_session,
            DropReason::Reflected => &mut self.drop_reflected,
            DropReason::StaleHello => &mut self.drop_stale_hello,
        };
        *c += 1;
    }
}

/// A data frame that was accepted: its payload, now clear text, is `buf[payload]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Where the payload is in the caller's buffer.
    pub payload: Range<usize>,
    /// Its sequence number in the session (gap detection for the layer above).
    pub seq: u64,
    /// Its session: a new value means the mate restarted or rekeyed, and sequence numbers began
    /// again at 0.
    pub session: SessionId,
}

/// What [`SecureLink::handle_frame`] made of a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An accepted data frame.
    Data(Opened),
    /// A handshake hello, consumed; check `poll_transmit` and `poll_event`.
    Handshake,
    /// Dropped (and counted); maybe an event to poll.
    Dropped(DropReason),
}

/// Why [`SecureLink::seal`] did not produce a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// No session with the mate yet.
    #[error("{} {interface}: no session with the mate yet (handshake not complete)", link.name())]
    NoSession {
        /// Which link.
        link: LinkKind,
        /// Its interface.
        interface: IfName,
    },
    /// The buffer cannot hold header, payload and tag.
    #[error("{} {interface}: buffer of {len} bytes cannot hold a {need}-byte frame", link.name())]
    BufferTooSmall {
        /// Which link.
        link: LinkKind,
        /// Its interface.
        interface: IfName,
        /// Bytes the frame needs.
        need: usize,
        /// Bytes given.
        len: usize,
    },
    /// The payload exceeds [`MAX_PAYLOAD`].
    #[error("{} {interface}: payload of {len} bytes exceeds the 65535-byte limit", link.name())]
    PayloadTooLong {
        /// Which link.
        link: LinkKind,
        /// Its interface.
        interface: IfName,
        /// Payload bytes given.
        len: usize,
    },
    /// The session's sequence numbers are used up and the rekey handshake has not finished.
    #[error("{} {interface}: session used up; waiting for the rekey handshake", link.name())]
    RekeyPending {
        /// Which link.
        link: LinkKind,
        /// Its interface.
        interface: IfName,
    },
}

struct Session {
    keys: SessionKeys,
    my_nonce: [u8; NONCE_LEN],
    peer_nonce: [u8; NONCE_LEN],
    next_seq: u64,
    /// Payload bytes sealed (AES-GCM usage limit).
    bytes_sealed: u64,
    window: ReplayWindow,
    forgeries: u64,
    /// This session replaced an older one of this unit (the hello REKEY flag).
    replaced: bool,
}

/// Why a handshake started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Construction: no session yet.
    Start,
    /// Sequence or forgery limit of the running session.
    Rekey,
    /// A hello with a nonce this unit had not seen, while a session runs (a mate restart, its
    /// rekey — or a replay, hence the probe lifetime).
    Probe,
}

struct Attempt {
    my_nonce: [u8; NONCE_LEN],
    /// The session with the most recent peer nonce heard, derived ahead of confirmation so that
    /// a data frame under it (implicit confirmation) can be opened.
    candidate: Option<Session>,
    /// The peer's hellos for the candidate carried REKEY.
    peer_rekey: bool,
    /// A session was running when this handshake started (our hellos carry REKEY).
    replaces: bool,
    interval: Duration,
    next_retransmit: Duration,
    expires: Option<Duration>,
}

/// Hello queued for `poll_transmit`: slot 0 answers about the running session, slot 1 is the
/// pending handshake's own hello. A newer hello for a slot replaces the older one.
const SLOT_CONFIRM: usize = 0;
const SLOT_ATTEMPT: usize = 1;
const EVENT_CAP: usize = 8;

/// Secure session layer of one failover or state link (sans-IO).
///
/// Owns no socket and reads no clock: time comes in as `now` (a `Duration` since any fixed
/// epoch, monotonic) and randomness from the [`NonceSource`] given at construction.
///
/// # Driving it
///
/// * Received frame → [`handle_frame`](Self::handle_frame); a data frame's payload is decrypted
///   in place and its range returned.
/// * Payload to send → write it at `buf[DATA_HEADER_LEN..]`, then [`seal`](Self::seal).
/// * After either, and after [`handle_timeout`](Self::handle_timeout): drain
///   [`poll_event`](Self::poll_event) (log each), drain [`poll_transmit`](Self::poll_transmit)
///   (send each hello), then re-arm the timer from [`poll_timeout`](Self::poll_timeout).
///
/// Construction starts the first handshake, so poll right after `new`.
pub struct SecureLink<N: NonceSource> {
    cfg: LinkConfig,
    secrets: LinkSecrets,
    nonces: N,
    current: Option<Session>,
    /// The session a rekey replaced, receive-only until the instant given.
    previous: Option<(Session, Duration)>,
    attempt: Option<Attempt>,
    pending: [Option<HelloRepr>; 2],
    events: [Option<Event>; EVENT_CAP],
    event_head: usize,
    event_len: usize,
    reject_unreported: u64,
    reject_last: Option<(RejectReason, Duration)>,
    counters: LinkCounters,
}

impl<N: NonceSource> fmt::Debug for SecureLink<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureLink")
            .field("kind", &self.cfg.kind)
            .field("interface", &self.cfg.interface)
            .field("protection", &self.protection())
            .field("session", &self.session_id())
            .field("handshaking", &self.attempt.is_some())
            .finish_non_exhaustive()
    }
}

impl<N: NonceSource> SecureLink<N> {
    /// A link that starts its first handshake at `now` (a hello is ready in `poll_transmit`).
    pub fn new(
        cfg: LinkConfig,
        security: &Security,
        nonces: N,
        now: Duration,
    ) -> Result<SecureLink<N>, LinkConfigError> {
        cfg.validate()?;
        let mut link = SecureLink {
            secrets: LinkSecrets::new(security, cfg.kind),
            cfg,
            nonces,
            current: None,
            previous: None,
            attempt: None,
            pending: [None, None],
            events: [None; EVENT_CAP],
            event_head: 0,
            event_len: 0,
            reject_unreported: 0,
            reject_last: None,
            counters: LinkCounters::default(),
        };
        link.start_attempt(now, Trigger::Start);
        Ok(link)
    }

    // ----- getters ---------------------------------------------------------------------------

    /// Failover or state link.
    pub fn kind(&self) -> LinkKind {
        self.cfg.kind
    }

    /// The interface it runs on.
    pub fn interface(&self) -> IfName {
        self.cfg.interface
    }

    /// Encrypted or clear text.
    pub fn protection(&self) -> Protection {
        self.secrets.protection()
    }

    /// A session with the mate is up: `seal` works.
    pub fn is_established(&self) -> bool {
        self.current.is_some()
    }

    /// The running session.
    pub fn session_id(&self) -> Option<SessionId> {
        self.current.as_ref().map(|s| SessionId(s.keys.id))
    }

    /// A handshake is in progress (first, rekey, or probe).
    pub fn is_handshaking(&self) -> bool {
        self.attempt.is_some()
    }

    /// Sequence number the next sealed frame gets.
    pub fn next_seq(&self) -> Option<u64> {
        self.current.as_ref().map(|s| s.next_seq)
    }

    /// Counters.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Bytes a data frame adds around its payload: header, and the tag when encrypted.
    pub fn overhead(&self) -> usize {
        DATA_HEADER_LEN + self.protection().tag_len()
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Seals the payload at `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + payload_len]` in place:
    /// writes the header in front, encrypts, appends the tag. Returns the frame length
    /// (`payload_len + overhead()`). No allocation; one AEAD pass over the payload.
    pub fn seal(
        &mut self,
        now: Duration,
        payload_len: usize,
        buf: &mut [u8],
    ) -> Result<usize, SealError> {
        let (link, interface) = (self.cfg.kind, self.cfg.interface);
        if payload_len > MAX_PAYLOAD {
            return Err(SealError::PayloadTooLong {
                link,
                interface,
                len: payload_len,
            });
        }
        let protection = self.protection();
        let repr = DataRepr {
            link,
            protection,
            session: 0,
            seq: 0,
            payload_len: payload_len as u16,
        };
        let need = repr.buffer_len();
        if buf.len() < need {
            return Err(SealError::BufferTooSmall {
                link,
                interface,
                need,
                len: buf.len(),
            });
        }
        let (soft_frames, soft_bytes) = (self.cfg.rekey_after_frames, self.cfg.rekey_after_bytes);
        let Some(session) = self.current.as_mut() else {
            return Err(SealError::NoSession { link, interface });
        };
        let seq = session.next_seq;
        let bytes = session.bytes_sealed + payload_len as u64;
        if seq >= soft_frames * 2 || bytes > soft_bytes * 2 {
            if self.attempt.is_none() {
                self.start_attempt(now, Trigger::Rekey);
            }
            return Err(SealError::RekeyPending { link, interface });
        }
        let repr = DataRepr {
            session: session.keys.id,
            seq,
            ..repr
        };
        let frame = &mut buf[..need];
        if repr.emit(frame).is_err() {
            // Unreachable: the length was checked above.
            return Err(SealError::BufferTooSmall {
                link,
                interface,
                need,
                len: frame.len(),
            });
        }
        let mut pkt = DataPacket::new_unchecked(frame);
        let (header, payload, tag) = pkt.split_mut();
        if session.keys.seal(seq, header, payload, tag).is_err() {
            // Unreachable: AES-GCM takes up to 64 GiB per call.
            return Err(SealError::PayloadTooLong {
                link,
                interface,
                len: payload_len,
            });
        }
        session.next_seq = seq + 1;
        session.bytes_sealed = bytes;
        self.counters.tx_data += 1;
        let used_up = session.next_seq >= soft_frames || bytes >= soft_bytes;
        if used_up && self.attempt.is_none() {
            self.start_attempt(now, Trigger::Rekey);
        }
        Ok(need)
    }

    /// Writes the next queued hello into `buf` (which must hold [`HELLO_LEN`] bytes) and returns
    /// its length; `None` when nothing is queued (or `buf` is too short: the hello stays queued).
    pub fn poll_transmit(&mut self, now: Duration, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < HELLO_LEN {
            return None;
        }
        let slot = self.pending.iter().position(Option::is_some)?;
        let hello = self.pending[slot].take()?;
        let frame = &mut buf[..HELLO_LEN];
        hello.emit(frame).ok()?;
        let mac = self.secrets.hello_mac(&frame[..wire::HELLO_BODY_LEN]);
        HelloPacket::new_unchecked(&mut *frame).set_mac(&mac);
        if slot == SLOT_ATTEMPT {
            if let Some(a) = self.attempt.as_mut() {
                a.next_retransmit = now + a.interval;
            }
        }
        self.counters.tx_hello += 1;
        Some(HELLO_LEN)
    }

    // ----- timers ----------------------------------------------------------------------------

    /// When `handle_timeout` must next be called (`None`: no timer).
    pub fn poll_timeout(&self) -> Option<Duration> {
        let attempt = self.attempt.as_ref().map(|a| match a.expires {
            Some(e) => e.min(a.next_retransmit),
            None => a.next_retransmit,
        });
        let previous = self.previous.as_ref().map(|&(_, until)| until);
        match (attempt, previous) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Runs expired timers: hello retransmission (with backoff), probe expiry, the end of a
    /// replaced session's grace.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self
            .previous
            .as_ref()
            .is_some_and(|&(_, until)| now >= until)
        {
            self.previous = None;
        }
        let max = self.cfg.handshake_retransmit_max;
        let Some(a) = self.attempt.as_mut() else {
            return;
        };
        if a.expires.is_some_and(|e| now >= e) && self.current.is_some() {
            self.attempt = None;
            self.pending[SLOT_ATTEMPT] = None;
            self.counters.probes_abandoned += 1;
            return;
        }
        if now >= a.next_retransmit {
            a.interval = (a.interval * 2).min(max);
            a.next_retransmit = now + a.interval;
            self.queue_attempt_hello();
        }
    }

    // ----- receiving -------------------------------------------------------------------------

    /// Handles one received frame (the bytes after the transport header). A data frame is
    /// authenticated, checked against the replay window and decrypted in place; a hello advances
    /// the handshake. Never panics, whatever the bytes.
    pub fn handle_frame(&mut self, now: Duration, buf: &mut [u8]) -> Received {
        let r = match wire::peek(buf) {
            Err(WireError::UnsupportedVersion) => {
                let version = buf.first().copied().unwrap_or(0);
                self.reject(now, RejectReason::Version(version));
                Err(DropReason::Version)
            }
            Err(_) => Err(DropReason::Malformed),
            Ok((_, kind)) if kind != self.cfg.kind => {
                self.reject(now, RejectReason::WrongLink(kind));
                Err(DropReason::WrongLink)
            }
            Ok((FrameType::Hello, _)) => self.handle_hello(now, buf).map(|()| Received::Handshake),
            Ok((FrameType::Data, _)) => self.handle_data(now, buf).map(Received::Data),
        };
        match r {
            Ok(r) => r,
            Err(reason) => {
                self.counters.bump_drop(reason);
                Received::Dropped(reason)
            }
        }
    }

    fn handle_hello(&mut self, now: Duration, buf: &[u8]) -> Result<(), DropReason> {
        let pkt = HelloPacket::new_checked(buf).map_err(|_| DropReason::Malformed)?;
        let hello = HelloRepr::parse(&pkt).map_err(|_| DropReason::Malformed)?;
        if hello.protection != self.protection() {
            let reason = match hello.protection {
                Protection::Cleartext => RejectReason::MateCleartext,
                Protection::Aes256Gcm => RejectReason::MateEncrypted,
            };
            self.reject(now, reason);
            return Err(DropReason::ProtectionMismatch);
        }
        if !self
            .secrets
            .verify_hello(pkt.authenticated_bytes(), pkt.mac())
        {
            self.reject(now, RejectReason::AuthenticationFailed);
            return Err(DropReason::AuthFailed);
        }
        self.counters.rx_hello += 1;
        self.on_hello(now, &hello)
    }

    fn is_my_nonce(&self, n: &[u8; NONCE_LEN]) -> bool {
        self.current.as_ref().is_some_and(|s| &s.my_nonce == n)
            || self.attempt.as_ref().is_some_and(|a| &a.my_nonce == n)
    }

    /// The handshake rules (docs/secure-link.md, "Handshake rules"), for an authenticated hello.
    fn on_hello(&mut self, now: Duration, h: &HelloRepr) -> Result<(), DropReason> {
        let pn = h.nonce;
        if self.is_my_nonce(&pn) {
            return Err(DropReason::Reflected);
        }
        if let Some(echo) = &h.echo {
            if !self.is_my_nonce(echo) {
                return Err(DropReason::StaleHello);
            }
        }
        // Rule 1: a hello of the running session's mate about that session.
        if let Some(cur) = &self.current {
            if cur.peer_nonce == pn && h.echo.is_none_or(|e| e == cur.my_nonce) {
                if !h.confirmed {
                    self.pending[SLOT_CONFIRM] =
                        Some(self.hello_for(cur.my_nonce, Some(pn), true, cur.replaced));
                }
                return Ok(());
            }
        }
        // Rule 4: a nonce not seen before while a session runs and no handshake is pending:
        // probe it with a fresh handshake, leaving the running session untouched.
        if self.attempt.is_none() {
            self.start_attempt(now, Trigger::Probe);
        }
        let Some(a) = self.attempt.as_mut() else {
            return Ok(());
        };
        if h.echo == Some(a.my_nonce) {
            // Rule 2: our own pending nonce came back, authenticated: the mate is live.
            let peer_rekey = h.rekey
                || (a.peer_rekey && a.candidate.as_ref().is_some_and(|c| c.peer_nonce == pn));
            self.establish(now, pn, peer_rekey);
            if !h.confirmed {
                if let Some(cur) = &self.current {
                    self.pending[SLOT_CONFIRM] =
                        Some(self.hello_for(cur.my_nonce, Some(pn), true, cur.replaced));
                }
            }
            return Ok(());
        }
        // Rule 3: learn (or update) the mate's nonce and answer with an echo of it.
        if a.candidate.as_ref().is_none_or(|c| c.peer_nonce != pn) {
            let keys = self.secrets.session(&a.my_nonce, &pn);
            a.candidate = Some(Session {
                keys,
                my_nonce: a.my_nonce,
                peer_nonce: pn,
                next_seq: 0,
                bytes_sealed: 0,
                window: ReplayWindow::new(),
                forgeries: 0,
                replaced: a.replaces,
            });
        }
        a.peer_rekey = h.rekey;
        self.queue_attempt_hello();
        Ok(())
    }

    fn handle_data(&mut self, now: Duration, buf: &mut [u8]) -> Result<Opened, DropReason> {
        let mut pkt = DataPacket::new_checked(buf).map_err(|_| DropReason::Malformed)?;
        if pkt.protection() != self.protection() as u8 {
            return Err(DropReason::ProtectionMismatch);
        }
        let (id, seq) = (pkt.session(), pkt.seq());
        let in_current = self.current.as_ref().is_some_and(|s| s.keys.id == id);
        let in_previous = !in_current
            && self
                .previous
                .as_ref()
                .is_some_and(|(s, until)| s.keys.id == id && now < *until);
        let session = if in_current {
            self.current.as_mut()
        } else if in_previous {
            self.previous.as_mut().map(|(s, _)| s)
        } else {
            self.attempt
                .as_mut()
                .and_then(|a| a.candidate.as_mut())
                .filter(|c| c.keys.id == id)
        };
        let Some(session) = session else {
            return Err(DropReason::UnknownSession);
        };
        // RFC 4303 §3.4.3: the cheap replay check first, the window moves only after the frame
        // authenticated.
        session.window.check(seq).map_err(replay_drop)?;
        let (header, payload, tag) = pkt.split_mut();
        if session.keys.open(seq, header, payload, tag).is_err() {
            session.forgeries += 1;
            let over = session.forgeries >= self.cfg.rekey_after_forgeries;
            if in_current && over && self.attempt.is_none() {
                self.start_attempt(now, Trigger::Rekey);
            }
            return Err(DropReason::DecryptFailed);
        }
        session.window.accept(seq).map_err(replay_drop)?;
        if !in_current && !in_previous {
            // Implicit confirmation: only a mate holding the key and our fresh nonce can seal
            // under the candidate's keys.
            let (pn, rekey) = match &self.attempt {
                Some(a) => (a.candidate.as_ref().map(|c| c.peer_nonce), a.peer_rekey),
                None => (None, false),
            };
            if let Some(pn) = pn {
                self.establish(now, pn, rekey);
            }
        }
        self.counters.rx_data += 1;
        let start = DATA_HEADER_LEN;
        Ok(Opened {
            payload: start..start + usize::from(pkt.payload_len()),
            seq,
            session: SessionId(id),
        })
    }

    // ----- internals -------------------------------------------------------------------------

    fn hello_for(
        &self,
        nonce: [u8; NONCE_LEN],
        echo: Option<[u8; NONCE_LEN]>,
        confirmed: bool,
        rekey: bool,
    ) -> HelloRepr {
        HelloRepr {
            link: self.cfg.kind,
            protection: self.protection(),
            nonce,
            echo,
            confirmed,
            rekey,
        }
    }

    fn queue_attempt_hello(&mut self) {
        if let Some(a) = &self.attempt {
            let echo = a.candidate.as_ref().map(|c| c.peer_nonce);
            self.pending[SLOT_ATTEMPT] = Some(self.hello_for(a.my_nonce, echo, false, a.replaces));
        }
    }

    fn start_attempt(&mut self, now: Duration, trigger: Trigger) {
        let mut nonce = [0u8; NONCE_LEN];
        self.nonces.fill_nonce(&mut nonce);
        let replaces = self.current.is_some();
        let interval = self.cfg.handshake_retransmit;
        self.attempt = Some(Attempt {
            my_nonce: nonce,
            candidate: None,
            peer_rekey: false,
            replaces,
            interval,
            next_retransmit: now + interval,
            expires: (trigger == Trigger::Probe).then_some(now + self.cfg.probe_lifetime),
        });
        self.counters.handshakes_started += 1;
        self.queue_attempt_hello();
    }

    /// Completes the pending handshake with the mate's nonce `pn`: the candidate (or a fresh
    /// derivation) becomes the running session, the old session's keys are dropped (zeroized).
    fn establish(&mut self, now: Duration, pn: [u8; NONCE_LEN], peer_rekey: bool) {
        let Some(a) = self.attempt.take() else {
            return;
        };
        let session = match a.candidate {
            Some(c) if c.peer_nonce == pn => c,
            _ => Session {
                keys: self.secrets.session(&a.my_nonce, &pn),
                my_nonce: a.my_nonce,
                peer_nonce: pn,
                next_seq: 0,
                bytes_sealed: 0,
                window: ReplayWindow::new(),
                forgeries: 0,
                replaced: a.replaces,
            },
        };
        // The mate's REKEY flag, not our own trigger, tells a rekey from a mate restart: a mate
        // that restarted during our own rekey answers without it.
        let cause = match (self.current.is_some(), peer_rekey) {
            (false, _) => EstablishCause::First,
            (true, true) => EstablishCause::Rekeyed,
            (true, false) => EstablishCause::MateRestarted,
        };
        let id = SessionId(session.keys.id);
        let old = self.current.replace(session);
        // A rekeyed session's frames still in flight are genuine: accept them for a grace period.
        // A restarted mate's old session is dead: refuse its frames at once.
        self.previous = match (cause, old) {
            (EstablishCause::Rekeyed, Some(old)) => Some((old, now + self.cfg.rekey_grace)),
            _ => None,
        };
        self.pending = [None, None];
        self.counters.sessions += 1;
        if cause == EstablishCause::Rekeyed {
            self.counters.rekeys += 1;
        }
        // A later rejection is news again: report it at once.
        self.reject_last = None;
        self.reject_unreported = 0;
        self.push_event(EventKind::Established {
            session: id,
            cause,
            protection: self.protection(),
        });
    }

    /// Counts a rejection and reports it at most once per `reject_report_interval` per reason.
    fn reject(&mut self, now: Duration, reason: RejectReason) {
        self.reject_unreported += 1;
        let due = match self.reject_last {
            None => true,
            Some((last_reason, at)) => {
                last_reason != reason || now.saturating_sub(at) >= self.cfg.reject_report_interval
            }
        };
        if due {
            let count = self.reject_unreported;
            self.reject_unreported = 0;
            self.reject_last = Some((reason, now));
            self.push_event(EventKind::Rejected { reason, count });
        }
    }

    fn push_event(&mut self, kind: EventKind) {
        let ev = Event {
            link: self.cfg.kind,
            interface: self.cfg.interface,
            kind,
        };
        if self.event_len == EVENT_CAP {
            // Keep the newest: drop the oldest.
            self.event_head = (self.event_head + 1) % EVENT_CAP;
            self.event_len -= 1;
            self.counters.events_lost += 1;
        }
        let tail = (self.event_head + self.event_len) % EVENT_CAP;
        self.events[tail] = Some(ev);
        self.event_len += 1;
    }

    /// The next event to log, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.event_len == 0 {
            return None;
        }
        let ev = self.events[self.event_head].take();
        self.event_head = (self.event_head + 1) % EVENT_CAP;
        self.event_len -= 1;
        ev
    }
}

fn replay_drop(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Duplicate => DropReason::Duplicate,
        ReplayError::TooOld => DropReason::TooOld,
    }
}
