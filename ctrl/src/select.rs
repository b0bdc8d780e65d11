//! Backend selection (`unit.backend`): which packet I/O backends are tried,
//! in which order, and what is logged about the choice.
//!
//! The decision is pure: [`select`] takes an opener closure, so tests drive
//! it with fakes and check the order of attempts and every log line, while
//! tandemd passes a closure that really attaches XDP and opens sockets.
//! `auto` tries AF_XDP first (the primary backend: descriptor moves, no
//! copies in tandem) and falls back to io_uring over AF_PACKET (works on any
//! kernel with io_uring and any NIC), saying why AF_XDP was not used.

use std::fmt;

use crate::config::BackendChoice;

/// A packet I/O backend kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    AfXdp,
    IoUring,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::AfXdp => "AF_XDP",
            BackendKind::IoUring => "io_uring",
        })
    }
}

/// The backends to try for a choice, in order.
pub fn candidates(choice: BackendChoice) -> &'static [BackendKind] {
    match choice {
        BackendChoice::Auto => &[BackendKind::AfXdp, BackendKind::IoUring],
        BackendChoice::Afxdp => &[BackendKind::AfXdp],
        BackendChoice::IoUring => &[BackendKind::IoUring],
    }
}

/// What an opener returns on success: the opened resources and a short
/// description for the logs (`on out0, in0; XDP generic mode, copy`).
pub struct Opened<T> {
    pub value: T,
    pub detail: String,
}

/// The chosen backend.
pub struct Selected<T> {
    pub value: T,
    pub kind: BackendKind,
    /// One line saying why this backend: shown by `show version` and logged.
    pub reason: String,
    /// Warnings about backends that were tried and failed, in order.
    pub fallbacks: Vec<String>,
}

/// No backend could be opened; every attempt's error, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no packet I/O backend could be opened (unit.backend = \"{choice}\"): {}", failures.iter().map(|(k, e)| format!("{k}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct SelectError {
    pub choice: BackendChoice,
    pub failures: Vec<(BackendKind, String)>,
}

/// Try the candidates of `choice` in order with `open`, returning the first
/// that opens. An opener must release whatever it opened before failing
/// (detach XDP, close sockets), so a fallback starts from a clean device.
pub fn select<T>(
    choice: BackendChoice,
    mut open: impl FnMut(BackendKind) -> Result<Opened<T>, String>,
) -> Result<Selected<T>, SelectError> {
    let list = candidates(choice);
    let mut failures: Vec<(BackendKind, String)> = Vec::new();
    let mut fallbacks = Vec::new();
    for (i, kind) in list.iter().copied().enumerate() {
        match open(kind) {
            Ok(Opened { value, detail }) => {
                let how = match (choice, failures.as_slice()) {
                    (BackendChoice::Auto, []) => {
                        format!("unit.backend = \"auto\" and {kind} opened {detail}")
                    }
                    (BackendChoice::Auto, failed) => format!(
                        "unit.backend = \"auto\", {}; {kind} opened {detail}",
                        failed
                            .iter()
                            .map(|(k, e)| format!("{k} failed ({e})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    (forced, _) => format!("unit.backend = \"{forced}\"; {kind} opened {detail}"),
                };
                return Ok(Selected {
                    value,
                    kind,
                    reason: how,
                    fallbacks,
                });
            }
            Err(e) => {
                if let Some(next) = list.get(i + 1) {
                    fallbacks.push(format!("{kind} unavailable: {e}; trying {next}"));
                }
                failures.push((kind, e));
            }
        }
    }
    Err(SelectError { choice, failures })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `select` with a fake opener whose outcome per kind is given;
    /// returns the attempts made and the result.
    fn run(
        choice: BackendChoice,
        afxdp: Result<&str, &str>,
        uring: Result<&str, &str>,
    ) -> (
        Vec<BackendKind>,
        Result<Selected<&'static str>, SelectError>,
    ) {
        let mut tried = Vec::new();
        let r = select(choice, |k| {
            tried.push(k);
            let outcome = match k {
                BackendKind::AfXdp => afxdp,
                BackendKind::IoUring => uring,
            };
            outcome
                .map(|d| Opened {
                    value: if k == BackendKind::AfXdp {
                        "xsk"
                    } else {
                        "uring"
                    },
                    detail: d.to_string(),
                })
                .map_err(str::to_string)
        });
        (tried, r)
    }

    #[test]
    fn auto_prefers_afxdp() {
        let (tried, r) = run(BackendChoice::Auto, Ok("on out0 (generic, copy)"), Ok("x"));
        let s = r.unwrap();
        assert_eq!(tried, [BackendKind::AfXdp]);
        assert_eq!(s.kind, BackendKind::AfXdp);
        assert_eq!(s.value, "xsk");
        assert_eq!(
            s.reason,
            "unit.backend = \"auto\" and AF_XDP opened on out0 (generic, copy)"
        );
        assert!(s.fallbacks.is_empty());
    }

    #[test]
    fn auto_falls_back_to_io_uring_and_says_why() {
        let (tried, r) = run(
            BackendChoice::Auto,
            Err("interface out0: bind XSK: Operation not supported"),
            Ok("on out0"),
        );
        let s = r.unwrap();
        assert_eq!(tried, [BackendKind::AfXdp, BackendKind::IoUring]);
        assert_eq!(s.kind, BackendKind::IoUring);
        assert_eq!(
            s.fallbacks,
            ["AF_XDP unavailable: interface out0: bind XSK: Operation not supported; trying io_uring"]
        );
        assert_eq!(
            s.reason,
            "unit.backend = \"auto\", AF_XDP failed (interface out0: bind XSK: Operation not supported); io_uring opened on out0"
        );
    }

    #[test]
    fn forced_backends_do_not_fall_back() {
        let (tried, r) = run(BackendChoice::Afxdp, Err("no XDP"), Ok("x"));
        assert_eq!(tried, [BackendKind::AfXdp]);
        assert_eq!(
            r.err().unwrap().to_string(),
            "no packet I/O backend could be opened (unit.backend = \"afxdp\"): AF_XDP: no XDP"
        );
        let (tried, r) = run(BackendChoice::IoUring, Ok("x"), Ok("on out0"));
        assert_eq!(tried, [BackendKind::IoUring]);
        assert_eq!(
            r.unwrap().reason,
            "unit.backend = \"io_uring\"; io_uring opened on out0"
        );
    }

    #[test]
    fn auto_reports_every_failure() {
        let (tried, r) = run(BackendChoice::Auto, Err("a"), Err("b"));
        assert_eq!(tried, [BackendKind::AfXdp, BackendKind::IoUring]);
        let e = r.err().unwrap();
        assert_eq!(
            e.to_string(),
            "no packet I/O backend could be opened (unit.backend = \"auto\"): AF_XDP: a; io_uring: b"
        );
    }
}
