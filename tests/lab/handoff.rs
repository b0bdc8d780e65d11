//! Lab test: worker handoff (issue 4, `dataplane/docs/stateful.md`
//! "Steering") with a real stateful data plane running two workers.
//!
//! client ─ c0 ══ out0 ─ unit ─ in0 ══ s0 ─ server, every veth with two
//! queues. The unit runs tandemd's data plane with two workers (worker i
//! serves queue i of both interfaces) over real AF_XDP sockets (copy mode on
//! veth) or io_uring/AF_PACKET with PACKET_FANOUT. veth picks the receive
//! queue from the sender's transmit queue, which Linux chooses per socket (a
//! random flow hash), and PACKET_FANOUT hashes the wire tuple: both
//! unrelated to the unit's `steer`, and PAT changes the tuple between the
//! two directions anyway. So connections arrive on one worker in one
//! direction and on the other in the other. 200 TCP connections from the
//! client are PAT'ed to the inside address and stream a verified pattern
//! both ways (`tandem_netns::streams`); all must complete cleanly, and the
//! handoff counters must show frames crossing between the workers both ways.
//!
//! Why not a `tandemd` process: two workers need two worker cores plus a
//! management core that is none of them, and this machine (and CI) has 2
//! cores, so tandemd refuses any two-worker profile here ("wants management
//! core 2 but this machine has cores 0..=1"). The test therefore loads the
//! config and a two-worker variant of the lab profile with tandemd's own
//! loader, builds the data-plane config with `daemon::dataplane_config`,
//! opens one backend per worker the way tandemd does, and starts
//! `tandem_dataplane::Dataplane` itself; the workers are pinned to cores 0
//! and 1. Only the management thread (failover, control socket) is left out.
//!
//! Needs root (network namespaces, XDP): skips outside CI, fails under CI=true.

#[path = "common/mod.rs"]
mod common;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::profile_dir;
use tandem_ctrl::daemon::{dataplane_config, frame_config};
use tandem_ctrl::profile::ProfileSearch;
use tandem_dataplane::{Dataplane, WorkerSpec};
use tandem_io::afxdp::{AfXdpBackend, FlowMap, XdpAttachment, XdpMode, ZeroCopy};
use tandem_io::uring::UringBackend;
use tandem_io::Backend;
use tandem_netns::daemon::{log_dir, wait_until};
use tandem_netns::streams::{run_client, ClientConfig, Server, ServerConfig};
use tandem_netns::topology::addr;
use tandem_netns::{have_privileges, veth_with_queues, Netns};

const TCP_PORT: u16 = 5001;
const CONNS: usize = 200;

fn host(ns: &Netns, dev: &str, a: std::net::Ipv4Addr, gw: std::net::Ipv4Addr) {
    ns.ip(&["addr", "add", &addr::cidr(a), "dev", dev])
        .expect("address");
    ns.ip(&["route", "add", "default", "via", &gw.to_string()])
        .expect("route");
    // Complete L4 checksums on what tandem sees (PLATFORM.md).
    ns.exec("ethtool", &["-K", dev, "tx", "off"])
        .expect("ethtool");
}

