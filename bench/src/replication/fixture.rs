//! The replication bench's fixtures: the stateful configuration (two interfaces, dynamic PAT over
//! several mapped addresses), synthetic TCP SYNs whose tuple encodes a connection number, an
//! active shard filled through the real packet path, and the in-process pipe that carries records
//! from an encoder through a `Sender` (and optionally the secure link) to a `Receiver` and a
//! standby shard on one thread.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::time::Instant;

use tandem_link::wire::DATA_HEADER_LEN;
use tandem_link::{FailoverKey, IfName, LinkConfig, LinkKind, Received, SecureLink, Security};
use tandem_state::records::{ConnRecord, RecordSink};
use tandem_state::{
    Capacities, IfacePolicy, NatRule, NullSink, Prefix, Shard, StateConfig, Timeouts,
};
use tandem_sync::{
    BufPool, Delivery, FrameEncoder, Put, Receiver, ReceiverConfig, Sender, SenderConfig, SyncBuf,
};
use zerocopy::FromBytes;

use super::BenchError;

/// Interface 0: the server side (security level 0, PAT mapped addresses live here).
pub const OUTSIDE: u16 = 0;
/// Interface 1: the client side (security level 100, real sources).
pub const INSIDE: u16 = 1;
/// Every server is this one host (distinct connections differ by source).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
/// Server port of every connection.
pub const SERVER_PORT: u16 = 443;
/// Real sources are `198.18.0.0/16`: connection `i` comes from address `i % 65536`, port
/// `FIRST_SPORT + i / 65536`.
const REAL_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const FIRST_SPORT: u32 = 1024;
/// Mapped addresses `198.19.255.1 ..`: one per PAT rule.
const MAPPED_BASE: u32 = u32::from_be_bytes([198, 19, 255, 1]);
/// A PAT address has 64 511 ports per protocol (1024..=65535) and the shard picks them at random
/// with a bounded number of tries: keep each address at most half full.
const CONNS_PER_MAPPED: u64 = 32_768;
/// At most this many PAT rules (each a `/22` of the real `/16` or larger).
const MAX_MAPPED: u64 = 64;
/// State-link frame size: a 1500-byte state device less the secure link's header and tag, as
/// the daemon computes it (`tandem_ctrl::replication::frame_size`).
pub fn frame_size() -> usize {
    tandem_ctrl::replication::frame_size(1500)
}

/// The most connections the tuple plan can number (65 536 sources × 64 512 ports, capped by
/// the PAT plan at 64 mapped addresses half full).
pub const MAX_CONNS: u64 = CONNS_PER_MAPPED * MAX_MAPPED;

/// The tuple of connection `i`: `(real source, source port)`.
pub fn tuple(i: u64) -> (Ipv4Addr, u16) {
    let src = REAL_BASE + (i % 65_536) as u32;
    let sport = FIRST_SPORT + (i / 65_536) as u32;
    (Ipv4Addr::from(src), sport as u16)
}

/// The connection number of a connection record, if it is one of the bench's.
pub fn conn_number(payload: &[u8]) -> Option<u64> {
    let r = ConnRecord::ref_from_bytes(payload).ok()?;
    let src = u32::from_be_bytes(r.src);
    let sport = u32::from(r.sport.get());
    if src & 0xffff_0000 != REAL_BASE || sport < FIRST_SPORT {
        return None;
    }
    Some(u64::from(src - REAL_BASE) + u64::from(sport - FIRST_SPORT) * 65_536)
}

/// How many PAT rules (mapped addresses) serve `conns` connections: a power of two so each rule
/// is one prefix of the real `/16`, and every mapped address at most half full.
pub fn mapped_addresses(conns: u64) -> u64 {
    conns
        .div_ceil(CONNS_PER_MAPPED)
        .max(1)
        .next_power_of_two()
        .min(MAX_MAPPED)
}

