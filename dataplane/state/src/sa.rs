//! IPsec SA entries: what an SA holds (SPI, peers, algorithms, keys, sequence number, replay
//! window, lifetimes), its validation, and its conversion to and from [`SaRecord`].
//!
//! The SA table is populated by the management API (IKE later); it exists now so that SAs are
//! replicated and the ESP path can use them when it lands. Lifetimes are stored as absolute local
//! deadlines and sent as remaining time.

use core::net::Ipv4Addr;

use serde::Serialize;
use zerocopy::network_endian::{U32, U64};

use crate::records::SaRecord;

/// Direction of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum SaDirection {
    /// We decrypt with it.
    Inbound = 1,
    /// We encrypt with it.
    Outbound = 2,
}

impl SaDirection {
    /// From the record byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(SaDirection::Inbound),
            2 => Some(SaDirection::Outbound),
            _ => None,
        }
    }
}

/// ESP encryption algorithm (ids are tandem's, stable on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Cipher {
    /// ENCR_NULL (RFC 2410): integrity only.
    Null = 0,
    /// AES-CBC 128 (RFC 3602).
    AesCbc128 = 1,
    /// AES-CBC 256.
    AesCbc256 = 2,
    /// AES-GCM 128 with 16-byte ICV (RFC 4106), 4-byte salt.
    AesGcm128 = 3,
    /// AES-GCM 256 (RFC 4106), 4-byte salt.
    AesGcm256 = 4,
    /// ChaCha20-Poly1305 (RFC 7634), 4-byte salt.
    ChaCha20Poly1305 = 5,
}

impl Cipher {
    /// From the record byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Cipher::Null,
            1 => Cipher::AesCbc128,
            2 => Cipher::AesCbc256,
            3 => Cipher::AesGcm128,
            4 => Cipher::AesGcm256,
            5 => Cipher::ChaCha20Poly1305,
            _ => return None,
        })
    }
    /// Key length in bytes (without the salt).
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Null => 0,
            Cipher::AesCbc128 | Cipher::AesGcm128 => 16,
            Cipher::AesCbc256 | Cipher::AesGcm256 | Cipher::ChaCha20Poly1305 => 32,
        }
    }
    /// AEAD ciphers carry their own integrity and a salt.
    pub const fn is_aead(self) -> bool {
        matches!(
            self,
            Cipher::AesGcm128 | Cipher::AesGcm256 | Cipher::ChaCha20Poly1305
        )
    }
}

/// ESP integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Integrity {
    /// None (only with an AEAD cipher).
    None = 0,
    /// HMAC-SHA1-96 (RFC 2404).
    HmacSha1_96 = 1,
    /// HMAC-SHA-256-128 (RFC 4868).
    HmacSha256_128 = 2,
    /// HMAC-SHA-384-192 (RFC 4868).
    HmacSha384_192 = 3,
    /// HMAC-SHA-512-256 (RFC 4868).
    HmacSha512_256 = 4,
}

impl Integrity {
    /// From the record byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Integrity::None,
            1 => Integrity::HmacSha1_96,
            2 => Integrity::HmacSha256_128,
            3 => Integrity::HmacSha384_192,
            4 => Integrity::HmacSha512_256,
            _ => return None,
        })
    }
    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Integrity::None => 0,
            Integrity::HmacSha1_96 => 20,
            Integrity::HmacSha256_128 => 32,
            Integrity::HmacSha384_192 => 48,
            Integrity::HmacSha512_256 => 64,
        }
    }
}

/// An SA as the management API gives it and the table stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaEntry {
    /// SPI (never 0..=255: RFC 4303 reserves them).
    pub spi: u32,
    /// Direction.
    pub direction: SaDirection,
    /// Peer gateway.
    pub peer: Ipv4Addr,
    /// Local address.
    pub local: Ipv4Addr,
    /// Encryption.
    pub cipher: Cipher,
    /// Integrity.
    pub integrity: Integrity,
    /// Encryption key (first `enc_key_len` bytes used).
    pub enc_key: [u8; 32],
    /// Encryption key length; must equal `cipher.key_len()`.
    pub enc_key_len: u8,
    /// AEAD salt.
    pub salt: [u8; 4],
    /// Integrity key (first `auth_key_len` bytes used).
    pub auth_key: [u8; 64],
    /// Integrity key length; must equal `integrity.key_len()`.
    pub auth_key_len: u8,
    /// Next sequence number to send (outbound) or highest received (inbound), 64-bit ESN.
    pub seq: u64,
    /// Replay window size: 0 (outbound), 64 or 128.
    pub replay_window: u8,
    /// Highest sequence number accepted (inbound).
    pub replay_top: u64,
    /// Bit i set = `replay_top - i` received.
    pub replay_bitmap: u128,
    /// Remaining lifetime in seconds at the time of `sa_add` (`None`: unlimited).
    pub life_secs: Option<u32>,
    /// Remaining lifetime in bytes (`None`: unlimited).
    pub life_bytes: Option<u64>,
}

