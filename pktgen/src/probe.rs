//! The probe frame: Ethernet + IPv4 + UDP carrying tandem's probe header.
//! Owns the byte layout, the per-run frame template (built once, stamped per
//! frame without allocation) and the receiver's parser.
//!
//! Probe header, at the start of the UDP payload, all fields big-endian:
//!
//! ```text
//!  0       2               6                              14                             22
//!  +-------+---------------+-------------------------------+------------------------------+
//!  | magic |   stream id   |        sequence number        |  send time, CLOCK_MONOTONIC ns |
//!  +-------+---------------+-------------------------------+------------------------------+
//! ```
//!
//! The magic is 16 bits (not 32) so that headers + probe fit a 64-byte frame
//! exactly: `frame_len` counts the bytes handed to the backend, FCS excluded
//! (14 + 20 + 8 + 22 = 64). On the wire such a frame occupies 68 bytes plus
//! preamble and gap; every row of a comparison uses the same size, so rates
//! stay comparable.
//!
//! The parser never panics on arbitrary bytes: every offset is checked
//! against the slice length before it is read.

use std::net::Ipv4Addr;

/// First two bytes of every probe payload ("t" + 0x9e, unlikely in real
/// traffic at that position).
pub const PROBE_MAGIC: u16 = 0x749e;
/// Bytes of the probe header.
pub const PROBE_LEN: usize = 22;
/// Ethernet (14) + IPv4 without options (20) + UDP (8).
pub const HEADERS_LEN: usize = 14 + 20 + 8;
/// Smallest frame that carries a probe.
pub const MIN_FRAME_LEN: usize = HEADERS_LEN + PROBE_LEN;
/// Largest frame pktgen builds (a standard 1500-byte MTU plus Ethernet header).
pub const MAX_FRAME_LEN: usize = 1514;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_UDP: u8 = 17;

// Offsets in a template frame (no VLAN tag, no IP options).
const IP_AT: usize = 14;
const UDP_AT: usize = IP_AT + 20;
const SPORT_AT: usize = UDP_AT;
const UDP_CSUM_AT: usize = UDP_AT + 6;
const PROBE_AT: usize = HEADERS_LEN;
const SEQ_AT: usize = PROBE_AT + 6;
const TS_AT: usize = PROBE_AT + 14;

/// What a sender puts on the wire: addresses, ports, the number of flows and
/// the frame size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// First source port; flow `i` uses `src_port + i` (wrapping).
    pub src_port: u16,
    pub dst_port: u16,
    /// Number of flows: the source port cycles over this many values, one
    /// step per frame, so consecutive frames hash to different queues/workers.
    pub flows: u16,
    /// Ethernet frame length without FCS, `MIN_FRAME_LEN..=MAX_FRAME_LEN`.
    pub frame_len: usize,
}

/// Why a [`FlowSpec`] cannot be turned into frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("frame length {len} is below {MIN_FRAME_LEN}, the smallest frame that carries the probe header (14 Ethernet + 20 IPv4 + 8 UDP + {PROBE_LEN} probe; FCS not counted)")]
    FrameTooShort { len: usize },
    #[error("frame length {len} is above {max} (the backend's frame size or a 1500-byte MTU)")]
    FrameTooLong { len: usize, max: usize },
    #[error("flows must be at least 1")]
    NoFlows,
}

/// A probe read back from a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub stream: u32,
    pub seq: u64,
    /// Send time, CLOCK_MONOTONIC nanoseconds.
    pub tx_ns: u64,
}

/// A complete frame built once per run; [`FrameTemplate::write`] copies it
/// into a backend frame and stamps source port, sequence number, timestamp
/// and the UDP checksum.
#[derive(Clone, Debug)]
pub struct FrameTemplate {
    bytes: Vec<u8>,
    base_port: u16,
    flows: u16,
    /// Ones'-complement sum (unfolded) of the UDP pseudo-header, header and
    /// payload with the source port, checksum, sequence number and timestamp
    /// fields all zero: the per-frame checksum adds only those fields.
    udp_partial_sum: u32,
}

