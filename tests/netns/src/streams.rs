//! tcp-streams: many paced, verified, echoed TCP byte streams over the
//! kernel's TCP stack — the traffic that proves connections survive a
//! failover (issue 4 acceptance), and that fails loudly when one does not.
//!
//! # Protocol
//!
//! The client opens `conns` connections. Connection `c` sends the 8-byte
//! little-endian id `c`, then an endless deterministic pattern: stream byte
//! `j ≥ 8` is a function of `(c, j)` only ([`stream_byte`]), so any loss,
//! duplication, reordering or cross-wiring of two connections (a NAT mix-up)
//! shows up as a mismatch at a precise offset. The server verifies every
//! byte in order and echoes every byte back verbatim; the client verifies
//! the echo against the same function, so a clean echo proves both
//! directions end to end.
//!
//! *Server push* ([`ServerConfig::push`] with [`ClientConfig::server_push`]):
//! instead of echoing, the server sends its own stream, connection
//! [`push_id`]`(c)`'s pattern, paced on its own timer whatever it receives,
//! and the client verifies that. An echo server sends only when the client
//! did, so after a failover it is silent until the client's retransmission
//! (≥ 200 ms RTO); a pushing server's segments reach the new active right
//! after it takes over, which is what exercises state that is not there yet.
//! A pushed connection is clean at the client when its pushed bytes verified
//! and the server's FIN came; that the server got every client byte is in
//! the server's report (`verified_bytes` against the client's `sent_bytes`).
//!
//! Writes are paced per connection (`rate_per_conn` bytes/s, one write
//! every `write_interval`, connections spread over the interval), the ramp
//! is bounded (`connect_rate` new connections/s, at most `max_connecting`
//! SYNs outstanding) so the listen backlog never overflows, and everything
//! is bounded in time: a connect timeout, a drain timeout and a hard
//! overall deadline. One thread, `mio` readiness, nonblocking sockets.
//!
//! When `duration` has passed, or the control file contains `stop`, or the
//! stop flag is set, every connection half-closes (`shutdown(Write)`) and
//! waits for the rest of its echo and the server's FIN. A connection is
//! `clean` only if it got its whole echo, verified, followed by a FIN.
//!
//! # Report
//!
//! [`StreamsReport`] (client) counts connections by how they ended
//! ([`End`]), bytes each way, and per connection the *longest stall*: the
//! longest time without echo progress while sent data was unechoed — across
//! a failover this is the TCP-visible outage. p50/p99/max over connections.
//! [`ServerReport`] is the server's view. Both carry the CPU time of the
//! thread that ran them (`getrusage(RUSAGE_THREAD)`). Both serialize to JSON.
//!
//! What breakage looks like (measured through a kernel NAT gateway with
//! `nf_conntrack_tcp_loose=0`, tests/netns/tests/streams.rs): after a
//! conntrack flush the client's segments are dropped as invalid and the
//! gateway answers the server's with RSTs, so the client sees *stalls*
//! ending in `timeout` at the drain deadline (longest stall ≈ time since the
//! flush) while the server sees `reset`. A 500 ms blackhole with the state
//! kept is survived, with every stream's longest stall ≥ 500 ms (≈ 650 ms
//! with TCP's retransmission backoff).
//!
//! # Use
//!
//! As a binary inside namespaces (`ip netns exec NS tcp-streams ...`):
//!
//! ```text
//! tcp-streams server --listen 198.18.2.10:5001 [--max-conns N] [--report FILE] [--json]
//! tcp-streams client --connect 198.18.2.10:5001 --conns 1000 --rate-per-conn 8000 \
//!                    --duration 20s [--control FILE] [--report FILE] [--json]
//! ```
//!
//! The client exits 0 only when every connection completed cleanly with
//! every byte verified. In-process: [`Server::bind`] + [`Server::run`] and
//! [`run_client`], each on a thread that has entered its namespace
//! ([`crate::Netns::enter`]) before creating the sockets; [`Progress`]
//! tells the caller when every connection is established. The server
//! raises RLIMIT_NOFILE for `max_conns`, the client for `conns`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

/// Length of the connection id that opens every stream.
pub const HEADER_LEN: u64 = 8;