/// The lab profile with two workers and two queues per interface.
/// The profile file is per test (`tag`): the two backends' tests run in
/// parallel, and one rewriting a shared file while the other loaded it
/// gave a truncated profile ("missing field `profile`").
fn two_worker_profile(dir: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let lab = std::fs::read_to_string(profile_dir().join("lab.toml")).expect("lab profile");
    let mut text = String::new();
    for line in lab.lines() {
        let line = match line.trim() {
            "name = \"lab\"" => "name = \"lab-2w\"",
            "management = 0" => "management = 2",
            "workers = [1]" => "workers = [0, 1]",
            "queues = 1" => "queues = 2",
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    for want in ["workers = [0, 1]", "queues = 2", "management = 2"] {
        assert!(text.contains(want), "lab.toml changed: {want} not set");
    }
    let path = dir.join(format!("lab-2w-{}-{tag}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write profile");
    path
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    AfXdp,
    /// AF_XDP with flow offload: one flow table for both workers.
    AfXdpOffload,
    IoUring,
}

#[test]
fn pat_connections_through_two_afxdp_workers_with_handoff() {
    if !have_privileges("pat_connections_through_two_afxdp_workers_with_handoff") {
        return;
    }
    run(Kind::AfXdp);
}

/// Flow offload with two workers: each worker installs the connections its
/// shard owns into the one shared table, whichever worker's queue their
/// packets then arrive on, and the XDP program forwards them; handshakes,
/// first packets and fragments still cross between the workers.
#[test]
fn offloaded_pat_connections_through_two_afxdp_workers() {
    if !have_privileges("offloaded_pat_connections_through_two_afxdp_workers") {
        return;
    }
    run(Kind::AfXdpOffload);
}

#[test]
fn pat_connections_through_two_io_uring_workers_with_handoff() {
    if !have_privileges("pat_connections_through_two_io_uring_workers_with_handoff") {
        return;
    }
    run(Kind::IoUring);
}

/// Fragmented echo requests (and their fragmented replies) through PAT.
const PINGS: usize = 6;
/// Fragmented UDP datagrams echoed by the server through PAT.
const UDP_DATAGRAMS: usize = 6;
const UDP_PORT: u16 = 5002;
/// Bytes of each ping and UDP payload: three fragments at the veths' 1500-byte MTU.
const BIG: usize = 3200;

/// A UDP socket bound to `at` in `ns`, its reads bounded at 3 s.
fn udp_socket(ns: &Netns, at: SocketAddrV4) -> std::net::UdpSocket {
    let _in = ns.enter().expect("enter namespace");
    let s = std::net::UdpSocket::bind(at).expect("udp bind");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

/// Datagrams larger than the MTU, fragmented by the sender's kernel, through the two workers and
/// PAT both ways (`tandem_state::frag`; `Handoff::owner` sends later fragments, which carry no
/// ports, to the worker their first went to): every ping is answered, every UDP datagram comes
/// back whole and unchanged. Before, later fragments were dropped: no reply at all.
fn fragmented_datagrams_cross_both_ways(client: &Netns, server_ns: &Netns) {
    let server = addr::INSIDE_SERVER.to_string();
    let out = client
        .exec(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &PINGS.to_string(),
                "-i",
                "0.2",
                "-W",
                "3",
                "-s",
                &BIG.to_string(),
                &server,
            ],
        )
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{PINGS} packets transmitted, {PINGS} received")),
        "fragmented pings through PAT and two workers:\n{text}"
    );

    let srv = udp_socket(server_ns, SocketAddrV4::new(addr::INSIDE_SERVER, UDP_PORT));
    std::thread::scope(|s| {
        let echo = s.spawn(|| {
            let mut buf = vec![0u8; 65_536];
            // Bounded: one echo per datagram, each wait at most 3 s.
            for _ in 0..UDP_DATAGRAMS {
                let Ok((n, from)) = srv.recv_from(&mut buf) else {
                    break;
                };
                srv.send_to(&buf[..n], from).expect("echo");
            }
        });
        let mut buf = vec![0u8; 65_536];
        let mut back = 0;
        for i in 0..UDP_DATAGRAMS {
            // A socket (a source port, a flow) each: a flow steers to either worker.
            let cli = udp_socket(client, SocketAddrV4::new(addr::OUTSIDE_CLIENT, 0));
            let sent: Vec<u8> = (0..BIG).map(|b| (b * 31 + i * 7) as u8).collect();
            cli.send_to(&sent, (addr::INSIDE_SERVER, UDP_PORT))
                .expect("send");
            match cli.recv_from(&mut buf) {
                Ok((n, _)) => {
                    assert_eq!(&buf[..n], &sent[..], "datagram {i} came back changed");
                    back += 1;
                }
                Err(e) => panic!("fragmented UDP datagram {i} got no echo through PAT: {e}"),
            }
        }
        echo.join().expect("echo thread");
        assert_eq!(back, UDP_DATAGRAMS);
    });
}

/// IPv4 fragments of `payload` sent as UDP from `src:sport` to `dst:dport`, `size` payload
/// bytes a fragment (a multiple of 8), each an IPv4 datagram with its header checksum; the UDP
/// checksum covers the whole datagram.
fn udp_fragments(
    src: std::net::Ipv4Addr,
    sport: u16,
    dst: std::net::Ipv4Addr,
    dport: u16,
    id: u16,
    payload: &[u8],
    size: usize,
) -> Vec<Vec<u8>> {
    fn fold(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
    fn add(sum: &mut u32, bytes: &[u8]) {
        for c in bytes.chunks(2) {
            *sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    let ulen = (8 + payload.len()) as u16;
    let mut udp = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &ulen.to_be_bytes(),
        &[0, 0],
    ]
    .concat();
    udp.extend_from_slice(payload);
    let mut sum = 17 + u32::from(ulen);
    add(&mut sum, &src.octets());
    add(&mut sum, &dst.octets());
    add(&mut sum, &udp);
    let c = fold(sum);
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    udp.chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * size < udp.len();
            let word = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
            let mut h = [
                &[0x45, 0][..],
                &((20 + chunk.len()) as u16).to_be_bytes(),
                &id.to_be_bytes(),
                &word.to_be_bytes(),
                &[64, 17, 0, 0],
                &src.octets(),
                &dst.octets(),
            ]
            .concat();
            let mut hs = 0;
            add(&mut hs, &h);
            h[10..12].copy_from_slice(&fold(hs).to_be_bytes());
            [&h[..], chunk].concat()
        })
        .collect()
}

/// A UDP datagram whose fragments reach the unit in reverse order (reordered on the way, sent
/// raw from the client): the later ones are held by the worker that receives them and pass
/// right behind their first (`dataplane/src/fraghold.rs`), through PAT; the server gets the
/// datagram whole and its echo comes back. Before, the early fragments were dropped.
fn reordered_fragments_cross(client: &Netns, unit_ns: &Netns, server_ns: &Netns) {
    let link = unit_ns.ip(&["link", "show", "out0"]).expect("ip link");
    let link = String::from_utf8_lossy(&link.stdout);
    let mac: Vec<u8> = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("out0's MAC")
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    let mac: [u8; 6] = mac.try_into().expect("6 bytes");
    let dport = UDP_PORT + 1;
    let srv = udp_socket(server_ns, SocketAddrV4::new(addr::INSIDE_SERVER, dport));
    let cli = udp_socket(client, SocketAddrV4::new(addr::OUTSIDE_CLIENT, 0));
    let sport = cli.local_addr().expect("bound").port();
    let raw = {
        let _in = client.enter().expect("enter namespace");
        tandem_io::l2sock::L2Socket::open("c0", 0x0800).expect("raw socket on c0")
    };
    for i in 0..UDP_DATAGRAMS {
        let sent: Vec<u8> = (0..BIG).map(|b| (b * 13 + i * 5) as u8).collect();
        let frags = udp_fragments(
            addr::OUTSIDE_CLIENT,
            sport,
            addr::INSIDE_SERVER,
            dport,
            0x5100 + i as u16,
            &sent,
            1480,
        );
        assert_eq!(frags.len(), 3);
        for f in frags.iter().rev() {
            raw.send(mac, f).expect("send a fragment");
        }
        let mut buf = vec![0u8; 65_536];
        let (n, from) = srv
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("reordered datagram {i} did not reach the server: {e}"));
        assert_eq!(
            &buf[..n],
            &sent[..],
            "reordered datagram {i} arrived changed"
        );
        srv.send_to(&buf[..n], from).expect("echo");
        let (n, _) = cli
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("the echo of reordered datagram {i} did not return: {e}"));
        assert_eq!(&buf[..n], &sent[..], "echo of reordered datagram {i}");
    }
}