impl FrameTemplate {
    /// Build the template for `flow` carrying `stream`. `max_len` is the
    /// largest frame the backend can hold.
    pub fn new(flow: &FlowSpec, stream: u32, max_len: usize) -> Result<FrameTemplate, SpecError> {
        let len = flow.frame_len;
        if len < MIN_FRAME_LEN {
            return Err(SpecError::FrameTooShort { len });
        }
        let max = max_len.min(MAX_FRAME_LEN);
        if len > max {
            return Err(SpecError::FrameTooLong { len, max });
        }
        if flow.flows == 0 {
            return Err(SpecError::NoFlows);
        }
        let mut b = vec![0u8; len];
        // Ethernet II.
        b[0..6].copy_from_slice(&flow.dst_mac);
        b[6..12].copy_from_slice(&flow.src_mac);
        b[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        // IPv4 (RFC 791): no options, DF set, id 0 (allowed for atomic
        // datagrams, RFC 6864), TTL 64.
        let ip_len = (len - IP_AT) as u16;
        let ip = &mut b[IP_AT..UDP_AT];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = IPPROTO_UDP;
        ip[12..16].copy_from_slice(&flow.src_ip.octets());
        ip[16..20].copy_from_slice(&flow.dst_ip.octets());
        let ip_csum = !fold(sum_words(ip, 0));
        ip[10..12].copy_from_slice(&ip_csum.to_be_bytes());
        // UDP (RFC 768); source port and checksum are stamped per frame.
        let udp_len = (len - UDP_AT) as u16;
        b[UDP_AT + 2..UDP_AT + 4].copy_from_slice(&flow.dst_port.to_be_bytes());
        b[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&udp_len.to_be_bytes());
        // Probe header; sequence number and timestamp are stamped per frame.
        b[PROBE_AT..PROBE_AT + 2].copy_from_slice(&PROBE_MAGIC.to_be_bytes());
        b[PROBE_AT + 2..PROBE_AT + 6].copy_from_slice(&stream.to_be_bytes());

        // Pseudo-header: source, destination, zero + protocol, UDP length.
        let mut sum = sum_words(&b[IP_AT + 12..IP_AT + 20], 0);
        sum += u32::from(IPPROTO_UDP) + u32::from(udp_len);
        let udp_partial_sum = sum_words(&b[UDP_AT..], sum);
        Ok(FrameTemplate {
            bytes: b,
            base_port: flow.src_port,
            flows: flow.flows,
            udp_partial_sum,
        })
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a template holds at least `MIN_FRAME_LEN` bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The template bytes with sequence number and timestamp zero.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Source port used for the frame with sequence number `seq`.
    pub fn src_port(&self, seq: u64) -> u16 {
        self.base_port
            .wrapping_add((seq % u64::from(self.flows)) as u16)
    }

    /// Write the frame for `seq` sent at `tx_ns` into `buf` and return its
    /// length, or `None` when `buf` is too small.
    pub fn write(&self, buf: &mut [u8], seq: u64, tx_ns: u64) -> Option<usize> {
        let len = self.bytes.len();
        let out = buf.get_mut(..len)?;
        out.copy_from_slice(&self.bytes);
        let sport = self.src_port(seq);
        out[SPORT_AT..SPORT_AT + 2].copy_from_slice(&sport.to_be_bytes());
        out[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
        out[TS_AT..TS_AT + 8].copy_from_slice(&tx_ns.to_be_bytes());
        // The stamped fields are 16-bit aligned within the UDP datagram, so
        // their words add straight onto the precomputed sum (RFC 1071).
        let sum = self.udp_partial_sum + u32::from(sport) + sum_u64(seq) + sum_u64(tx_ns);
        let mut csum = !fold(sum);
        if csum == 0 {
            // RFC 768: a computed zero is sent as all ones (zero means "none").
            csum = 0xffff;
        }
        out[UDP_CSUM_AT..UDP_CSUM_AT + 2].copy_from_slice(&csum.to_be_bytes());
        Some(len)
    }
}

/// Read the probe from a received frame: Ethernet II (up to two VLAN tags),
/// IPv4 (options allowed, first fragment only), UDP, magic. Returns `None`
/// for anything else, never panics.
pub fn parse_probe(frame: &[u8]) -> Option<Probe> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    let mut tags = 0;
    while (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) && tags < 2 {
        at += 4;
        ethertype = be16(frame, at)?;
        tags += 1;
    }
    if ethertype != ETH_P_IPV4 {
        return None;
    }
    let ip = at + 2;
    let vihl = *frame.get(ip)?;
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    // A non-first fragment has no UDP header; a first fragment (MF set)
    // still carries the probe at the start of its payload.
    if be16(frame, ip + 6)? & 0x1fff != 0 || *frame.get(ip + 9)? != IPPROTO_UDP {
        return None;
    }
    let total = usize::from(be16(frame, ip + 2)?);
    let udp = ip + ihl;
    let payload = udp + 8;
    if total < ihl + 8 + PROBE_LEN || ip + total > frame.len() {
        return None;
    }
    if be16(frame, payload)? != PROBE_MAGIC {
        return None;
    }
    Some(Probe {
        stream: u32::from_be_bytes(frame.get(payload + 2..payload + 6)?.try_into().ok()?),
        seq: be64(frame, payload + 6)?,
        tx_ns: be64(frame, payload + 14)?,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Add the big-endian 16-bit words of `b` (odd tail padded with zero) to `sum`.
fn sum_words(b: &[u8], mut sum: u32) -> u32 {
    let mut words = b.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn sum_u64(v: u64) -> u32 {
    (v & 0xffff) as u32
        + ((v >> 16) & 0xffff) as u32
        + ((v >> 32) & 0xffff) as u32
        + (v >> 48) as u32
}

/// Fold a 32-bit ones'-complement accumulator to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn flow(len: usize, flows: u16) -> FlowSpec {
        FlowSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 1, 10),
            dst_ip: Ipv4Addr::new(198, 18, 2, 10),
            src_port: 40000,
            dst_port: 9,
            flows,
            frame_len: len,
        }
    }

    /// Checks every header and both checksums with an independent parser.
    fn check_with_etherparse(frame: &[u8], seq: u64, ts: u64, sport: u16) {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let iph = ip.header().to_header();
        assert_eq!(iph.header_checksum, iph.calc_header_checksum());
        assert_eq!(iph.source, [198, 18, 1, 10]);
        assert_eq!(iph.time_to_live, 64);
        assert!(iph.dont_fragment);
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.source_port(), sport);
        assert_eq!(udp.destination_port(), 9);
        assert_eq!(usize::from(udp.length()), frame.len() - UDP_AT);
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&iph, udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), want, "UDP checksum");
        let probe = parse_probe(frame).unwrap();
        assert_eq!(
            probe,
            Probe {
                stream: 7,
                seq,
                tx_ns: ts
            }
        );
    }

    #[test]
    fn template_frames_have_correct_headers_and_checksums() {
        for len in [64, 65, 128, 1514] {
            let t = FrameTemplate::new(&flow(len, 4), 7, 2048).unwrap();
            let mut buf = [0u8; 2048];
            for (seq, ts) in [
                (0, 0),
                (1, 1),
                (u64::MAX, u64::MAX),
                (0x1234_5678_9abc, 42),
                (1 << 40, 0xffff_0000_ffff_0000),
            ] {
                let n = t.write(&mut buf, seq, ts).unwrap();
                assert_eq!(n, len);
                check_with_etherparse(&buf[..n], seq, ts, 40000 + (seq % 4) as u16);
            }
        }
    }

    #[test]
    fn golden_64_byte_frame() {
        let t = FrameTemplate::new(&flow(64, 1), 7, 2048).unwrap();
        let mut buf = [0u8; 64];
        t.write(&mut buf, 1, 2).unwrap();
        let want: [u8; 64] = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
            0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0xab, 0x82, 198, 18, 1, 10, 198, 18, 2,
            10, // IPv4
            0x9c, 0x40, 0, 9, 0, 30, 0x5f, 0x87, // UDP
            0x74, 0x9e, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, // probe
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn spec_errors_name_the_limit() {
        assert_eq!(
            FrameTemplate::new(&flow(60, 1), 0, 2048).unwrap_err(),
            SpecError::FrameTooShort { len: 60 }
        );
        assert_eq!(
            FrameTemplate::new(&flow(1600, 1), 0, 2048).unwrap_err(),
            SpecError::FrameTooLong {
                len: 1600,
                max: 1514
            }
        );
        assert_eq!(
            FrameTemplate::new(&flow(1000, 1), 0, 512).unwrap_err(),
            SpecError::FrameTooLong {
                len: 1000,
                max: 512
            }
        );
        assert_eq!(
            FrameTemplate::new(&flow(64, 0), 0, 2048).unwrap_err(),
            SpecError::NoFlows
        );
        assert!(FrameTemplate::new(&flow(60, 1), 0, 2048)
            .unwrap_err()
            .to_string()
            .contains("64"));
    }

    #[test]
    fn write_refuses_a_short_buffer() {
        let t = FrameTemplate::new(&flow(64, 1), 0, 2048).unwrap();
        assert_eq!(t.write(&mut [0u8; 63], 0, 0), None);
    }

    #[test]
    fn parser_skips_vlan_tags_and_ip_options() {
        let t = FrameTemplate::new(&flow(64, 1), 7, 2048).unwrap();
        let mut f = vec![0u8; 64];
        t.write(&mut f, 9, 10).unwrap();
        // Insert one 802.1Q tag.
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(parse_probe(&tagged).unwrap().seq, 9);
        // Add 4 bytes of IP options (NOPs).
        let mut opt = f[..IP_AT + 20].to_vec();
        opt[IP_AT] = 0x46;
        let tl = u16::from_be_bytes([opt[IP_AT + 2], opt[IP_AT + 3]]) + 4;
        opt[IP_AT + 2..IP_AT + 4].copy_from_slice(&tl.to_be_bytes());
        opt.extend_from_slice(&[1, 1, 1, 1]);
        opt.extend_from_slice(&f[UDP_AT..]);
        assert_eq!(parse_probe(&opt).unwrap().tx_ns, 10);
    }

    #[test]
    fn parser_rejects_other_traffic() {
        let t = FrameTemplate::new(&flow(64, 1), 7, 2048).unwrap();
        let mut f = vec![0u8; 64];
        t.write(&mut f, 1, 1).unwrap();
        let mut bad_magic = f.clone();
        bad_magic[PROBE_AT] ^= 1;
        assert_eq!(parse_probe(&bad_magic), None);
        let mut tcp = f.clone();
        tcp[IP_AT + 9] = 6;
        assert_eq!(parse_probe(&tcp), None);
        let mut frag = f.clone();
        frag[IP_AT + 7] = 1;
        assert_eq!(parse_probe(&frag), None);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_probe(&arp), None);
        // Total length claiming more than the frame holds.
        let mut long = f.clone();
        long[IP_AT + 2..IP_AT + 4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse_probe(&long), None);
    }

    #[test]
    fn parser_never_panics_on_truncations_and_arbitrary_bytes() {
        let t = FrameTemplate::new(&flow(64, 1), 7, 2048).unwrap();
        let mut f = vec![0u8; 64];
        t.write(&mut f, 1, 1).unwrap();
        for n in 0..f.len() {
            assert_eq!(parse_probe(&f[..n]), None, "truncated to {n}");
        }
        // A cheap deterministic byte fuzzer (xorshift), mutating the valid frame.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut g = f.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % 64) as usize;
                g[i] = (x >> 32) as u8;
            }
            let _ = parse_probe(&g[..((x >> 58) as usize + 10).min(g.len())]);
            let _ = parse_probe(&g);
        }
    }
}
