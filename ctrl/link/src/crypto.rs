//! The key schedule (HKDF-SHA256, RFC 5869) and the primitives the link uses: the hello MAC
//! (HMAC-SHA256) and the data-frame AEAD (AES-256-GCM, RFC 5116). Every label is listed in
//! `docs/secure-link.md`, "Key schedule"; `tests/golden.rs` recomputes them independently.
//!
//! Key material lives in `Zeroizing` arrays or in cipher instances built with the `zeroize`
//! feature, so it is wiped when a session or link is dropped.

use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::key::{FailoverKey, KeyForm, Security};
use crate::wire::{LinkKind, Protection, HELLO_MAC_LEN, NONCE_LEN, TAG_LEN};

/// HKDF-Extract salt for the failover key.
pub(crate) const PSK_SALT: &[u8] = b"tandem secure link v1";
/// Prefix byte of the key material: which form the operator used.
pub(crate) const fn form_byte(form: KeyForm) -> u8 {
    match form {
        KeyForm::Secret => 1,
        KeyForm::Hex => 2,
    }
}
pub(crate) const LABEL_LINK_PSK: &[u8] = b"tandem v1 link psk";
pub(crate) const LABEL_HELLO_MAC: &[u8] = b"tandem v1 hello mac";
pub(crate) const LABEL_LO_TO_HI: &[u8] = b"tandem v1 data lo->hi";
pub(crate) const LABEL_HI_TO_LO: &[u8] = b"tandem v1 data hi->lo";
pub(crate) const LABEL_SESSION_ID: &[u8] = b"tandem v1 session id";

type HmacSha256 = Hmac<Sha256>;

/// HKDF-Expand with `label || kind` as info. Lengths here (4 and 32) are far below HKDF's
/// 255 × 32 limit, so the expansion cannot fail; zeros would be the (unreachable) fallback.
fn expand(hk: &Hkdf<Sha256>, label: &[u8], kind: LinkKind, out: &mut [u8]) {
    if hk.expand_multi_info(&[label, &[kind as u8]], out).is_err() {
        out.fill(0);
    }
}

/// Per-link secrets derived once from the failover key.
pub(crate) struct LinkSecrets {
    kind: LinkKind,
    protection: Protection,
    /// Input keying material of every session of this link (zeros in clear text, where it only
    /// feeds the session id).
    link_psk: Zeroizing<[u8; 32]>,
    hello_key: Zeroizing<[u8; 32]>,
}

impl LinkSecrets {
    pub(crate) fn new(security: &Security, kind: LinkKind) -> LinkSecrets {
        let mut link_psk = Zeroizing::new([0u8; 32]);
        let mut hello_key = Zeroizing::new([0u8; 32]);
        let protection = match security {
            Security::Cleartext(_) => Protection::Cleartext,
            Security::Encrypted(key) => {
                let hk = psk_hkdf(key);
                expand(&hk, LABEL_LINK_PSK, kind, &mut link_psk[..]);
                expand(&hk, LABEL_HELLO_MAC, kind, &mut hello_key[..]);
                Protection::Aes256Gcm
            }
        };
        LinkSecrets {
            kind,
            protection,
            link_psk,
            hello_key,
        }
    }

    pub(crate) fn protection(&self) -> Protection {
        self.protection
    }