/// The stateful configuration of both units: `capacity` connections and as many xlates per
/// shard, client side (level 100) to server side (level 0), dynamic PAT of `198.18.0.0/16`
/// split over [`mapped_addresses`]`(conns)` rules, default timeouts.
pub fn config(capacity: u32, conns: u64) -> StateConfig {
    let rules = mapped_addresses(conns);
    let len = 16 + rules.trailing_zeros() as u8;
    let nat = (0..rules)
        .map(|r| NatRule::DynamicPat {
            real_if: INSIDE,
            real: Prefix::new(Ipv4Addr::from(REAL_BASE + ((r as u32) << (32 - len))), len),
            mapped_if: OUTSIDE,
            mapped: Ipv4Addr::from(MAPPED_BASE + r as u32),
        })
        .collect();
    StateConfig {
        capacities: Capacities {
            conns: capacity,
            xlates: capacity,
            sas: 16,
        },
        timeouts: Timeouts::default(),
        interfaces: vec![
            IfacePolicy::new("outside", 0),
            IfacePolicy::new("inside", 100),
        ],
        nat,
        access: Vec::new(),
        replicate_http: false,
    }
}

/// A shard for `cfg` (one worker of one).
pub fn shard(cfg: &StateConfig, seed: u64) -> Result<Shard, BenchError> {
    Shard::new(cfg, 0, 1, seed).map_err(|e| BenchError::Setup(format!("state config: {e}")))
}

/// A TCP SYN (IPv4 + 20-byte TCP header) of connection `i` to the server, checksums filled.
/// Written into `b` (40 bytes).
pub fn syn(i: u64, b: &mut [u8; 40]) {
    let (src, sport) = tuple(i);
    b.fill(0);
    b[0] = 0x45;
    b[2..4].copy_from_slice(&40u16.to_be_bytes());
    b[8] = 64;
    b[9] = 6;
    b[12..16].copy_from_slice(&src.octets());
    b[16..20].copy_from_slice(&SERVER.octets());
    tandem_wire::Ipv4Packet::new_unchecked(&mut b[..20]).fill_checksum();
    b[20..22].copy_from_slice(&sport.to_be_bytes());
    b[22..24].copy_from_slice(&SERVER_PORT.to_be_bytes());
    b[24..28].copy_from_slice(&(i as u32).to_be_bytes());
    // Data offset 5 words, SYN.
    b[32] = 5 << 4;
    b[33] = 0x02;
    b[34..36].copy_from_slice(&64_240u16.to_be_bytes());
    tandem_wire::TcpPacket::new_unchecked(&mut b[20..]).fill_checksum(src, SERVER);
}

/// Opens connection `i` through the shard's packet path (lookup, route, commit), records into
/// `sink`. `Err` names the shard's drop reason.
pub fn open(s: &mut Shard, now: u64, i: u64, sink: &mut impl RecordSink) -> Result<(), BenchError> {
    let mut p = [0u8; 40];
    syn(i, &mut p);
    let lk = s.lookup(now, INSIDE, &p);
    s.commit(now, lk, OUTSIDE, &mut p, sink)
        .map_err(|r| BenchError::Setup(format!("connection {i} refused by the active shard: {r}")))
}

/// Opens connections `range` with no replication sink (the bulk sync sends them later).
pub fn fill(s: &mut Shard, now: u64, range: Range<u64>) -> Result<(), BenchError> {
    for i in range {
        open(s, now, i, &mut NullSink)?;
    }
    Ok(())
}

/// Nanoseconds since `epoch`.
pub fn ns_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Frames laid end to end in one buffer (the encoded stream of a run, before it is timed).
#[derive(Default)]
pub struct FrameArena {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where each frame is.
    pub frames: Vec<Range<usize>>,
    /// Records in them.
    pub records: u64,
}

impl FrameArena {
    fn push(&mut self, f: &[u8], records: u64) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(f);
        self.frames.push(start..self.bytes.len());
        self.records += records;
    }

    /// Frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.bytes[self.frames[i].clone()]
    }
}

/// Sender epoch of the bench's active side.
pub const EPOCH: u32 = 0x7a11_be0c;