/// Scratch buffer for one read or write; also the cap on one paced write.
const SCRATCH: usize = 64 * 1024;
/// Per-connection echo buffer on the server.
const SERVER_BUF: usize = 16 * 1024;
/// Write slots per `write_interval`: connections are spread over them so a
/// thousand connections do not all write in the same millisecond.
const SLOTS: usize = 10;
/// How often the control file is read.
const CONTROL_EVERY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(usize::MAX);

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("event loop ({what}): {source}")]
    Poll {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "need {want} file descriptors but RLIMIT_NOFILE hard limit is {hard} and cannot be \
         raised ({source}); raise it (ulimit -Hn) or use fewer connections"
    )]
    NoFile {
        want: u64,
        hard: u64,
        #[source]
        source: io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

// ---------------------------------------------------------------- pattern

/// splitmix64's finalizer: a cheap bijective mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Pattern word `block` of connection `conn` (8 pattern bytes).
fn pattern_word(conn: u64, block: u64) -> [u8; 8] {
    mix(conn.rotate_left(32) ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes()
}

/// Byte `offset` of connection `conn`'s stream (the id, then the pattern).
pub fn stream_byte(conn: u64, offset: u64) -> u8 {
    if offset < HEADER_LEN {
        return conn.to_le_bytes()[offset as usize];
    }
    let p = offset - HEADER_LEN;
    pattern_word(conn, p / 8)[(p % 8) as usize]
}

/// Walk `len` stream bytes from `offset` in contiguous chunks, each chunk
/// given with its expected bytes; stops early when `f` returns false.
fn for_each_chunk(conn: u64, offset: u64, len: usize, mut f: impl FnMut(usize, &[u8]) -> bool) {
    let header = conn.to_le_bytes();
    let mut i = 0;
    while i < len {
        let pos = offset + i as u64;
        let (word, start) = if pos < HEADER_LEN {
            (header, pos as usize)
        } else {
            let p = pos - HEADER_LEN;
            (pattern_word(conn, p / 8), (p % 8) as usize)
        };
        let n = (8 - start).min(len - i);
        if !f(i, &word[start..start + n]) {
            return;
        }
        i += n;
    }
}

/// Fill `buf` with connection `conn`'s stream from `offset`.
pub fn fill_stream(conn: u64, offset: u64, buf: &mut [u8]) {
    let len = buf.len();
    for_each_chunk(conn, offset, len, |i, want| {
        buf[i..i + want.len()].copy_from_slice(want);
        true
    });
}

/// Id of the stream a pushing server sends on connection `conn`: distinct
/// from every client stream, so a cross-wired connection mismatches at once.
pub fn push_id(conn: u64) -> u64 {
    conn ^ (1 << 63)
}

/// Index in `data` of the first byte that differs from connection `conn`'s
/// stream at `offset`, if any.
pub fn first_mismatch(conn: u64, offset: u64, data: &[u8]) -> Option<usize> {
    let mut found = None;
    for_each_chunk(conn, offset, data.len(), |i, want| {
        let got = &data[i..i + want.len()];
        if got == want {
            return true;
        }
        found = Some(i + got.iter().zip(want).take_while(|(a, b)| a == b).count());
        false
    });
    found
}

// ---------------------------------------------------------------- reports

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Still open when the run ended (server: at exit).
    Open,
    /// Client: whole echo verified, then the server's FIN. Server: the
    /// client's FIN after verified bytes, every byte echoed, FIN sent.
    Clean,
    /// ECONNRESET or EPIPE.
    Reset,
    /// FIN before the expected bytes (client: before the whole echo).
    EarlyEof,
    /// A byte differed from the pattern (see `mismatch_at`).
    Mismatch,
    /// No progress to the end within the drain timeout or the deadline.
    Timeout,
    /// The connection was never established.
    ConnectFailed,
    /// Another socket error (see `error`).
    Error,
    /// The run stopped before this connection was opened.
    NotOpened,
}

/// One client connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnReport {
    pub id: u64,
    pub end: End,
    /// Stream bytes written, including the 8-byte id.
    pub sent_bytes: u64,
    /// Echoed stream bytes received and verified (with server push: the
    /// server's pushed stream bytes).
    pub echoed_bytes: u64,
    /// Stream offset of the first wrong echoed byte.
    pub mismatch_at: Option<u64>,
    pub longest_stall_ms: f64,
    pub error: Option<String>,
}

/// The client's report (what `tcp-streams client --json` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamsReport {
    pub connect: String,
    /// Connections requested.
    pub conns: usize,
    pub opened: usize,
    pub established: usize,
    pub completed_clean: usize,
    pub reset: usize,
    pub ended_early: usize,
    pub mismatched: usize,
    pub timed_out: usize,
    pub connect_failed: usize,
    pub errors: usize,
    pub not_opened: usize,
    pub rate_per_conn_bytes_per_s: u64,
    pub bytes_sent: u64,
    pub bytes_echoed: u64,
    /// Longest stall per established connection: percentiles across them.
    pub stall_p50_ms: f64,
    pub stall_p99_ms: f64,
    pub stall_max_ms: f64,
    /// What ended the sending phase: duration, control, flag or deadline.
    pub stopped_by: String,
    pub run_s: f64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// Every requested connection completed cleanly, every byte verified.
    pub ok: bool,
    pub connections: Vec<ConnReport>,
}

/// One server connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerConnReport {
    /// The id the client sent (None if fewer than 8 bytes arrived).
    pub id: Option<u64>,
    pub peer: String,
    pub end: End,
    /// Stream bytes received and verified in order (including the id).
    pub verified_bytes: u64,
    /// Bytes echoed (with push: pushed stream bytes written).
    pub echoed_bytes: u64,
    pub mismatch_at: Option<u64>,
    pub error: Option<String>,
}

/// The server's report (`tcp-streams server --report FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerReport {
    pub listen: String,
    pub accepted: usize,
    pub completed_clean: usize,
    pub reset: usize,
    pub ended_early: usize,
    pub mismatched: usize,
    pub errors: usize,
    pub open_at_exit: usize,
    pub bytes_verified: u64,
    pub bytes_echoed: u64,
    pub run_s: f64,
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// Every accepted connection ended cleanly with every byte verified.
    pub ok: bool,
    pub connections: Vec<ServerConnReport>,
}

impl StreamsReport {
    /// One-paragraph human summary.
    pub fn summary(&self) -> String {
        format!(
            "tcp-streams client → {}: {} requested, {} opened, {} established, {} clean, \
             {} reset, {} ended early, {} mismatched, {} timed out, {} connect failures, \
             {} errors, {} not opened\n\
             bytes sent {} echoed {} (rate {} B/s per connection); longest stall per \
             connection p50 {:.1} ms p99 {:.1} ms max {:.1} ms\n\
             stopped by {} after {:.2} s; cpu user {:.2} s sys {:.2} s; {}",
            self.connect,
            self.conns,
            self.opened,
            self.established,
            self.completed_clean,
            self.reset,
            self.ended_early,
            self.mismatched,
            self.timed_out,
            self.connect_failed,
            self.errors,
            self.not_opened,
            self.bytes_sent,
            self.bytes_echoed,
            self.rate_per_conn_bytes_per_s,
            self.stall_p50_ms,
            self.stall_p99_ms,
            self.stall_max_ms,
            self.stopped_by,
            self.run_s,
            self.cpu_user_s,
            self.cpu_sys_s,
            if self.ok { "OK" } else { "FAILED" }
        )
    }
}

