//! The `pktgen` binary: opens an AF_XDP or io_uring backend on one interface
//! and sends or receives probe frames; run it inside a namespace with
//! `ip netns exec NS pktgen ...`.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pktgen::{FlowSpec, RecvConfig, SendConfig};
use tandem_io::afxdp::{AfXdpBackend, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::uring::UringBackend;
use tandem_io::{Backend, FrameConfig, OpenError};

/// Traffic generator and sink for tandem: UDP/IPv4 frames carrying a
/// sequence number and a CLOCK_MONOTONIC send timestamp.
///
/// Run sender and receiver on the same host (e.g. in two network
/// namespaces) so that one-way latency is meaningful.
#[derive(Parser, Debug)]
#[command(name = "pktgen", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send probe frames; prints a report (sent, pps) when done.
    Send(SendArgs),
    /// Receive probe frames; prints received, loss, reordering, duplicates,
    /// pps, the longest gap between in-order arrivals and latency percentiles.
    Recv(RecvArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// AF_XDP sockets with tandem's own XDP redirect program (takes over
    /// the interface's receive queue while it runs).
    Afxdp,
    /// Raw frames over AF_PACKET driven through io_uring.
    #[value(name = "io_uring", alias = "io-uring", alias = "uring")]
    IoUring,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Auto,
    Native,
    Generic,
}

#[derive(Args, Debug)]
struct DevArgs {
    /// Interface to use (in the current network namespace).
    #[arg(long, value_name = "IF")]
    dev: String,
    /// Packet I/O backend.
    #[arg(long, value_enum)]
    backend: BackendKind,
    /// Queue of the interface to bind (AF_XDP).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// XDP attach mode (AF_XDP).
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    xdp_mode: ModeArg,
    /// Frame slots in the backend's frame memory.
    #[arg(long, default_value_t = 4096)]
    frames: u32,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SendArgs {
    #[command(flatten)]
    dev: DevArgs,
    /// Source MAC (default: the interface's own).
    #[arg(long, value_parser = parse_mac, value_name = "MAC")]
    src_mac: Option<[u8; 6]>,
    /// Destination MAC: the next hop (the gateway's interface) or the receiver.
    #[arg(long, value_parser = parse_mac, value_name = "MAC")]
    dst_mac: [u8; 6],
    /// Source IPv4 address (the sender's).
    #[arg(long, value_name = "IPV4")]
    src_ip: Ipv4Addr,
    /// Destination IPv4 address (the receiver's).
    #[arg(long, value_name = "IPV4")]
    dst_ip: Ipv4Addr,
    /// First UDP source port (flow i uses src-port + i).
    #[arg(long, default_value_t = 10000)]
    src_port: u16,
    /// UDP destination port (9, discard, by default).
    #[arg(long, default_value_t = 9)]
    dst_port: u16,
    /// Frame length in bytes without FCS (64 to 1514).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Frames to send (default: until --duration ends).
    #[arg(long)]
    count: Option<u64>,
    /// Upper bound on the run, e.g. 10s, 500ms (default: 10s, or 1h with --count).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Frames per second (default: as fast as the backend takes them).
    #[arg(long, value_name = "PPS")]
    rate: Option<u64>,
    /// Number of flows (source ports cycled per frame).
    #[arg(long, default_value_t = 1)]
    flows: u16,
    /// Stream id carried in every probe.
    #[arg(long, default_value_t = 0)]
    stream: u32,
    /// Frames per transmit burst (1 to 256).
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

#[derive(Args, Debug)]
struct RecvArgs {
    #[command(flatten)]
    dev: DevArgs,
    /// Upper bound on the run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Stop after this long without frames once traffic has started.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Count only this stream (default: the first stream seen).
    #[arg(long)]
    stream: Option<u32>,
    /// Frames the sender sends: loss is computed against it and the
    /// receiver stops when all arrived (default: highest sequence number + 1).
    #[arg(long)]
    expected: Option<u64>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(format!(
            "`{s}` is not a MAC address (want six hex bytes like 02:00:00:00:00:01)"
        ));
    }
    for (b, p) in mac.iter_mut().zip(&parts) {
        *b = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| !p.is_empty() && p.len() <= 2)
            .ok_or_else(|| format!("`{s}` is not a MAC address: `{p}` is not a hex byte"))?;
    }
    Ok(mac)
}

/// The interface's MAC from sysfs (as seen in the current namespace).
fn dev_mac(dev: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{dev}/address");
    let s = std::fs::read_to_string(&path).map_err(|e| {
        format!("interface {dev}: cannot read its MAC from {path}: {e}; pass --src-mac")
    })?;
    parse_mac(s.trim()).map_err(|e| format!("interface {dev}: {e}"))
}

/// An opened backend; the XDP attachment (if any) is dropped after the
/// sockets that use it (fields drop in declaration order).
struct Opened {
    backend: Box<dyn Backend>,
    _attachment: Option<XdpAttachment>,
}

fn open(d: &DevArgs) -> Result<Opened, OpenError> {
    let frames = FrameConfig {
        frame_count: d.frames,
        ..FrameConfig::default()
    };
    match d.backend {
        BackendKind::Afxdp => {
            let mode = match d.xdp_mode {
                ModeArg::Auto => XdpMode::Auto,
                ModeArg::Native => XdpMode::Native,
                ModeArg::Generic => XdpMode::Generic,
            };
            let att = XdpAttachment::attach(&d.dev, mode)?;
            let b = AfXdpBackend::open(&[(&att, d.queue)], &frames, ZeroCopy::Auto)?;
            Ok(Opened {
                backend: Box::new(b),
                _attachment: Some(att),
            })
        }
        BackendKind::IoUring => Ok(Opened {
            backend: Box::new(UringBackend::open(&[d.dev.as_str()], &frames, None)?),
            _attachment: None,
        }),
    }
}

/// SIGINT and SIGTERM end the run early; the report is still printed.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    Ok(stop)
}