/// Nonces for an in-process secure link (deterministic: both ends live in this process and the
/// bench measures the AEAD, not the handshake's randomness).
pub struct BenchNonces(u64);

impl tandem_link::NonceSource for BenchNonces {
    fn fill_nonce(&mut self, nonce: &mut [u8; 32]) {
        for chunk in nonce.chunks_mut(8) {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes()[..chunk.len()]);
        }
    }
}

/// The failover key of every bench link.
pub const KEY: &str = "hex 00112233445566778899aabbccddeeff";

/// The bench's security setting: AES-256-GCM with [`KEY`].
pub fn security() -> Result<Security, BenchError> {
    let key = FailoverKey::parse(KEY).map_err(|e| BenchError::Setup(format!("key: {e}")))?;
    Ok(Security::from_config(Some(key), |_| {}))
}

/// Both ends of a state link's secure session in this process: what the active unit seals, the
/// standby opens (AES-256-GCM, replay window), and the other way for control frames.
pub struct LinkPair {
    a: SecureLink<BenchNonces>,
    b: SecureLink<BenchNonces>,
    buf: Vec<u8>,
}

impl LinkPair {
    /// Two links with an established session.
    pub fn new() -> Result<LinkPair, BenchError> {
        let s = security()?;
        let name = IfName::new("st0").map_err(|e| BenchError::Setup(e.to_string()))?;
        let cfg = LinkConfig::new(LinkKind::State, name);
        let t = std::time::Duration::ZERO;
        let err = |e: tandem_link::LinkConfigError| BenchError::Setup(e.to_string());
        let mut a = SecureLink::new(cfg, &s, BenchNonces(1), t).map_err(err)?;
        let mut b = SecureLink::new(cfg, &s, BenchNonces(2), t).map_err(err)?;
        let mut buf = vec![0u8; tandem_sync::wire::MAX_FRAME_LEN + 128];
        for _ in 0..8 {
            while let Some(n) = a.poll_transmit(t, &mut buf) {
                b.handle_frame(t, &mut buf[..n]);
            }
            while let Some(n) = b.poll_transmit(t, &mut buf) {
                a.handle_frame(t, &mut buf[..n]);
            }
        }
        if !(a.is_established() && b.is_established()) {
            return Err(BenchError::Setup("secure link: no session".into()));
        }
        Ok(LinkPair { a, b, buf })
    }

    /// Seals `payload` on one side and opens it on the other (`to_standby`: active → standby);
    /// returns the opened plaintext.
    pub fn carry(
        &mut self,
        now: u64,
        payload: &[u8],
        to_standby: bool,
    ) -> Result<&[u8], BenchError> {
        let t = std::time::Duration::from_nanos(now);
        let n = payload.len();
        let dst = self
            .buf
            .get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + n)
            .ok_or_else(|| BenchError::Setup(format!("secure link: {n}-byte payload")))?;
        dst.copy_from_slice(payload);
        let (tx, rx) = if to_standby {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        let len = tx
            .seal(t, n, &mut self.buf)
            .map_err(|e| BenchError::Setup(format!("seal: {e}")))?;
        match rx.handle_frame(t, &mut self.buf[..len]) {
            Received::Data(o) => Ok(&self.buf[o.payload]),
            other => Err(BenchError::Setup(format!("open: {other:?}"))),
        }
    }
}

/// The standby's side of one stream in process: a `Receiver` and a fresh shard.
pub struct Standby {
    /// Sequencing, gap detection, ACK/NAK.
    pub rx: Receiver,
    /// The standby's tables.
    pub shard: Shard,
    /// Records applied.
    pub applied: u64,
    /// Records refused by `apply` (must stay 0), with the first error.
    pub rejected: u64,
    /// The first refusal.
    pub first_error: Option<String>,
    /// A complete bulk sync ended.
    pub bulk_done: bool,
}

