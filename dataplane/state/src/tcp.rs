//! The TCP connection state machine a stateful gateway keeps (driven by flags seen in both
//! directions, RFC 9293 section 3.3.2's states as a middlebox observes them), and the idle-timeout
//! class of each state.

use serde::Serialize;

/// TCP state of a connection, as the gateway observes it. `orig` is the side that sent the SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TcpState {
    /// SYN seen from orig.
    SynSent = 1,
    /// SYN-ACK seen from the responder.
    SynReceived = 2,
    /// Handshake completed (orig acknowledged the SYN-ACK).
    Established = 3,
    /// orig sent FIN first.
    FinWait = 4,
    /// The responder sent FIN first.
    CloseWait = 5,
    /// Both sides sent FIN; waiting for the last ACK.
    LastAck = 6,
    /// The last FIN was acknowledged.
    TimeWait = 7,
    /// Reset; the connection is removed at once.
    Closed = 8,
}

impl TcpState {
    /// From the record byte.
    pub const fn from_u8(v: u8) -> Option<TcpState> {
        Some(match v {
            1 => TcpState::SynSent,
            2 => TcpState::SynReceived,
            3 => TcpState::Established,
            4 => TcpState::FinWait,
            5 => TcpState::CloseWait,
            6 => TcpState::LastAck,
            7 => TcpState::TimeWait,
            8 => TcpState::Closed,
            _ => return None,
        })
    }
    /// Name as `show conn` prints it.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynReceived => "SYN_RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Closed => "CLOSED",
        }
    }
    /// Idle-timeout class.
    pub const fn class(self) -> TimeoutClass {
        match self {
            TcpState::SynSent | TcpState::SynReceived => TimeoutClass::TcpEmbryonic,
            TcpState::Established => TimeoutClass::TcpEstablished,
            TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck => {
                TimeoutClass::TcpHalfClosed
            }
            TcpState::TimeWait | TcpState::Closed => TimeoutClass::TcpTimeWait,
        }
    }
}

/// Which timeout of [`crate::Timeouts`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TimeoutClass {
    /// `tcp_established`.
    TcpEstablished = 1,
    /// `tcp_half_closed`.
    TcpHalfClosed = 2,
    /// `tcp_embryonic`.
    TcpEmbryonic = 3,
    /// `tcp_time_wait`.
    TcpTimeWait = 4,
    /// `udp`.
    Udp = 5,
    /// `icmp`.
    Icmp = 6,
}

impl TimeoutClass {
    pub(crate) const COUNT: usize = 7;
}

pub(crate) const FIN: u16 = 0x001;
pub(crate) const SYN: u16 = 0x002;
pub(crate) const RST: u16 = 0x004;
pub(crate) const ACK: u16 = 0x010;

/// What a segment does to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Forward; state unchanged.
    Stay,
    /// Forward; new state (a record is emitted).
    To(TcpState),
    /// Forward, then remove the connection (RST).
    Close,
    /// Drop the segment (`drop_tcp_invalid`); the connection is untouched.
    Invalid,
}

/// The transition for a segment with `flags` travelling in direction `from_orig`.
///
/// A middlebox cannot see which FIN an ACK acknowledges without tracking sequence numbers, so
/// LAST_ACK → TIME_WAIT happens on the first pure ACK after both FINs; the connection then only
/// waits `tcp_time_wait`. A SYN from orig in TIME_WAIT reopens the connection (port reuse).
pub(crate) fn step(state: TcpState, from_orig: bool, flags: u16) -> Step {
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    let fin = flags & FIN != 0;
    if flags & RST != 0 {
        return Step::Close;
    }
    match state {
        TcpState::SynSent => match (from_orig, syn, ack) {
            (true, true, false) => Step::Stay,
            (false, true, true) => Step::To(TcpState::SynReceived),
            _ => Step::Invalid,
        },
        TcpState::SynReceived => match (from_orig, syn, ack) {
            (true, false, true) if fin => Step::To(TcpState::FinWait),
            (true, false, true) => Step::To(TcpState::Established),
            (true, true, false) | (false, true, true) => Step::Stay,
            _ => Step::Invalid,
        },
        TcpState::Established => {
            if syn {
                // A retransmitted SYN-ACK (our ACK got lost) is harmless; a new SYN is not.
                if !from_orig && ack {
                    Step::Stay
                } else {
                    Step::Invalid
                }
            } else if fin {
                Step::To(if from_orig {
                    TcpState::FinWait
                } else {
                    TcpState::CloseWait
                })
            } else {
                Step::Stay
            }
        }
        TcpState::FinWait => {
            if syn {
                Step::Invalid
            } else if fin && !from_orig {
                Step::To(TcpState::LastAck)
            } else {
                Step::Stay
            }
        }
        TcpState::CloseWait => {
            if syn {
                Step::Invalid
            } else if fin && from_orig {
                Step::To(TcpState::LastAck)
            } else {
                Step::Stay
            }
        }
        TcpState::LastAck => {
            if syn {
                Step::Invalid
            } else if ack && !fin {
                Step::To(TcpState::TimeWait)
            } else {
                Step::Stay
            }
        }
        TcpState::TimeWait => {
            if syn && !ack && from_orig {
                Step::To(TcpState::SynSent)
            } else if syn {
                Step::Invalid
            } else {
                Step::Stay
            }
        }
        TcpState::Closed => Step::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: &[(bool, u16)]) -> TcpState {
        let mut s = TcpState::SynSent;
        for &(o, f) in seq {
            match step(s, o, f) {
                Step::To(n) => s = n,
                Step::Stay => {}
                Step::Close => return TcpState::Closed,
                Step::Invalid => panic!("invalid in {s:?} with {f:#x} from_orig={o}"),
            }
        }
        s
    }

    #[test]
    fn three_way_handshake_establishes() {
        assert_eq!(
            run(&[(false, SYN | ACK), (true, ACK)]),
            TcpState::Established
        );
    }

    #[test]
    fn active_close_by_originator_reaches_time_wait() {
        let s = run(&[
            (false, SYN | ACK),
            (true, ACK),
            (true, FIN | ACK),
            (false, ACK),
            (false, FIN | ACK),
            (true, ACK),
        ]);
        assert_eq!(s, TcpState::TimeWait);
    }

    #[test]
    fn close_by_responder_goes_through_close_wait() {
        assert_eq!(
            run(&[(false, SYN | ACK), (true, ACK), (false, FIN | ACK)]),
            TcpState::CloseWait
        );
    }

    #[test]
    fn rst_closes_in_any_state() {
        for s in 1..=7 {
            let st = TcpState::from_u8(s).unwrap();
            assert_eq!(step(st, s % 2 == 0, RST | ACK), Step::Close);
        }
    }

    #[test]
    fn data_before_syn_ack_is_invalid() {
        assert_eq!(step(TcpState::SynSent, true, ACK), Step::Invalid);
        assert_eq!(step(TcpState::SynSent, false, ACK), Step::Invalid);
    }
}
