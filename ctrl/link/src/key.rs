//! The failover key as the operator configures it, and the explicit choice between an encrypted
//! link and clear text ([`Security`]).
//!
//! Forms (seeds 004, "Secret Key … Use 32 hexadecimal character key"; the lengths and character
//! set are the appliance command reference's `failover key {secret | hex key}`, which the seeds
//! do not restate):
//!
//! * a shared secret of 1 to 63 characters, each a letter, digit or punctuation (printable ASCII
//!   other than space);
//! * a hex key of exactly 32 hexadecimal digits (16 bytes). Upper-case digits are accepted too
//!   (same value; the command reference lists 0-9 and a-f).
//!
//! The secret never appears in an error message or in `Debug` output, and its bytes are zeroed
//! when the key is dropped (zeroize). Errors say what is wrong by position and length only.

use core::fmt;

use zeroize::Zeroize;

/// Longest shared secret (characters).
pub const SECRET_MAX_LEN: usize = 63;
/// Number of hexadecimal digits in a hex key.
pub const HEX_KEY_DIGITS: usize = 32;
/// A secret shorter than this draws [`FailoverKey::advice`].
pub const SECRET_ADVISED_LEN: usize = 16;

/// Why a configured failover key is not acceptable. Never contains the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing was given.
    #[error(
        "failover key is empty: give a secret of 1 to 63 characters or `hex` and 32 hexadecimal \
         digits (leave the key out entirely to run the links in clear text)"
    )]
    Empty,
    /// The secret is longer than 63 characters.
    #[error("failover key secret is {len} characters long; at most 63 are allowed")]
    SecretTooLong {
        /// Characters given.
        len: usize,
    },
    /// A character of the secret is not a letter, digit or punctuation.
    #[error(
        "failover key secret: character {position} is not a letter, digit or punctuation \
         (spaces, control and non-ASCII characters are not allowed)"
    )]
    SecretCharacter {
        /// 1-based position of the first offending character.
        position: usize,
    },
    /// A hex key does not have exactly 32 digits.
    #[error("failover key hex must be exactly 32 hexadecimal digits; {len} characters were given")]
    HexLength {
        /// Characters given.
        len: usize,
    },
    /// A character of a hex key is not a hexadecimal digit.
    #[error("failover key hex: character {position} is not a hexadecimal digit (0-9, a-f)")]
    HexDigit {
        /// 1-based position of the first offending character.
        position: usize,
    },
}

/// Which form the operator used. Part of the key derivation, so a secret and a hex key never
/// derive the same keys even when their bytes coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// A shared secret string.
    Secret,
    /// A 32-digit hex key.
    Hex,
}

/// The configured failover key. `Debug` prints only its form; the bytes are zeroed on drop.
#[derive(Clone)]
pub struct FailoverKey {
    form: KeyForm,
    len: u8,
    bytes: [u8; SECRET_MAX_LEN],
}

impl FailoverKey {
    /// Parses the appliance's `failover key {secret | hex key}` argument: `hex` followed by
    /// whitespace and 32 hexadecimal digits is a hex key, anything else a secret. (A secret
    /// cannot contain a space, so the two never overlap.)
    pub fn parse(config: &str) -> Result<FailoverKey, KeyError> {
        let trimmed = config.trim();
        if let Some(rest) = trimmed.strip_prefix("hex") {
            if rest.starts_with(char::is_whitespace) {
                return FailoverKey::hex(rest.trim_start());
            }
        }
        FailoverKey::secret(config)
    }

    /// A shared secret: 1 to 63 letters, digits or punctuation characters, taken as given.
    pub fn secret(secret: &str) -> Result<FailoverKey, KeyError> {
        let len = secret.chars().count();
        if len == 0 {
            return Err(KeyError::Empty);
        }
        if let Some(i) = secret.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(KeyError::SecretCharacter { position: i + 1 });
        }
        if len > SECRET_MAX_LEN {
            return Err(KeyError::SecretTooLong { len });
        }
        let mut key = FailoverKey {
            form: KeyForm::Secret,
            len: 0,
            bytes: [0; SECRET_MAX_LEN],
        };
        // All ASCII, so bytes == characters and len ≤ 63 fits.
        key.bytes[..len].copy_from_slice(secret.as_bytes());
        key.len = len as u8;
        Ok(key)
    }

    /// A hex key: exactly 32 hexadecimal digits (16 bytes).
    pub fn hex(digits: &str) -> Result<FailoverKey, KeyError> {
        let len = digits.chars().count();
        if len == 0 {
            return Err(KeyError::Empty);
        }
        if let Some(i) = digits.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(KeyError::HexDigit { position: i + 1 });
        }
        if len != HEX_KEY_DIGITS {
            return Err(KeyError::HexLength { len });
        }
        let mut key = FailoverKey {
            form: KeyForm::Hex,
            len: (HEX_KEY_DIGITS / 2) as u8,
            bytes: [0; SECRET_MAX_LEN],
        };
        for (i, pair) in digits.as_bytes().chunks_exact(2).enumerate() {
            key.bytes[i] = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Ok(key)
    }

    /// The form the operator used.
    pub fn form(&self) -> KeyForm {
        self.form
    }

    /// A warning for the log when the key is weak enough to matter: a secret shorter than 16
    /// characters can be guessed offline by anyone who records one handshake on the failover
    /// link (as with any pre-shared key). `None` for hex keys and long secrets.
    pub fn advice(&self) -> Option<&'static str> {
        (self.form == KeyForm::Secret && usize::from(self.len) < SECRET_ADVISED_LEN).then_some(
            "failover key secret is shorter than 16 characters: someone who records the failover \
             link can try to guess it offline; use a longer secret or a 32-digit hex key",
        )
    }

    /// The key material that enters the key derivation: the secret's bytes or the 16 key bytes.
    pub(crate) fn material(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

impl Drop for FailoverKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.len.zeroize();
    }
}