fn print<T: serde::Serialize + std::fmt::Display>(json: bool, report: &T) -> Result<(), String> {
    if json {
        let s =
            serde_json::to_string(report).map_err(|e| format!("cannot encode the report: {e}"))?;
        println!("{s}");
    } else {
        println!("{report}");
    }
    Ok(())
}

fn run_send(a: &SendArgs) -> Result<(), String> {
    let src_mac = match a.src_mac {
        Some(m) => m,
        None => dev_mac(&a.dev.dev)?,
    };
    let cfg = SendConfig {
        flow: FlowSpec {
            src_mac,
            dst_mac: a.dst_mac,
            src_ip: a.src_ip,
            dst_ip: a.dst_ip,
            src_port: a.src_port,
            dst_port: a.dst_port,
            flows: a.flows,
            frame_len: a.size,
        },
        count: a.count,
        duration: a.duration.unwrap_or(if a.count.is_some() {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(10)
        }),
        rate_pps: a.rate,
        stream: a.stream,
        batch: a.batch,
    };
    let stop = stop_flag()?;
    let mut o = open(&a.dev).map_err(|e| e.to_string())?;
    eprintln!(
        "pktgen: sending on {} with {} ({} bytes, {})",
        a.dev.dev,
        o.backend.name(),
        a.size,
        a.rate
            .map_or("flat out".to_string(), |r| format!("{r} pps"))
    );
    let r = pktgen::send(o.backend.as_mut(), 0, &cfg, &stop)
        .map_err(|e| format!("interface {}: {e}", a.dev.dev))?;
    if !a.dev.json {
        eprintln!("pktgen: backend counters {:?}", o.backend.stats());
    }
    print(a.dev.json, &r)
}

fn run_recv(a: &RecvArgs) -> Result<(), String> {
    let cfg = RecvConfig {
        duration: a.duration,
        idle_timeout: a.idle_timeout,
        stream: a.stream,
        expected: a.expected,
    };
    let stop = stop_flag()?;
    let mut o = open(&a.dev).map_err(|e| e.to_string())?;
    // Tests wait for this line before they start the sender.
    eprintln!(
        "pktgen: receiving on {} with {}",
        a.dev.dev,
        o.backend.name()
    );
    let r = pktgen::receive(o.backend.as_mut(), 0, &cfg, &stop);
    if !a.dev.json {
        eprintln!("pktgen: backend counters {:?}", o.backend.stats());
    }
    print(a.dev.json, &r)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Backends log what they chose (native or generic XDP, copy or
    // zero-copy) through tracing; show it on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let res = match &cli.cmd {
        Cmd::Send(a) => run_send(a),
        Cmd::Recv(a) => run_recv(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn mac_parsing_accepts_colons_and_dashes_and_explains_errors() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert_eq!(
            parse_mac("02-00-0A-FF-00-01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert!(parse_mac("02:00:0a").unwrap_err().contains("six hex bytes"));
        assert!(parse_mac("02:00:0a:ff:00:zz").unwrap_err().contains("`zz`"));
        assert!(parse_mac("02:00:0a:ff:00:123").is_err());
        assert!(parse_mac("02:00:0a:ff::01").is_err());
    }

    #[test]
    fn missing_and_invalid_arguments_are_errors_not_panics() {
        let e = Cli::try_parse_from(["pktgen", "send", "--dev", "c0", "--backend", "io_uring"])
            .unwrap_err();
        assert!(e.to_string().contains("--dst-mac"), "{e}");
        let e = Cli::try_parse_from(["pktgen", "recv", "--dev", "s0", "--backend", "dpdk"])
            .unwrap_err();
        assert!(e.to_string().contains("dpdk"), "{e}");
        let e = Cli::try_parse_from([
            "pktgen",
            "recv",
            "--dev",
            "s0",
            "--backend",
            "afxdp",
            "--duration",
            "ten",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("ten"), "{e}");
        let ok = Cli::try_parse_from([
            "pktgen",
            "send",
            "--dev",
            "c0",
            "--backend",
            "io-uring",
            "--dst-mac",
            "02:00:00:00:00:02",
            "--src-ip",
            "198.18.1.10",
            "--dst-ip",
            "198.18.2.10",
            "--duration",
            "250ms",
            "--rate",
            "50000",
        ])
        .unwrap();
        let Cmd::Send(a) = ok.cmd else {
            panic!("not send")
        };
        assert_eq!(a.dev.backend, BackendKind::IoUring);
        assert_eq!(a.duration, Some(Duration::from_millis(250)));
        assert_eq!(a.size, 64);
    }
}