impl Standby {
    /// A standby with an empty shard for `cfg`.
    pub fn new(cfg: &StateConfig) -> Result<Standby, BenchError> {
        Ok(Standby {
            rx: Receiver::new(ReceiverConfig::new(1))
                .map_err(|e| BenchError::Setup(e.to_string()))?,
            shard: shard(cfg, 2)?,
            applied: 0,
            rejected: 0,
            first_error: None,
            bulk_done: false,
        })
    }

    /// One opened state-link frame: decoded by the `Receiver`, its records applied in order.
    #[inline]
    pub fn deliver(&mut self, now: u64, frame: &[u8]) {
        match self.rx.handle_frame(now, frame) {
            Delivery::Records { records, .. } => {
                for r in records {
                    match self.shard.apply(now, r.kind, r.op, r.payload) {
                        Ok(()) => self.applied += 1,
                        Err(e) => {
                            self.rejected += 1;
                            if self.first_error.is_none() {
                                self.first_error = Some(e.to_string());
                            }
                        }
                    }
                }
            }
            Delivery::BulkEnd { complete, .. } => self.bulk_done |= complete,
            _ => {}
        }
    }

    /// The refusals as an error, if any.
    pub fn check(&self) -> Result<(), BenchError> {
        match &self.first_error {
            None => Ok(()),
            Some(e) => Err(BenchError::Setup(format!(
                "standby refused {} records, first: {e}",
                self.rejected
            ))),
        }
    }
}

/// Where the active side's finished frames go.
pub enum Out {
    /// Kept, to be replayed into a standby later (the timed part).
    Arena(FrameArena),
    /// Straight into a standby on this thread, optionally through the secure link, with the
    /// standby's ACKs fed back to the sender (its ring and the buffer pool stay small).
    Apply {
        /// The standby.
        standby: Box<Standby>,
        /// AEAD on the way.
        link: Option<Box<LinkPair>>,
    },
}

/// The active side of one stream in process: the encoder the shard writes records into, the
/// buffer pool, the `Sender` that sequences frames, and where frames go.
pub struct Pipe {
    enc: FrameEncoder,
    pool: BufPool,
    tx: Sender,
    /// `now` for records and frames (the caller sets it once per batch).
    pub now: u64,
    bulk: bool,
    /// Records or frames lost (no buffer, refused by the sender, link errors): must stay 0.
    pub lost: u64,
    /// The first such error.
    pub error: Option<String>,
    /// Frames shipped.
    pub frames: u64,
    /// Destination.
    pub out: Out,
    ctl: [u8; 256],
}

/// Records in a frame, from its header (bytes 16..18).
fn header_count(f: &[u8]) -> u64 {
    f.get(16..18)
        .map_or(0, |b| u64::from(u16::from_be_bytes([b[0], b[1]])))
}

impl Pipe {
    /// A pipe with `buffers` frame buffers and a retransmission ring of `ring` frames.
    pub fn new(out: Out, buffers: usize, ring: usize) -> Result<Pipe, BenchError> {
        let fs = frame_size();
        let mut cfg = SenderConfig::new(EPOCH, 1);
        cfg.ring_frames = ring;
        Ok(Pipe {
            enc: FrameEncoder::new(0, fs).map_err(|e| BenchError::Setup(e.to_string()))?,
            pool: BufPool::new(buffers, fs),
            tx: Sender::new(cfg).map_err(|e| BenchError::Setup(e.to_string()))?,
            now: 0,
            bulk: false,
            lost: 0,
            error: None,
            frames: 0,
            out,
            ctl: [0; 256],
        })
    }