impl ServerReport {
    pub fn summary(&self) -> String {
        format!(
            "tcp-streams server {}: {} accepted, {} clean, {} reset, {} ended early, \
             {} mismatched, {} errors, {} open at exit; bytes verified {} echoed {}; \
             {:.2} s, cpu user {:.2} s sys {:.2} s; {}",
            self.listen,
            self.accepted,
            self.completed_clean,
            self.reset,
            self.ended_early,
            self.mismatched,
            self.errors,
            self.open_at_exit,
            self.bytes_verified,
            self.bytes_echoed,
            self.run_s,
            self.cpu_user_s,
            self.cpu_sys_s,
            if self.ok { "OK" } else { "FAILED" }
        )
    }
}

/// Counters a caller can watch while a run is going (e.g. wait until every
/// connection is established before injecting a failure).
#[derive(Debug, Default)]
pub struct Progress {
    /// Client: connections established. Server: connections accepted.
    pub established: AtomicUsize,
    /// Connections that ended (any way).
    pub ended: AtomicUsize,
    /// Client: verified echo bytes. Server: verified bytes.
    pub bytes: AtomicU64,
}

// ---------------------------------------------------------------- helpers

/// CPU time (user, system) of the calling thread, in seconds.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// Raise the soft RLIMIT_NOFILE to at least `want` (up to the hard limit;
/// the hard limit itself needs CAP_SYS_RESOURCE, which may be missing).
pub fn raise_nofile(want: u64) -> Result<(), StreamsError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(StreamsError::NoFile {
            want,
            hard: 0,
            source: io::Error::last_os_error(),
        });
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    let hard = lim.rlim_max;
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: hard.max(want),
    };
    // SAFETY: `new` is a valid rlimit read by the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(StreamsError::NoFile {
            want,
            hard,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Nearest-rank percentile of a sorted slice (0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn poll_err(what: &'static str) -> impl FnOnce(io::Error) -> StreamsError {
    move |source| StreamsError::Poll { what, source }
}

// ---------------------------------------------------------------- client

/// What the client does; [`ClientConfig::new`] fills sensible defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect: SocketAddr,
    pub conns: usize,
    /// Pattern bytes per second per connection (the id is extra).
    pub rate_per_conn: u64,
    /// Sending phase, counted from the start of the run (ramp included).
    pub duration: Duration,
    /// A file polled every 100 ms; the sending phase ends when it says `stop`.
    pub control: Option<PathBuf>,
    /// The sending phase ends when this flag is set.
    pub stop: Option<Arc<AtomicBool>>,
    /// Id of the first connection; the rest follow.
    pub first_id: u64,
    /// New connections per second during the ramp.
    pub connect_rate: u32,
    /// At most this many connects in flight (keeps the SYN burst below the
    /// server's listen backlog).
    pub max_connecting: usize,
    pub write_interval: Duration,
    pub connect_timeout: Duration,
    /// How long connections may take to finish after the sending phase.
    pub drain_timeout: Duration,
    /// Hard limit on the whole run; default: ramp + duration + connect and
    /// drain timeouts + 10 s.
    pub deadline: Option<Duration>,
    pub progress: Option<Arc<Progress>>,
    /// The server pushes its own stream instead of echoing
    /// ([`ServerConfig::push`]): verify that, and take the longest stall as
    /// the longest gap in it.
    pub server_push: bool,
}

impl ClientConfig {
    pub fn new(
        connect: SocketAddr,
        conns: usize,
        rate_per_conn: u64,
        duration: Duration,
    ) -> ClientConfig {
        ClientConfig {
            connect,
            conns,
            rate_per_conn,
            duration,
            control: None,
            stop: None,
            first_id: 0,
            connect_rate: 2000,
            max_connecting: 64,
            write_interval: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
            deadline: None,
            progress: None,
            server_push: false,
        }
    }