    /// The hello MAC over `body` (all zeros in clear text).
    pub(crate) fn hello_mac(&self, body: &[u8]) -> [u8; HELLO_MAC_LEN] {
        let mut out = [0u8; HELLO_MAC_LEN];
        if self.protection == Protection::Cleartext {
            return out;
        }
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.hello_key[..]) else {
            return out; // unreachable: HMAC takes keys of any length
        };
        mac.update(body);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Constant-time check of a hello MAC (always true in clear text).
    pub(crate) fn verify_hello(&self, body: &[u8], tag: &[u8; HELLO_MAC_LEN]) -> bool {
        if self.protection == Protection::Cleartext {
            return true;
        }
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.hello_key[..]) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }

    /// The keys of the session named by the two handshake nonces. The nonces must differ (the
    /// link refuses a hello that carries its own nonce).
    pub(crate) fn session(
        &self,
        my_nonce: &[u8; NONCE_LEN],
        peer_nonce: &[u8; NONCE_LEN],
    ) -> SessionKeys {
        // The two units order the nonces the same way, so they derive the same session.
        let i_am_lo = my_nonce < peer_nonce;
        let (lo, hi) = if i_am_lo {
            (my_nonce, peer_nonce)
        } else {
            (peer_nonce, my_nonce)
        };
        let mut salt = [0u8; 2 * NONCE_LEN];
        salt[..NONCE_LEN].copy_from_slice(lo);
        salt[NONCE_LEN..].copy_from_slice(hi);
        let hk = Hkdf::<Sha256>::new(Some(&salt), &self.link_psk[..]);
        let mut id = [0u8; 4];
        expand(&hk, LABEL_SESSION_ID, self.kind, &mut id);
        let (send, recv) = if self.protection == Protection::Cleartext {
            (None, None)
        } else {
            let mut lo_hi = Zeroizing::new([0u8; 32]);
            let mut hi_lo = Zeroizing::new([0u8; 32]);
            expand(&hk, LABEL_LO_TO_HI, self.kind, &mut lo_hi[..]);
            expand(&hk, LABEL_HI_TO_LO, self.kind, &mut hi_lo[..]);
            // By reference: no unzeroized copy of the key on the stack.
            let lo_hi = Aes256Gcm::new((&*lo_hi).into());
            let hi_lo = Aes256Gcm::new((&*hi_lo).into());
            if i_am_lo {
                (Some(lo_hi), Some(hi_lo))
            } else {
                (Some(hi_lo), Some(lo_hi))
            }
        };
        SessionKeys {
            id: u32::from_be_bytes(id),
            send,
            recv,
            send_dir: if i_am_lo { DIR_LO_TO_HI } else { DIR_HI_TO_LO },
        }
    }
}

/// HKDF over the failover key: salt [`PSK_SALT`], IKM = form byte || key material.
fn psk_hkdf(key: &FailoverKey) -> Hkdf<Sha256> {
    let material = key.material();
    let mut ikm = Zeroizing::new([0u8; 1 + crate::key::SECRET_MAX_LEN]);
    ikm[0] = form_byte(key.form());
    ikm[1..=material.len()].copy_from_slice(material);
    Hkdf::<Sha256>::new(Some(PSK_SALT), &ikm[..=material.len()])
}

/// Direction byte of the AEAD nonce: the sender holds the lower handshake nonce.
pub(crate) const DIR_LO_TO_HI: u8 = 0;
/// Direction byte of the AEAD nonce: the sender holds the higher handshake nonce.
pub(crate) const DIR_HI_TO_LO: u8 = 1;

/// The 96-bit AEAD nonce: direction, three zero bytes, the 64-bit sequence number (big-endian).
/// Each direction has its own key as well, so a nonce never repeats under one key: the sequence
/// number only grows within a session and the link rekeys long before it could wrap. (A
/// deterministic 96-bit nonce is the construction SP 800-38D §8.2.1 recommends for GCM.)
pub(crate) fn aead_nonce(dir: u8, seq: u64) -> Array<u8, U12> {
    let mut n = [0u8; 12];
    n[0] = dir;
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n.into()
}

/// The keys of one session, both directions.
pub(crate) struct SessionKeys {
    pub(crate) id: u32,
    send: Option<Aes256Gcm>,
    recv: Option<Aes256Gcm>,
    send_dir: u8,
}

/// The AEAD refused (plaintext too long to seal, or a tag that does not verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

impl SessionKeys {
    fn recv_dir(&self) -> u8 {
        self.send_dir ^ 1
    }

    /// Encrypts `payload` in place, writing the tag into `tag` (no-op in clear text).
    pub(crate) fn seal(
        &self,
        seq: u64,
        aad: &[u8],
        payload: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), AeadError> {
        let Some(cipher) = &self.send else {
            return Ok(());
        };
        let t = cipher
            .encrypt_inout_detached(&aead_nonce(self.send_dir, seq), aad, payload.into())
            .map_err(|_| AeadError)?;
        let Some(dst) = tag.get_mut(..TAG_LEN) else {
            return Err(AeadError);
        };
        dst.copy_from_slice(&t);
        Ok(())
    }

    /// Authenticates and decrypts `payload` in place (no-op in clear text). On failure the
    /// payload bytes are unspecified.
    pub(crate) fn open(
        &self,
        seq: u64,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadError> {
        let Some(cipher) = &self.recv else {
            return Ok(());
        };
        let Ok(tag) = <&Tag>::try_from(tag) else {
            return Err(AeadError);
        };
        cipher
            .decrypt_inout_detached(&aead_nonce(self.recv_dir(), seq), aad, payload.into(), tag)
            .map_err(|_| AeadError)
    }
}