fn run(backend: Kind) {
    tandem_netns::ensure_tool("ethtool", "ethtool").expect("ethtool");
    let client = Netns::new("client").expect("ns");
    let unit_ns = Netns::new("unit").expect("ns");
    let server_ns = Netns::new("server").expect("ns");
    veth_with_queues(&client, "c0", &unit_ns, "out0", 2).expect("veth with 2 queues");
    veth_with_queues(&unit_ns, "in0", &server_ns, "s0", 2).expect("veth with 2 queues");
    host(&client, "c0", addr::OUTSIDE_CLIENT, addr::OUTSIDE_UNIT);
    host(&server_ns, "s0", addr::INSIDE_SERVER, addr::INSIDE_UNIT);
    let offload = matches!(backend, Kind::AfXdpOffload);
    if offload {
        // The fast path redirects into the unit's veths, whose peers take
        // a redirected frame only with NAPI (GRO on; PLATFORM.md).
        client
            .exec("ethtool", &["-K", "c0", "gro", "on"])
            .expect("gro");
        server_ns
            .exec("ethtool", &["-K", "s0", "gro", "on"])
            .expect("gro");
    }

    let dir = log_dir().expect("log dir");
    let profile = two_worker_profile(dir, &format!("{backend:?}"));
    let config = dir.join(format!("{}-fw2.toml", unit_ns.name()));
    let toml = format!(
        r#"[unit]
name = "fw2"
profile = "{profile}"
control_socket = "{socket}"

[[interface]]
name = "outside"
device = "out0"
address = "{out}/24"
security_level = 100

[[interface]]
name = "inside"
device = "in0"
address = "{ins}/24"
security_level = 0

[[nat]]
type = "pat"
real = "198.18.1.0/24"
real_interface = "outside"
mapped_interface = "inside"
mapped = "interface"
{offload}"#,
        offload = if offload {
            "\n[offload]\nenable = true\n"
        } else {
            ""
        },
        profile = profile.display(),
        socket = dir.join("fw2.sock").display(),
        out = addr::OUTSIDE_UNIT,
        ins = addr::INSIDE_UNIT,
    );
    std::fs::write(&config, toml).expect("write config");
    let loaded = tandem_ctrl::config::load(&config, &ProfileSearch::default()).expect("config");
    let (cfg, p) = (&loaded.config, &loaded.profile);
    assert_eq!(p.cores.workers, vec![0, 1]);
    let macs: Vec<[u8; 6]> = ["out0", "in0"]
        .iter()
        .map(|d| unit_ns.mac(d).expect("mac"))
        .collect();
    let dcfg = dataplane_config(cfg, p, &macs);
    assert!(dcfg.state.is_some(), "the stateful stage is on");
    assert_eq!(cfg.offload.is_some(), offload);
    let frames = frame_config(p);
    // Opened inside the unit's namespace, as tandemd would be started there.
    let (backends, _attachments): (Vec<Box<dyn Backend>>, Vec<XdpAttachment>) = {
        let _in = unit_ns.enter().expect("enter unit ns");
        match backend {
            Kind::AfXdp | Kind::AfXdpOffload => {
                // As tandemd's open_afxdp does: one table for every device and worker.
                let flows = cfg
                    .offload
                    .map(|o| FlowMap::create(o.flows).expect("flow table"));
                let att: Vec<XdpAttachment> = ["out0", "in0"]
                    .iter()
                    .map(|d| {
                        XdpAttachment::attach_with_offload(d, XdpMode::Auto, flows.as_ref())
                            .expect("attach XDP")
                    })
                    .collect();
                let ifindexes: Vec<u32> = att.iter().map(|a| a.ifindex()).collect();
                let b = (0..2u32)
                    .map(|q| {
                        let ports: Vec<(&XdpAttachment, u32)> =
                            att.iter().map(|a| (a, q)).collect();
                        let mut b = AfXdpBackend::open(&ports, &frames, ZeroCopy::Auto)
                            .expect("AF_XDP socket per queue");
                        if let Some(f) = &flows {
                            b.set_flow_offload(f.table(ifindexes.clone()));
                        }
                        Box::new(b) as Box<dyn Backend>
                    })
                    .collect();
                (b, att)
            }
            Kind::IoUring => {
                let group = (std::process::id() & 0xffff) as u16;
                let b = (0..2)
                    .map(|_| {
                        Box::new(
                            UringBackend::open(&["out0", "in0"], &frames, Some(group))
                                .expect("io_uring backend"),
                        ) as Box<dyn Backend>
                    })
                    .collect();
                (b, Vec::new())
            }
        }
    };
    let specs = backends
        .into_iter()
        .zip(&p.cores.workers)
        .map(|(backend, &core)| WorkerSpec {
            core: Some(core),
            backend,
        })
        .collect();
    let dp = Dataplane::start(dcfg, specs).expect("data plane starts");
    assert_eq!(dp.counters().len(), 2, "two workers");

    let listen = SocketAddr::V4(SocketAddrV4::new(addr::INSIDE_SERVER, TCP_PORT));
    let server_stop = Arc::new(AtomicBool::new(false));
    let server = {
        let _in = server_ns.enter().expect("enter server ns");
        let mut cfg = ServerConfig::new(listen);
        cfg.max_conns = Some(CONNS);
        cfg.stop = Some(Arc::clone(&server_stop));
        cfg.deadline = Duration::from_secs(180);
        Server::bind(cfg).expect("server binds")
    };
    let (report, sreport) = std::thread::scope(|s| {
        let server = s.spawn(move || server.run().expect("streams server"));
        let client = s.spawn(|| {
            let _in = client.enter().expect("enter client ns");
            // 3 s of 1 kB/s per connection, written every 200 ms (about
            // 2 kpps in all: light for a debug tandemd on 2 shared cores).
            let mut cfg = ClientConfig::new(listen, CONNS, 1000, Duration::from_secs(3));
            cfg.write_interval = Duration::from_millis(200);
            cfg.connect_rate = 400;
            cfg.connect_timeout = Duration::from_secs(15);
            cfg.drain_timeout = Duration::from_secs(30);
            cfg.deadline = Some(Duration::from_secs(120));
            run_client(&cfg).expect("streams client")
        });
        let report = client.join().expect("client thread");
        // The server exits once it has seen all CONNS end; bounded in case
        // some never arrived.
        let _ = wait_until(Instant::now() + Duration::from_secs(30), || {
            server.is_finished()
        });
        server_stop.store(true, Ordering::Relaxed);
        let sreport = server.join().expect("server thread");
        (report, sreport)
    });
    let workers = dp.counters();
    for w in &workers {
        println!(
            "{backend:?} worker {}: rx {} handoff_out {} handoff_in {} handoff_arp_out {} drop_handoff_full {} forwarded {} conn_created {} drop_tcp_no_conn {}",
            w.worker,
            w.rx,
            w.handoff_out,
            w.handoff_in,
            w.handoff_arp_out,
            w.drop_handoff_full,
            w.forwarded,
            w.conn_created,
            w.drop_tcp_no_conn,
        );
    }
    println!("{}", report.summary());
    println!("{}", sreport.summary());
    let ctx = || format!("{workers:#?}");
    assert_eq!(
        report.completed_clean,
        CONNS,
        "not every connection completed cleanly: {}\n{}",
        report.summary(),
        ctx()
    );
    assert_eq!(report.reset, 0, "{}", report.summary());
    assert!(report.ok, "{}", report.summary());
    assert_eq!(sreport.accepted, CONNS, "{}", sreport.summary());
    assert!(sreport.ok, "{}", sreport.summary());
    assert_eq!(report.bytes_sent, sreport.bytes_verified);
    // Both workers received traffic, and frames crossed both ways: the
    // two directions of connections did arrive on different workers.
    for w in &workers {
        assert!(w.rx > 0, "worker {} received nothing", w.worker);
        assert!(
            w.handoff_out > 0 && w.handoff_in > 0,
            "worker {} handed nothing over: {}",
            w.worker,
            ctx()
        );
    }
    let created: u64 = workers.iter().map(|w| w.conn_created).sum();
    assert!(created >= CONNS as u64, "connections created: {created}");
    if offload {
        // Both directions of every connection, by the worker owning it;
        // and the workers saw only part of the streams' frames.
        let installed: u64 = workers.iter().map(|w| w.offload_installed).sum();
        assert!(
            installed >= 2 * CONNS as u64,
            "offloaded directions: {}",
            ctx()
        );
        for w in &workers {
            assert!(
                w.offload_installed > 0,
                "worker {} offloaded nothing: {}",
                w.worker,
                ctx()
            );
            assert_eq!(w.offload_errors, 0, "{}", ctx());
        }
    }

    fragmented_datagrams_cross_both_ways(&client, &server_ns);
    reordered_fragments_cross(&client, &unit_ns, &server_ns);
    // ICMP: 2 later fragments of each request and of each reply; UDP: 2 of each datagram and
    // of each echo, and of each reordered datagram and its echo. The workers publish their
    // counters after each batch: wait for the last.
    let want = 2 * 2 * (PINGS + 2 * UDP_DATAGRAMS) as u64;
    let passed = || -> u64 { dp.counters().iter().map(|w| w.fragments_passed).sum() };
    let _ = wait_until(Instant::now() + Duration::from_secs(5), || passed() >= want);
    assert!(
        passed() >= want,
        "later fragments passed: {} of {want}\n{:#?}",
        passed(),
        dp.counters()
    );
    // Each reordered datagram's two later fragments came ahead of their first.
    let held: u64 = dp.counters().iter().map(|w| w.fragments_held).sum();
    assert!(
        held >= 2 * UDP_DATAGRAMS as u64,
        "later fragments held: {held}\n{:#?}",
        dp.counters()
    );
    drop(dp);
    let _ = std::fs::remove_file(&profile);
}