    fn fail(&mut self, n: u64, e: String) {
        self.lost += n;
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Sends BULK_BEGIN announcing `total` entries; records that follow are bulk records.
    pub fn bulk_begin(&mut self, total: u64) {
        self.flush();
        self.bulk = true;
        let Some(b) = self.pool.get() else {
            return self.fail(1, "no buffer for BULK_BEGIN".into());
        };
        let now = self.now;
        let r = self.tx.bulk_begin(now, 0, total, b).map(<[u8]>::to_vec);
        self.forward(r);
    }

    /// Ships the last bulk frame and sends BULK_END.
    pub fn bulk_end(&mut self) {
        self.flush();
        self.bulk = false;
        let Some(b) = self.pool.get() else {
            return self.fail(1, "no buffer for BULK_END".into());
        };
        let now = self.now;
        let r = self.tx.bulk_end(now, 0, b).map(<[u8]>::to_vec);
        self.forward(r);
    }

    /// BULK_BEGIN / BULK_END (rare: a copy is fine) to the destination.
    fn forward(&mut self, r: Result<Vec<u8>, (tandem_sync::SendError, SyncBuf)>) {
        match r {
            Ok(bytes) => self.route_copy(&bytes),
            Err((e, b)) => {
                self.pool.put(b);
                self.fail(1, format!("sender: {e}"));
            }
        }
    }

    fn route_copy(&mut self, bytes: &[u8]) {
        let now = self.now;
        match &mut self.out {
            Out::Arena(a) => a.push(bytes, header_count(bytes)),
            Out::Apply { standby, link } => {
                let r = match link {
                    Some(l) => l.carry(now, bytes, true).map(|f| standby.deliver(now, f)),
                    None => {
                        standby.deliver(now, bytes);
                        Ok(())
                    }
                };
                if let Err(e) = r {
                    self.fail(header_count(bytes), e.to_string());
                }
            }
        }
        self.control();
    }

    /// The standby's control frames (ACK …) back to the sender; acknowledged and evicted
    /// buffers back to the pool.
    fn control(&mut self) {
        let now = self.now;
        if let Out::Apply { standby, link } = &mut self.out {
            while let Some(n) = standby.rx.poll_control(now, &mut self.ctl) {
                let bytes = match link {
                    Some(l) => match l.carry(now, &self.ctl[..n], false) {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    None => &self.ctl[..n],
                };
                let _ = self.tx.handle_control(now, bytes);
            }
        }
        while let Some(b) = self.tx.take_free() {
            self.pool.put(b);
        }
    }

    /// Sequences a finished frame and delivers it.
    fn ship(&mut self, buf: SyncBuf) {
        self.frames += 1;
        let now = self.now;
        let Pipe { tx, out, .. } = self;
        let res = match tx.send(now, buf) {
            Ok(bytes) => match out {
                Out::Arena(a) => {
                    a.push(bytes, header_count(bytes));
                    Ok(())
                }
                Out::Apply { standby, link } => match link {
                    Some(l) => l.carry(now, bytes, true).map(|f| standby.deliver(now, f)),
                    None => {
                        standby.deliver(now, bytes);
                        Ok(())
                    }
                },
            },
            Err((e, b)) => {
                self.pool.put(b);
                Err(BenchError::Setup(format!("sender: {e}")))
            }
        };
        if let Err(e) = res {
            self.fail(1, e.to_string());
        }
        self.control();
    }

    fn attach(&mut self) -> bool {
        if self.enc.has_buffer() {
            return true;
        }
        if self.pool.available() == 0 {
            self.control();
        }
        match self.pool.get() {
            Some(b) => {
                let _ = self.enc.begin(b, self.bulk);
                true
            }
            None => false,
        }
    }

    /// Ships the current frame, if it has records.
    pub fn flush(&mut self) {
        if let Some(b) = self.enc.finish() {
            self.ship(b);
        }
    }

    /// The frames kept ([`Out::Arena`]).
    pub fn into_out(mut self) -> Out {
        self.flush();
        self.out
    }
}

impl RecordSink for Pipe {
    fn put(&mut self, kind: u8, op: u8, key: u64, payload: &[u8]) {
        if !self.attach() {
            return self.fail(1, "no free frame buffer".into());
        }
        if self.enc.put(self.now, kind, op, key, payload) == Put::Full {
            self.flush();
            if !self.attach() || self.enc.put(self.now, kind, op, key, payload) != Put::Written {
                self.fail(1, "record does not fit an empty frame".into());
            }
        }
    }
}