impl fmt::Debug for FailoverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = match self.form {
            KeyForm::Secret => "secret",
            KeyForm::Hex => "hex",
        };
        write!(f, "FailoverKey({form}, redacted)")
    }
}

/// Proof that the daemon was handed the clear-text warning: the only way to build
/// [`Security::Cleartext`]. Seeds 004: "All information sent over the failover and state links
/// is sent in clear text unless you secure the communication … this information includes any
/// usernames, passwords and preshared keys".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleartextAck {
    _private: (),
}

impl CleartextAck {
    /// The warning the daemon logs at start when no failover key is configured.
    pub const WARNING: &'static str = "no failover key configured: the failover and state links \
        run in CLEAR TEXT without authentication; configuration and command replication send \
        passwords and preshared keys across them, and anyone on those segments can read them or \
        inject frames. Configure the same failover key on both units.";

    /// Hands [`WARNING`](Self::WARNING) to `log` and returns the acknowledgement.
    pub fn acknowledge(log: impl FnOnce(&'static str)) -> CleartextAck {
        log(Self::WARNING);
        CleartextAck { _private: () }
    }
}

/// How both links of a unit are protected: with the failover key, or in clear text by the
/// operator's explicit choice (no key configured).
#[derive(Debug, Clone)]
pub enum Security {
    /// Authenticated and encrypted with keys derived from the failover key.
    Encrypted(FailoverKey),
    /// No key: frames carry sequence numbers but no encryption or authentication.
    Cleartext(CleartextAck),
}

impl Security {
    /// From the configuration: a key means encrypted; no key means clear text, and then `log`
    /// receives the warning (it is not called when a key is given).
    pub fn from_config(key: Option<FailoverKey>, log: impl FnOnce(&'static str)) -> Security {
        match key {
            Some(k) => Security::Encrypted(k),
            None => Security::Cleartext(CleartextAck::acknowledge(log)),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn secret_forms_and_limits() {
        assert_eq!(FailoverKey::secret("a").unwrap().material(), b"a");
        let max = "x".repeat(63);
        assert_eq!(FailoverKey::secret(&max).unwrap().material().len(), 63);
        assert_eq!(
            FailoverKey::secret(&"x".repeat(64)).unwrap_err(),
            KeyError::SecretTooLong { len: 64 }
        );
        assert_eq!(FailoverKey::secret("").unwrap_err(), KeyError::Empty);
        assert_eq!(
            FailoverKey::secret("ab cd").unwrap_err(),
            KeyError::SecretCharacter { position: 3 }
        );
        assert_eq!(
            FailoverKey::secret("abé").unwrap_err(),
            KeyError::SecretCharacter { position: 3 }
        );
        assert!(FailoverKey::secret("P@ss!w0rd#;,.").is_ok());
    }

    #[test]
    fn hex_form() {
        let k = FailoverKey::parse("hex 00112233445566778899AabBccDdeEff").unwrap();
        assert_eq!(k.form(), KeyForm::Hex);
        assert_eq!(
            k.material(),
            &[
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(
            FailoverKey::hex("0011").unwrap_err(),
            KeyError::HexLength { len: 4 }
        );
        assert_eq!(
            FailoverKey::hex("00112233445566778899aabbccddeefg").unwrap_err(),
            KeyError::HexDigit { position: 32 }
        );
        // "hex" alone or glued to more characters is a secret.
        assert_eq!(FailoverKey::parse("hex").unwrap().form(), KeyForm::Secret);
        assert_eq!(
            FailoverKey::parse("hexagon").unwrap().form(),
            KeyForm::Secret
        );
    }

    #[test]
    fn errors_and_debug_never_show_the_secret() {
        let secret = "Sup3r$ecretValue-that-is-long-enough-but-way-too-long-for-the-limit";
        let e = FailoverKey::secret(secret).unwrap_err().to_string();
        assert!(!e.contains("Sup3r"), "{e}");
        let e = FailoverKey::secret("Sup3r secret").unwrap_err().to_string();
        assert!(!e.contains("Sup3r") && !e.contains("secret\""), "{e}");
        let k = FailoverKey::secret("Sup3r$ecret").unwrap();
        let d = format!("{k:?}");
        assert!(!d.contains("Sup3r"), "{d}");
        assert_eq!(d, "FailoverKey(secret, redacted)");
    }

    #[test]
    fn advice_for_short_secrets_only() {
        assert!(FailoverKey::secret("short").unwrap().advice().is_some());
        assert!(FailoverKey::secret("sixteen-chars-ok")
            .unwrap()
            .advice()
            .is_none());
        assert!(FailoverKey::hex(&"0".repeat(32))
            .unwrap()
            .advice()
            .is_none());
    }

    #[test]
    fn cleartext_needs_the_warning_to_be_taken() {
        let mut logged = None;
        let s = Security::from_config(None, |w| logged = Some(w));
        assert!(matches!(s, Security::Cleartext(_)));
        assert_eq!(logged, Some(CleartextAck::WARNING));
        let mut called = false;
        let s = Security::from_config(Some(FailoverKey::secret("k").unwrap()), |_| called = true);
        assert!(matches!(s, Security::Encrypted(_)) && !called);
    }
}