/// Why an SA was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// SPI in the reserved range.
    #[error("sa spi {spi:#x}: SPIs 0..=255 are reserved (RFC 4303)")]
    ReservedSpi {
        /// The SPI.
        spi: u32,
    },
    /// Cipher and integrity do not go together.
    #[error("sa spi {spi:#x}: {what}")]
    Algorithms {
        /// The SPI.
        spi: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// Replay window size.
    #[error("sa spi {spi:#x}: replay window must be 0 (outbound), 64 or 128, got {window}")]
    ReplayWindow {
        /// The SPI.
        spi: u32,
        /// The size given.
        window: u8,
    },
    /// A key length does not match the algorithm.
    #[error("sa spi {spi:#x}: {which} key is {len} bytes, the algorithm needs {want}")]
    KeyLength {
        /// The SPI.
        spi: u32,
        /// `enc` or `auth`.
        which: &'static str,
        /// Length given.
        len: usize,
        /// Length needed.
        want: usize,
    },
    /// The SA table is full (`drop_sa_table_full`).
    #[error("sa spi {spi:#x}: SA table full")]
    TableFull {
        /// The SPI.
        spi: u32,
    },
}

impl SaEntry {
    /// Checks SPI, algorithm pairing and replay window.
    pub fn validate(&self) -> Result<(), SaError> {
        let spi = self.spi;
        if spi < 256 {
            return Err(SaError::ReservedSpi { spi });
        }
        match (self.cipher.is_aead(), self.integrity) {
            (true, Integrity::None) => {}
            (true, _) => {
                return Err(SaError::Algorithms {
                    spi,
                    what: "an AEAD cipher takes no separate integrity algorithm",
                })
            }
            (false, Integrity::None) => {
                return Err(SaError::Algorithms {
                    spi,
                    what: "a non-AEAD cipher needs an integrity algorithm",
                })
            }
            (false, _) => {}
        }
        for (which, len, want) in [
            ("enc", self.enc_key_len, self.cipher.key_len()),
            ("auth", self.auth_key_len, self.integrity.key_len()),
        ] {
            if usize::from(len) != want {
                return Err(SaError::KeyLength {
                    spi,
                    which,
                    len: usize::from(len),
                    want,
                });
            }
        }
        let ok_window = match self.direction {
            SaDirection::Outbound => self.replay_window == 0,
            SaDirection::Inbound => matches!(self.replay_window, 64 | 128),
        };
        if !ok_window {
            return Err(SaError::ReplayWindow {
                spi,
                window: self.replay_window,
            });
        }
        Ok(())
    }
}

/// One stored SA with its local deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SaSlot {
    pub(crate) e: SaEntry,
    pub(crate) created: u64,
    /// Absolute local deadline in ns, `u64::MAX` for none.
    pub(crate) expires: u64,
    /// Last replicated outbound sequence number.
    pub(crate) seq_sent: u64,
    /// The bulk generation it was last applied or added in (see `Shard::bulk_mark`).
    pub(crate) bulk_gen: u16,
}

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

impl SaSlot {
    pub(crate) fn record(&self, now: u64) -> SaRecord {
        let e = &self.e;
        let ek = e.cipher.key_len();
        let ak = e.integrity.key_len();
        let mut enc_key = [0u8; 32];
        enc_key[..ek].copy_from_slice(&e.enc_key[..ek]);
        let mut auth_key = [0u8; 64];
        auth_key[..ak].copy_from_slice(&e.auth_key[..ak]);
        let life_secs = if self.expires == u64::MAX {
            u32::MAX
        } else {
            u32::try_from(self.expires.saturating_sub(now) / NS_PER_S).unwrap_or(u32::MAX - 1)
        };
        SaRecord {
            spi: U32::new(e.spi),
            direction: e.direction as u8,
            protocol: 50,
            cipher: e.cipher as u8,
            integrity: e.integrity as u8,
            peer: e.peer.octets(),
            local: e.local.octets(),
            enc_key_len: ek as u8,
            auth_key_len: ak as u8,
            replay_window: e.replay_window,
            _pad: 0,
            salt: if e.cipher.is_aead() { e.salt } else { [0; 4] },
            enc_key,
            auth_key,
            seq: U64::new(e.seq),
            replay_top: U64::new(e.replay_top),
            replay_bitmap: e.replay_bitmap.to_be_bytes(),
            life_secs_remaining: U32::new(life_secs),
            _pad2: [0; 4],
            life_bytes_remaining: U64::new(e.life_bytes.unwrap_or(u64::MAX)),
            created_age_ms: U64::new(now.saturating_sub(self.created) / NS_PER_MS),
        }
    }

