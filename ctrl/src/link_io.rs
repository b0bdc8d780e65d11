//! One secure link on one L2 socket: the [`SecureLink`] session of the
//! failover or state link with its AF_PACKET socket and the mate's MAC,
//! opened and driven the same way by the HA thread (failover link,
//! EtherType 0x88B5) and the replication thread (state link, 0x88B6).
//!
//! Driving order (the `SecureLink` doc): a received frame goes through
//! [`LinkIo::receive`]; after it, after a seal and after a timer, drain
//! events and hellos with [`LinkIo::drain`].

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use tandem_io::l2sock::{L2Socket, BROADCAST};
use tandem_link::wire::NONCE_LEN;
use tandem_link::{
    EstablishCause, EventKind, IfName, LinkConfig, LinkKind, Received, SecureLink, Security,
};

/// Nonces from the OS CSPRNG (`/dev/urandom`, opened once).
pub struct OsNonces(File);

impl OsNonces {
    pub fn open() -> std::io::Result<OsNonces> {
        File::open("/dev/urandom").map(OsNonces)
    }

    /// A random non-zero `u32` (a replication sender epoch).
    pub fn epoch(&mut self) -> u32 {
        let mut b = [0u8; 4];
        loop {
            self.read(&mut b);
            let e = u32::from_ne_bytes(b);
            if e != 0 {
                return e;
            }
        }
    }

    fn read(&mut self, out: &mut [u8]) {
        if self.0.read_exact(out).is_err() {
            // Never reuse a nonce silently: a failed read is fatal for the
            // links' security.
            tracing::error!("cannot read /dev/urandom for a link nonce; stopping");
            std::process::abort();
        }
    }
}

impl tandem_link::NonceSource for OsNonces {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) {
        self.read(nonce);
    }
}

/// Why a link could not be opened; names the device.
#[derive(Debug, thiserror::Error)]
pub enum LinkIoError {
    #[error("{0}")]
    Socket(#[from] tandem_io::l2sock::L2Error),
    #[error("link device \"{device}\": {why}")]
    Device { device: String, why: String },
}

/// A secure link on its socket.
pub struct LinkIo {
    pub sock: L2Socket,
    pub link: SecureLink<OsNonces>,
    /// Learned from any accepted frame; broadcast before that.
    pub mate: Option<[u8; 6]>,
    /// The last receive failed (logged once until a receive works again).
    pub rx_failing: bool,
}

impl LinkIo {
    /// Open `kind` on `dev` for `ethertype`, keyed by `security`.
    pub fn open(
        kind: LinkKind,
        dev: &str,
        ethertype: u16,
        security: &Security,
        now: Duration,
    ) -> Result<LinkIo, LinkIoError> {
        let sock = L2Socket::open(dev, ethertype)?;
        LinkIo::with_socket(kind, sock, security, now)
    }

    /// The same on a socket opened by the caller (tests open it inside a
    /// network namespace).
    pub fn with_socket(
        kind: LinkKind,
        sock: L2Socket,
        security: &Security,
        now: Duration,
    ) -> Result<LinkIo, LinkIoError> {
        let dev = sock.ifname().to_string();
        let err = |why: String| LinkIoError::Device {
            device: dev.clone(),
            why,
        };
        let name = IfName::new(&dev).map_err(|e| err(e.to_string()))?;
        let nonces = OsNonces::open().map_err(|e| err(format!("/dev/urandom: {e}")))?;
        let link = SecureLink::new(LinkConfig::new(kind, name), security, nonces, now)
            .map_err(|e| err(e.to_string()))?;
        Ok(LinkIo {
            sock,
            link,
            mate: None,
            rx_failing: false,
        })
    }

    /// Receive one frame into `buf` (not waiting) and hand it to the
    /// session; `None` when nothing is queued or the socket failed (logged
    /// once). An accepted frame teaches the mate's MAC.
    pub fn receive(&mut self, now: Duration, buf: &mut [u8]) -> Option<Received> {
        let (src, n) = match self.sock.recv(buf, Duration::ZERO) {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                if !self.rx_failing {
                    self.rx_failing = true;
                    tracing::warn!(
                        "{}: receive on {}: {e}",
                        self.link.kind().name(),
                        self.sock.ifname()
                    );
                }
                return None;
            }
        };
        if self.rx_failing {
            self.rx_failing = false;
            tracing::info!(
                "{}: receiving on {} again",
                self.link.kind().name(),
                self.sock.ifname()
            );
        }
        let r = self.link.handle_frame(now, &mut buf[..n]);
        if matches!(r, Received::Data(_) | Received::Handshake) {
            self.mate = Some(src);
        }
        Some(r)
    }

    /// Send a sealed frame to the mate (broadcast until it is known).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        self.sock.send(self.mate.unwrap_or(BROADCAST), frame)
    }

    /// Log the session's events (`rejected` counts rejected frames) and send
    /// its queued hellos, using `buf` as scratch. True when a new
    /// incarnation of the mate established a session meanwhile.
    pub fn drain(&mut self, now: Duration, buf: &mut [u8], rejected: &mut u64) -> bool {
        let mut mate_restarted = false;
        while let Some(ev) = self.link.poll_event() {
            match ev.kind {
                EventKind::Rejected { count, .. } => {
                    *rejected += count;
                    tracing::warn!("{ev}");
                }
                EventKind::Established { cause, .. } => {
                    mate_restarted |= cause == EstablishCause::MateRestarted;
                    tracing::info!("{ev}");
                }
            }
        }
        while let Some(n) = self.link.poll_transmit(now, buf) {
            if let Err(e) = self.send(&buf[..n]) {
                tracing::debug!(
                    "{}: send on {}: {e}",
                    self.link.kind().name(),
                    self.sock.ifname()
                );
            }
        }
        mate_restarted
    }

    /// Run the session's timer if due.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.link.poll_timeout().is_some_and(|t| t <= now) {
            self.link.handle_timeout(now);
        }
    }
}