    fn hard_deadline(&self) -> Duration {
        self.deadline.unwrap_or_else(|| {
            let ramp = Duration::from_secs_f64(self.conns as f64 / self.connect_rate.max(1) as f64);
            ramp + self.duration
                + self.connect_timeout
                + self.drain_timeout
                + Duration::from_secs(10)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Connecting,
    Sending,
    /// Write side shut down; waiting for the echo and the FIN.
    Draining,
    Done,
}

struct Conn {
    id: u64,
    sock: Option<TcpStream>,
    phase: Phase,
    end: End,
    started: Instant,
    established: Instant,
    was_established: bool,
    sent: u64,
    echoed: u64,
    mismatch_at: Option<u64>,
    /// Since when the echo has made no progress while data was unechoed.
    stall_mark: Instant,
    longest_stall: Duration,
    write_blocked: bool,
    error: Option<String>,
}

struct Client<'a> {
    cfg: &'a ClientConfig,
    poll: Poll,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    stopping: bool,
}

/// Run the client to completion (bounded by its deadline) and report.
/// Sockets are created in the calling thread's network namespace.
pub fn run_client(cfg: &ClientConfig) -> Result<StreamsReport, StreamsError> {
    if cfg.conns == 0 {
        return Err(StreamsError::Config("conns must be at least 1".into()));
    }
    if cfg.write_interval.is_zero() {
        return Err(StreamsError::Config(
            "write interval must be positive".into(),
        ));
    }
    raise_nofile(cfg.conns as u64 + 64)?;
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let mut c = Client {
        cfg,
        poll: Poll::new().map_err(poll_err("create poll"))?,
        conns: (0..cfg.conns)
            .map(|i| Conn {
                id: cfg.first_id + i as u64,
                sock: None,
                phase: Phase::Idle,
                end: End::NotOpened,
                started: start,
                established: start,
                was_established: false,
                sent: 0,
                echoed: 0,
                mismatch_at: None,
                stall_mark: start,
                longest_stall: Duration::ZERO,
                write_blocked: false,
                error: None,
            })
            .collect(),
        scratch: vec![0; SCRATCH],
        stopping: false,
    };
    let stopped_by = c.run(start)?;
    let run_s = start.elapsed().as_secs_f64();
    let cpu1 = thread_cpu();
    Ok(c.report(stopped_by, run_s, (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1)))
}

impl Client<'_> {
    fn run(&mut self, start: Instant) -> Result<String, StreamsError> {
        let cfg = self.cfg;
        let hard = start + cfg.hard_deadline();
        let slot_period = cfg.write_interval / SLOTS as u32;
        let mut events = Events::with_capacity(1024);
        let mut next_open = 0usize;
        let mut connecting = 0usize;
        let mut next_slot = start;
        let mut slot = 0usize;
        let mut next_control = start;
        let mut drain_deadline = hard;
        let mut stopped_by = String::from("deadline");
        let mut all_established_logged = false;
        loop {
            let now = Instant::now();
            if !self.stopping {
                let mut why = None;
                if now >= start + cfg.duration {
                    why = Some("duration");
                } else if cfg.stop.as_ref().is_some_and(|f| f.load(Ordering::Relaxed)) {
                    why = Some("flag");
                } else if now >= next_control {
                    next_control = now + CONTROL_EVERY;
                    if let Some(p) = &cfg.control {
                        if std::fs::read_to_string(p).is_ok_and(|s| s.trim() == "stop") {
                            why = Some("control");
                        }
                    }
                }
                if let Some(why) = why {
                    stopped_by = why.to_string();
                    self.stopping = true;
                    drain_deadline = (now + cfg.drain_timeout).min(hard);
                    for i in 0..self.conns.len() {
                        if self.conns[i].phase == Phase::Sending {
                            self.half_close(i);
                        }
                    }
                }
            }
            let live = self
                .conns
                .iter()
                .filter(|c| !matches!(c.phase, Phase::Done | Phase::Idle))
                .count();
            if self.stopping && live == 0 {
                break;
            }
            if now >= hard || (self.stopping && now >= drain_deadline) {
                for i in 0..self.conns.len() {
                    let c = &self.conns[i];
                    match c.phase {
                        Phase::Connecting => self.finish(i, End::ConnectFailed, Some("deadline")),
                        Phase::Sending | Phase::Draining => self.finish(i, End::Timeout, None),
                        _ => {}
                    }
                }
                break;
            }
            // Ramp: bounded rate and bounded connects in flight.
            if !self.stopping {
                let budget = (now - start).as_secs_f64() * cfg.connect_rate as f64 + 1.0;
                while next_open < self.conns.len()
                    && connecting < cfg.max_connecting
                    && (next_open as f64) < budget
                {
                    self.open(next_open, now);
                    next_open += 1;
                    connecting = self.count(Phase::Connecting);
                }
            }
            // Paced writes and connect timeouts, one slot at a time.
            if now >= next_slot {
                let mut i = slot;
                while i < self.conns.len() {
                    match self.conns[i].phase {
                        Phase::Sending if !self.conns[i].write_blocked => self.write_due(i, now),
                        Phase::Connecting if now - self.conns[i].started > cfg.connect_timeout => {
                            self.finish(i, End::ConnectFailed, Some("connect timeout"))
                        }
                        _ => {}
                    }
                    i += SLOTS;
                }
                slot = (slot + 1) % SLOTS;
                next_slot += slot_period;
                if next_slot < now {
                    next_slot = now + slot_period;
                }
            }
            let mut wake = next_slot.min(hard).min(drain_deadline);
            if !self.stopping {
                wake = wake.min(next_control).min(start + cfg.duration);
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(poll_err("wait")(e));
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                let i = ev.token().0;
                if i >= self.conns.len() {
                    continue;
                }
                match self.conns[i].phase {
                    Phase::Connecting => self.on_connect_event(i, now),
                    Phase::Sending | Phase::Draining => {
                        if ev.is_writable() && self.conns[i].write_blocked {
                            self.conns[i].write_blocked = false;
                            if self.conns[i].phase == Phase::Sending {
                                self.write_due(i, now);
                            }
                        }
                        self.read_echo(i, now);
                    }
                    _ => {}
                }
            }
            connecting = self.count(Phase::Connecting);
            if !all_established_logged {
                let est = self.conns.iter().filter(|c| c.was_established).count();
                if est == self.conns.len() {
                    all_established_logged = true;
                    tracing::info!(conns = est, "all connections established");
                }
            }
        }
        Ok(stopped_by)
    }

    fn count(&self, phase: Phase) -> usize {
        self.conns.iter().filter(|c| c.phase == phase).count()
    }

    fn open(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.started = now;
        match TcpStream::connect(self.cfg.connect) {
            Ok(mut s) => {
                if let Err(e) = self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    c.phase = Phase::Done;
                    c.end = End::ConnectFailed;
                    c.error = Some(format!("register: {e}"));
                    return;
                }
                c.sock = Some(s);
                c.phase = Phase::Connecting;
                c.end = End::Open;
            }
            Err(e) => {
                c.phase = Phase::Done;
                c.end = End::ConnectFailed;
                c.error = Some(e.to_string());
            }
        }
    }