    /// A delete record: only SPI and direction set.
    pub(crate) fn delete_record(spi: u32, direction: SaDirection) -> SaRecord {
        SaRecord {
            spi: U32::new(spi),
            direction: direction as u8,
            protocol: 50,
            cipher: 0,
            integrity: 0,
            peer: [0; 4],
            local: [0; 4],
            enc_key_len: 0,
            auth_key_len: 0,
            replay_window: 0,
            _pad: 0,
            salt: [0; 4],
            enc_key: [0; 32],
            auth_key: [0; 64],
            seq: U64::ZERO,
            replay_top: U64::ZERO,
            replay_bitmap: [0; 16],
            life_secs_remaining: U32::ZERO,
            _pad2: [0; 4],
            life_bytes_remaining: U64::ZERO,
            created_age_ms: U64::ZERO,
        }
    }

    /// Validates a received record into an entry and its local times.
    pub(crate) fn from_record(r: &SaRecord, now: u64) -> Result<SaSlot, &'static str> {
        let direction = SaDirection::from_u8(r.direction).ok_or("unknown SA direction")?;
        let cipher = Cipher::from_u8(r.cipher).ok_or("unknown cipher")?;
        let integrity = Integrity::from_u8(r.integrity).ok_or("unknown integrity algorithm")?;
        if r.protocol != 50 {
            return Err("SA protocol is not ESP");
        }
        let life_secs = r.life_secs_remaining.get();
        let expires = if life_secs == u32::MAX {
            u64::MAX
        } else {
            now.saturating_add(u64::from(life_secs) * NS_PER_S)
        };
        let life_bytes = r.life_bytes_remaining.get();
        let mut seq = r.seq.get();
        if direction == SaDirection::Outbound {
            // Resume past anything the active may have sent since its last record.
            seq = seq.saturating_add(crate::records::SA_SEQ_STEP);
        }
        let e = SaEntry {
            spi: r.spi.get(),
            direction,
            peer: Ipv4Addr::from(r.peer),
            local: Ipv4Addr::from(r.local),
            cipher,
            integrity,
            enc_key: r.enc_key,
            enc_key_len: r.enc_key_len,
            auth_key_len: r.auth_key_len,
            salt: r.salt,
            auth_key: r.auth_key,
            seq,
            replay_window: r.replay_window,
            replay_top: r.replay_top.get(),
            replay_bitmap: u128::from_be_bytes(r.replay_bitmap),
            life_secs: (life_secs != u32::MAX).then_some(life_secs),
            life_bytes: (life_bytes != u64::MAX).then_some(life_bytes),
        };
        e.validate().map_err(|e| match e {
            SaError::ReservedSpi { .. } => "reserved SPI",
            SaError::Algorithms { what, .. } => what,
            SaError::ReplayWindow { .. } => "bad replay window size",
            SaError::KeyLength { .. } => "key length does not match the algorithm",
            SaError::TableFull { .. } => "SA table full",
        })?;
        Ok(SaSlot {
            e,
            created: now.saturating_sub(r.created_age_ms.get().saturating_mul(NS_PER_MS)),
            expires,
            seq_sent: r.seq.get(),
            bulk_gen: 0,
        })
    }
}

/// An SA as shown to operators (keys omitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SaView {
    /// SPI.
    pub spi: u32,
    /// Direction.
    pub direction: SaDirection,
    /// Peer.
    pub peer: Ipv4Addr,
    /// Local.
    pub local: Ipv4Addr,
    /// Cipher.
    pub cipher: Cipher,
    /// Integrity.
    pub integrity: Integrity,
    /// Sequence number.
    pub seq: u64,
    /// Seconds left (`None`: unlimited).
    pub life_secs_remaining: Option<u64>,
}