    fn on_connect_event(&mut self, i: usize, now: Instant) {
        let Some(s) = self.conns[i].sock.as_ref() else {
            return;
        };
        match s.take_error() {
            Ok(Some(e)) | Err(e) => {
                return self.finish(i, End::ConnectFailed, Some(&e.to_string()))
            }
            Ok(None) => {}
        }
        match s.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.finish(i, End::ConnectFailed, Some(&e.to_string())),
        }
        // Small paced writes and their echoes: Nagle plus delayed ACK would
        // add 40 ms artificial stalls.
        let _ = s.set_nodelay(true);
        let c = &mut self.conns[i];
        c.phase = Phase::Sending;
        c.established = now;
        c.was_established = true;
        c.stall_mark = now;
        if let Some(p) = &self.cfg.progress {
            p.established.fetch_add(1, Ordering::Relaxed);
        }
        self.write_due(i, now);
        if self.stopping && self.conns[i].phase == Phase::Sending {
            self.half_close(i);
        }
    }

    /// Write what the pace allows by now (the id right away).
    fn write_due(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        let Some(s) = c.sock.as_mut() else { return };
        let elapsed = now.saturating_duration_since(c.established).as_nanos();
        let target = if self.stopping {
            HEADER_LEN
        } else {
            HEADER_LEN + (elapsed * self.cfg.rate_per_conn as u128 / 1_000_000_000) as u64
        };
        let mut failed = None;
        while c.sent < target {
            let n = ((target - c.sent) as usize).min(self.scratch.len());
            let buf = &mut self.scratch[..n];
            fill_stream(c.id, c.sent, buf);
            match s.write(buf) {
                Ok(k) => {
                    // Echo: the stall clock starts when data goes unechoed.
                    // Push: it runs from the last pushed byte received.
                    if c.echoed == c.sent && !self.cfg.server_push {
                        c.stall_mark = now;
                    }
                    c.sent += k as u64;
                    if k < n {
                        c.write_blocked = true;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.write_blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let end = if is_reset(&e) { End::Reset } else { End::Error };
            self.finish(i, end, Some(&e.to_string()));
        }
    }

    fn half_close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.phase = Phase::Draining;
        if let Some(Err(e)) = c.sock.as_ref().map(|s| s.shutdown(Shutdown::Write)) {
            let end = if is_reset(&e) || e.kind() == io::ErrorKind::NotConnected {
                End::Reset
            } else {
                End::Error
            };
            self.finish(i, end, Some(&e.to_string()));
        }
    }

    /// Read and verify everything the socket has.
    fn read_echo(&mut self, i: usize, now: Instant) {
        loop {
            let c = &mut self.conns[i];
            let Some(s) = c.sock.as_mut() else { return };
            match s.read(&mut self.scratch) {
                Ok(0) => {
                    let whole = if self.cfg.server_push {
                        c.echoed >= HEADER_LEN && c.mismatch_at.is_none()
                    } else {
                        c.echoed == c.sent
                    };
                    let end = if c.phase == Phase::Draining && whole {
                        End::Clean
                    } else {
                        End::EarlyEof
                    };
                    return self.finish(i, end, None);
                }
                Ok(k) => {
                    let data = &self.scratch[..k];
                    let bad = if self.cfg.server_push {
                        first_mismatch(push_id(c.id), c.echoed, data)
                    } else if c.echoed + k as u64 > c.sent {
                        // More echo than was sent: the stream is not ours.
                        Some(
                            first_mismatch(c.id, c.echoed, data)
                                .unwrap_or((c.sent - c.echoed) as usize),
                        )
                    } else {
                        first_mismatch(c.id, c.echoed, data)
                    };
                    if let Some(off) = bad {
                        c.mismatch_at = Some(c.echoed + off as u64);
                        c.echoed += off as u64;
                        return self.finish(i, End::Mismatch, None);
                    }
                    c.longest_stall = c
                        .longest_stall
                        .max(now.saturating_duration_since(c.stall_mark));
                    c.stall_mark = now;
                    c.echoed += k as u64;
                    if let Some(p) = &self.cfg.progress {
                        p.bytes.fetch_add(k as u64, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let end = if is_reset(&e) { End::Reset } else { End::Error };
                    return self.finish(i, end, Some(&e.to_string()));
                }
            }
        }
    }

    fn finish(&mut self, i: usize, end: End, error: Option<&str>) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        if c.phase == Phase::Done {
            return;
        }
        // The stall still open at the end counts, unless nothing was owed:
        // echo with every byte back, or a pushed stream that ended cleanly.
        let owed = if self.cfg.server_push {
            end != End::Clean
        } else {
            c.echoed < c.sent
        };
        if matches!(c.phase, Phase::Sending | Phase::Draining) && owed {
            c.longest_stall = c
                .longest_stall
                .max(now.saturating_duration_since(c.stall_mark));
        }
        c.phase = Phase::Done;
        c.end = end;
        c.error = error.map(str::to_string);
        if let Some(mut s) = c.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if let Some(p) = &self.cfg.progress {
            p.ended.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn report(&self, stopped_by: String, run_s: f64, cpu: (f64, f64)) -> StreamsReport {
        let n = |e: End| self.conns.iter().filter(|c| c.end == e).count();
        let established: Vec<&Conn> = self.conns.iter().filter(|c| c.was_established).collect();
        let mut stalls: Vec<f64> = established
            .iter()
            .map(|c| c.longest_stall.as_secs_f64() * 1e3)
            .collect();
        stalls.sort_by(f64::total_cmp);
        let completed_clean = n(End::Clean);
        let mismatched = n(End::Mismatch);
        StreamsReport {
            connect: self.cfg.connect.to_string(),
            conns: self.conns.len(),
            opened: self.conns.len() - n(End::NotOpened),
            established: established.len(),
            completed_clean,
            reset: n(End::Reset),
            ended_early: n(End::EarlyEof),
            mismatched,
            timed_out: n(End::Timeout),
            connect_failed: n(End::ConnectFailed),
            errors: n(End::Error),
            not_opened: n(End::NotOpened),
            rate_per_conn_bytes_per_s: self.cfg.rate_per_conn,
            bytes_sent: self.conns.iter().map(|c| c.sent).sum(),
            bytes_echoed: self.conns.iter().map(|c| c.echoed).sum(),
            stall_p50_ms: percentile(&stalls, 0.50),
            stall_p99_ms: percentile(&stalls, 0.99),
            stall_max_ms: stalls.last().copied().unwrap_or(0.0),
            stopped_by,
            run_s,
            cpu_user_s: cpu.0,
            cpu_sys_s: cpu.1,
            ok: completed_clean == self.conns.len() && mismatched == 0,
            connections: self
                .conns
                .iter()
                .map(|c| ConnReport {
                    id: c.id,
                    end: c.end,
                    sent_bytes: c.sent,
                    echoed_bytes: c.echoed,
                    mismatch_at: c.mismatch_at,
                    longest_stall_ms: c.longest_stall.as_secs_f64() * 1e3,
                    error: c.error.clone(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------- server

/// What the server does; [`ServerConfig::new`] fills sensible defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Exit once this many connections were accepted and all have ended.
    pub max_conns: Option<usize>,
    /// Listen backlog (the kernel caps it at net.core.somaxconn).
    pub backlog: i32,
    /// Hard limit on the run.
    pub deadline: Duration,
    /// Exit (and report) when this flag is set.
    pub stop: Option<Arc<AtomicBool>>,
    pub progress: Option<Arc<Progress>>,
    /// Push the server's own stream instead of echoing (the client needs
    /// [`ClientConfig::server_push`]).
    pub push: Option<Push>,
}

/// The pace of a pushing server, per connection.
#[derive(Debug, Clone, Copy)]
pub struct Push {
    /// One write per connection this often, whatever the client sends.
    pub interval: Duration,
    /// Pattern bytes per second (the id is extra).
    pub rate: u64,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            max_conns: None,
            backlog: 4096,
            deadline: Duration::from_secs(600),
            stop: None,
            progress: None,
            push: None,
        }
    }
}

struct SConn {
    peer: SocketAddr,
    /// Accepted at (the push pace counts from here).
    since: Instant,
    sock: Option<TcpStream>,
    hdr: [u8; 8],
    id: Option<u64>,
    got: u64,
    /// Bytes echoed, or with push the pushed stream bytes written.
    echoed: u64,
    buf: Box<[u8]>,
    pend: (usize, usize),
    eof: bool,
    end: End,
    mismatch_at: Option<u64>,
    error: Option<String>,
}

/// A bound, listening server; [`Server::run`] serves until told to stop.
pub struct Server {
    cfg: ServerConfig,
    poll: Poll,
    listener: TcpListener,
    local: SocketAddr,
}

impl Server {
    /// Bind and listen in the calling thread's network namespace.
    pub fn bind(cfg: ServerConfig) -> Result<Server, StreamsError> {
        let addr = cfg.listen;
        let err = |source| StreamsError::Listen { addr, source };
        if cfg.push.is_some_and(|p| p.interval.is_zero()) {
            return Err(StreamsError::Config(
                "push interval must be positive".into(),
            ));
        }
        if let Some(n) = cfg.max_conns {
            raise_nofile(n as u64 + 64)?;
        }
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(err)?;
        sock.set_reuse_address(true).map_err(err)?;
        sock.bind(&addr.into()).map_err(err)?;
        sock.listen(cfg.backlog).map_err(err)?;
        sock.set_nonblocking(true).map_err(err)?;
        let mut listener = TcpListener::from_std(sock.into());
        let local = listener.local_addr().map_err(err)?;
        let poll = Poll::new().map_err(poll_err("create poll"))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(poll_err("register listener"))?;
        Ok(Server {
            cfg,
            poll,
            listener,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serve until the stop flag, the deadline, or `max_conns` connections
    /// have come and gone; then report.
    pub fn run(mut self) -> Result<ServerReport, StreamsError> {
        let cpu0 = thread_cpu();
        let start = Instant::now();
        let deadline = start + self.cfg.deadline;
        let mut conns: Vec<SConn> = Vec::with_capacity(self.cfg.max_conns.unwrap_or(1024));
        let mut events = Events::with_capacity(1024);
        let mut live = 0usize;
        let mut next_push = start;
        // Filled with the pushed pattern, one write at a time.
        let mut push_buf = if self.cfg.push.is_some() {
            vec![0u8; SCRATCH]
        } else {
            Vec::new()
        };
        loop {
            let now = Instant::now();
            let stop = self
                .cfg
                .stop
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed));
            let done = self.cfg.max_conns.is_some_and(|m| conns.len() >= m) && live == 0;
            if stop || done || now >= deadline {
                break;
            }
            // Wake at least every 100 ms to notice the stop flag.
            let mut timeout = (deadline - now).min(CONTROL_EVERY);
            if let Some(push) = self.cfg.push {
                if now >= next_push {
                    for c in conns.iter_mut() {
                        if push_due(c, now, push, &mut push_buf) {
                            self.close(c, &mut live);
                        }
                    }
                    next_push += push.interval;
                    if next_push < now {
                        next_push = now + push.interval;
                    }
                }
                timeout = timeout.min(next_push.saturating_duration_since(Instant::now()));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(poll_err("wait")(e));
                }
            }
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept(&mut conns, &mut live)?;
                    continue;
                }
                let i = ev.token().0;
                if i < conns.len() && conns[i].sock.is_some() && serve(&mut conns[i], &self.cfg) {
                    self.close(&mut conns[i], &mut live);
                }
            }
        }
        let run_s = start.elapsed().as_secs_f64();
        let cpu1 = thread_cpu();
        Ok(self.report(conns, run_s, (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1)))
    }

    /// Forget an ended connection's socket and buffer.
    fn close(&self, c: &mut SConn, live: &mut usize) {
        let Some(mut s) = c.sock.take() else { return };
        let _ = self.poll.registry().deregister(&mut s);
        c.buf = Box::new([]);
        *live -= 1;
        if let Some(p) = &self.cfg.progress {
            p.ended.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn accept(&mut self, conns: &mut Vec<SConn>, live: &mut usize) -> Result<(), StreamsError> {
        loop {
            if self.cfg.max_conns.is_some_and(|m| conns.len() >= m) {
                // Leave the rest in the backlog; they count as refused.
                return Ok(());
            }
            match self.listener.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.set_nodelay(true);
                    let i = conns.len();
                    self.poll
                        .registry()
                        .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                        .map_err(poll_err("register connection"))?;
                    conns.push(SConn {
                        peer,
                        since: Instant::now(),
                        sock: Some(s),
                        hdr: [0; 8],
                        id: None,
                        got: 0,
                        echoed: 0,
                        buf: vec![0; SERVER_BUF].into_boxed_slice(),
                        pend: (0, 0),
                        eof: false,
                        end: End::Open,
                        mismatch_at: None,
                        error: None,
                    });
                    *live += 1;
                    if let Some(p) = &self.cfg.progress {
                        p.established.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of fds or a connection reset before accept: keep serving.
                Err(e) => {
                    tracing::warn!(listen = %self.local, "accept: {e}");
                    return Ok(());
                }
            }
        }
    }

    fn report(&self, conns: Vec<SConn>, run_s: f64, cpu: (f64, f64)) -> ServerReport {
        let n = |e: End| conns.iter().filter(|c| c.end == e).count();
        let completed_clean = n(End::Clean);
        ServerReport {
            listen: self.local.to_string(),
            accepted: conns.len(),
            completed_clean,
            reset: n(End::Reset),
            ended_early: n(End::EarlyEof),
            mismatched: n(End::Mismatch),
            errors: n(End::Error),
            open_at_exit: n(End::Open),
            bytes_verified: conns.iter().map(|c| c.got).sum(),
            bytes_echoed: conns.iter().map(|c| c.echoed).sum(),
            run_s,
            cpu_user_s: cpu.0,
            cpu_sys_s: cpu.1,
            ok: completed_clean == conns.len(),
            connections: conns
                .into_iter()
                .map(|c| ServerConnReport {
                    id: c.id,
                    peer: c.peer.to_string(),
                    end: c.end,
                    verified_bytes: c.got,
                    echoed_bytes: c.echoed,
                    mismatch_at: c.mismatch_at,
                    error: c.error,
                })
                .collect(),
        }
    }
}

/// Verify `data` (stream bytes from `c.got`) and advance.
fn verify(c: &mut SConn, data: &[u8]) {
    let mut data = data;
    while c.got < HEADER_LEN && !data.is_empty() {
        c.hdr[c.got as usize] = data[0];
        c.got += 1;
        data = &data[1..];
        if c.got == HEADER_LEN {
            c.id = Some(u64::from_le_bytes(c.hdr));
        }
    }
    if data.is_empty() {
        return;
    }
    // After a mismatch the server keeps echoing (the client sees the same
    // bytes and reports the offset too) but stops verifying.
    if let (Some(id), None) = (c.id, c.mismatch_at) {
        if let Some(off) = first_mismatch(id, c.got, data) {
            c.mismatch_at = Some(c.got + off as u64);
            c.got += off as u64;
        } else {
            c.got += data.len() as u64;
        }
    }
}

/// Write the pushed stream the pace allows by now (once the client's id is
/// known; until its FIN); true when the connection has ended (a write
/// failed). A full socket buffer waits for the next tick.
fn push_due(c: &mut SConn, now: Instant, push: Push, buf: &mut [u8]) -> bool {
    let (Some(s), Some(id), false) = (c.sock.as_mut(), c.id, c.eof) else {
        return false;
    };
    let elapsed = now.saturating_duration_since(c.since).as_nanos();
    let target = HEADER_LEN + (elapsed * push.rate as u128 / 1_000_000_000) as u64;
    while c.echoed < target {
        let n = ((target - c.echoed) as usize).min(buf.len());
        fill_stream(push_id(id), c.echoed, &mut buf[..n]);
        match s.write(&buf[..n]) {
            Ok(k) => {
                c.echoed += k as u64;
                if k < n {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.end = if is_reset(&e) { End::Reset } else { End::Error };
                c.error = Some(e.to_string());
                return true;
            }
        }
    }
    false
}

/// Echo what is pending (push: nothing is), read and verify what arrived;
/// true when the connection has ended.
fn serve(c: &mut SConn, cfg: &ServerConfig) -> bool {
    let fail = |c: &mut SConn, e: io::Error| {
        c.end = if is_reset(&e) { End::Reset } else { End::Error };
        c.error = Some(e.to_string());
        true
    };
    loop {
        let Some(s) = c.sock.as_mut() else {
            return true;
        };
        while c.pend.0 < c.pend.1 {
            match s.write(&c.buf[c.pend.0..c.pend.1]) {
                Ok(k) => {
                    c.pend.0 += k;
                    c.echoed += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return fail(c, e),
            }
        }
        if c.eof {
            // Everything echoed: answer the client's FIN with ours.
            let _ = s.shutdown(Shutdown::Write);
            c.end = if c.mismatch_at.is_some() {
                End::Mismatch
            } else if c.got < HEADER_LEN {
                End::EarlyEof
            } else {
                End::Clean
            };
            return true;
        }
        match s.read(&mut c.buf) {
            Ok(0) => c.eof = true,
            Ok(k) => {
                if cfg.push.is_none() {
                    c.pend = (0, k);
                }
                // Take the buffer out so `verify` can borrow the rest of the
                // connection mutably (an empty box does not allocate).
                let buf = std::mem::take(&mut c.buf);
                verify(c, &buf[..k]);
                c.buf = buf;
                if let Some(p) = &cfg.progress {
                    p.bytes.fetch_add(k as u64, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return fail(c, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_starts_with_the_id_and_fill_matches_stream_byte() {
        let id = 0x0102_0304_0506_0708u64;
        let mut buf = vec![0u8; 100];
        fill_stream(id, 0, &mut buf);
        assert_eq!(&buf[..8], &id.to_le_bytes());
        for (j, b) in buf.iter().enumerate() {
            assert_eq!(*b, stream_byte(id, j as u64), "offset {j}");
        }
        // Unaligned start.
        let mut part = vec![0u8; 37];
        fill_stream(id, 13, &mut part);
        assert_eq!(&part[..], &buf[13..50]);
    }

    #[test]
    fn first_mismatch_finds_the_exact_offset() {
        let mut buf = vec![0u8; 300];
        fill_stream(7, 5, &mut buf);
        assert_eq!(first_mismatch(7, 5, &buf), None);
        buf[211] ^= 1;
        assert_eq!(first_mismatch(7, 5, &buf), Some(211));
        // Another connection's stream, or a shifted one, does not match.
        let mut other = vec![0u8; 64];
        fill_stream(8, 100, &mut other);
        assert!(first_mismatch(7, 100, &other).is_some());
        fill_stream(7, 101, &mut other);
        assert!(first_mismatch(7, 100, &other).is_some());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }

    /// Client and server in this process over loopback (no privileges):
    /// every stream completes cleanly and both sides agree on the bytes.
    #[test]
    fn loopback_streams_complete_cleanly() {
        let mut scfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        scfg.max_conns = Some(20);
        scfg.deadline = Duration::from_secs(30);
        let server = Server::bind(scfg).unwrap();
        let addr = server.local_addr();
        let srv = std::thread::spawn(move || server.run().unwrap());
        let mut cfg = ClientConfig::new(addr, 20, 20_000, Duration::from_millis(500));
        cfg.first_id = 1000;
        let r = run_client(&cfg).unwrap();
        let s = srv.join().unwrap();
        assert!(r.ok, "{}", r.summary());
        assert!(s.ok, "{}", s.summary());
        assert_eq!(r.completed_clean, 20);
        assert_eq!(r.bytes_sent, r.bytes_echoed);
        assert_eq!(s.bytes_verified, r.bytes_sent);
        assert!(r.bytes_sent > 20 * 8, "{}", r.summary());
        let ids: std::collections::BTreeSet<u64> =
            s.connections.iter().filter_map(|c| c.id).collect();
        assert_eq!(ids, (1000..1020).collect());
        let json = serde_json::to_string(&r).unwrap();
        let back: StreamsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.completed_clean, 20);
    }

    /// Server push over loopback: each side verifies the other's stream,
    /// the server's arrives on its own pace (more pushed than a 1-byte
    /// client stream could echo), and every byte the client sent reached it.
    #[test]
    fn loopback_server_push_completes_cleanly() {
        let mut scfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        scfg.max_conns = Some(10);
        scfg.deadline = Duration::from_secs(30);
        scfg.push = Some(Push {
            interval: Duration::from_millis(5),
            rate: 20_000,
        });
        let server = Server::bind(scfg).unwrap();
        let addr = server.local_addr();
        let srv = std::thread::spawn(move || server.run().unwrap());
        // The client sends 8 pattern bytes per second: the server's stream
        // can only come from its own timer.
        let mut cfg = ClientConfig::new(addr, 10, 8, Duration::from_millis(500));
        cfg.server_push = true;
        let r = run_client(&cfg).unwrap();
        let s = srv.join().unwrap();
        assert!(r.ok, "{}", r.summary());
        assert!(s.ok, "{}", s.summary());
        assert_eq!(s.bytes_verified, r.bytes_sent);
        assert_eq!(r.bytes_echoed, s.bytes_echoed, "every pushed byte verified");
        assert!(r.bytes_echoed > 10 * 1000, "{}", r.summary());
        for c in &r.connections {
            assert!(c.echoed_bytes > c.sent_bytes, "{c:?}");
        }
    }

    /// A client expecting a push from an echo server: the echo is the
    /// client's own stream, not the pushed one, so every connection
    /// mismatches at the id (bit 63 is the push mark).
    #[test]
    fn push_client_rejects_an_echo() {
        let mut scfg = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        scfg.max_conns = Some(3);
        scfg.deadline = Duration::from_secs(30);
        let server = Server::bind(scfg).unwrap();
        let addr = server.local_addr();
        let srv = std::thread::spawn(move || server.run().unwrap());
        let mut cfg = ClientConfig::new(addr, 3, 2_000, Duration::from_millis(300));
        cfg.server_push = true;
        cfg.drain_timeout = Duration::from_secs(2);
        let r = run_client(&cfg).unwrap();
        let _ = srv.join().unwrap();
        assert!(!r.ok);
        assert_eq!(r.mismatched, 3, "{}", r.summary());
        for c in &r.connections {
            assert_eq!(c.mismatch_at, Some(7), "{c:?}");
        }
    }

    /// A server that resets every connection mid-stream: the client must
    /// report resets and not ok.
    #[test]
    fn client_reports_resets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let srv = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut accepted = 0;
            while accepted < 5 && Instant::now() < deadline {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                accepted += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut b = [0u8; 64];
                let _ = s.read(&mut b);
                // SO_LINGER 0: close sends RST.
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
        });
        let mut cfg = ClientConfig::new(addr, 5, 10_000, Duration::from_secs(2));
        cfg.drain_timeout = Duration::from_secs(2);
        let r = run_client(&cfg).unwrap();
        srv.join().unwrap();
        assert!(!r.ok);
        assert_eq!(r.completed_clean, 0, "{}", r.summary());
        assert_eq!(r.reset, 5, "{}", r.summary());
    }
}
