//! Lab test: `tandemd` is the routed gateway between a client and a server
//! namespace and forwards real Linux traffic — ICMP, a TCP transfer and a
//! UDP stream — with each packet I/O backend. Fails if forwarding breaks.
//!
//! Needs root (network namespaces, XDP): skips outside CI, fails under CI=true.

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::Unit;
use tandem_netns::topology::{addr, GatewayLab};
use tandem_netns::{have_privileges, LabError};

/// Bytes in the TCP transfer: enough for many windows and retransmit logic.
const TCP_BYTES: usize = 4 << 20;
const UDP_DATAGRAMS: u32 = 2_000;

fn forwards_real_traffic(test: &str, backend: &str, expect_name: &str) {
    if !have_privileges(test) {
        return;
    }
    let lab = GatewayLab::new().expect("lab");
    lab.host_checksums_in_software().expect("veth offloads");
    let mut unit = Unit::start_gateway(&lab, "gw", backend).expect("tandemd starts");

    let version = unit.ctl_json(&["show", "version"]);
    let chosen = version["backend"].as_str().unwrap_or_default().to_string();
    assert!(
        chosen.starts_with(expect_name),
        "{test}: backend {chosen:?}, wanted {expect_name}: {version}\n{}",
        unit.log_tail()
    );

    // ICMP through the gateway (also resolves both neighbours by ARP).
    let ping = lab.client.exec(
        "ping",
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &addr::INSIDE_SERVER.to_string(),
        ],
    );
    assert!(
        ping.is_ok(),
        "{test}: ping through tandemd failed: {ping:?}\n{}",
        unit.log_tail()
    );

    tcp_transfer(&lab).unwrap_or_else(|e| panic!("{test}: TCP: {e}\n{}", unit.log_tail()));

    let got = udp_stream(&lab).expect("udp");
    assert!(
        got >= UDP_DATAGRAMS * 99 / 100,
        "{test}: UDP {got}/{UDP_DATAGRAMS} delivered\n{}",
        unit.log_tail()
    );

    let counters = unit.ctl_json(&["show", "counters"]);
    let rx: u64 = counters["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["counters"]["rx"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert!(
        rx > u64::from(UDP_DATAGRAMS),
        "counters do not show the traffic: {counters}"
    );

    // Clean shutdown detaches the XDP program.
    let status = unit.stop().expect("tandemd stops");
    assert!(
        status.success(),
        "{test}: tandemd exit {status:?}\n{}",
        unit.log_tail()
    );
    let link = lab
        .unit
        .ip(&["-d", "link", "show", "out0"])
        .expect("ip link");
    let text = String::from_utf8_lossy(&link.stdout);
    assert!(
        !text.contains("prog/xdp"),
        "{test}: XDP still attached after exit: {text}"
    );
}

#[test]
fn tandemd_forwards_tcp_udp_icmp_over_afxdp() {
    forwards_real_traffic("tandemd_forwards_tcp_udp_icmp_over_afxdp", "afxdp", "afxdp");
}

#[test]
fn tandemd_forwards_tcp_udp_icmp_over_io_uring() {
    forwards_real_traffic(
        "tandemd_forwards_tcp_udp_icmp_over_io_uring",
        "io_uring",
        "io_uring",
    );
}

#[test]
fn tandemd_auto_backend_prefers_afxdp() {
    forwards_real_traffic("tandemd_auto_backend_prefers_afxdp", "auto", "afxdp");
}

/// A server thread in the server namespace echoes a digest of what it got;
/// a client thread in the client namespace sends a patterned stream.
fn tcp_transfer(lab: &GatewayLab) -> Result<(), String> {
    let listener = {
        let _ns = lab.server.enter().map_err(|e| e.to_string())?;
        TcpListener::bind((addr::INSIDE_SERVER, 5201)).map_err(|e| e.to_string())?
    };
    let server = std::thread::spawn(move || -> std::io::Result<(usize, u64)> {
        listener.set_nonblocking(false)?;
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut buf = vec![0u8; 64 << 10];
        let (mut n, mut digest) = (0usize, 0u64);
        loop {
            let k = s.read(&mut buf)?;
            if k == 0 {
                break;
            }
            for &b in &buf[..k] {
                digest = digest.wrapping_mul(31).wrapping_add(u64::from(b));
            }
            n += k;
        }
        s.write_all(&digest.to_be_bytes())?;
        Ok((n, digest))
    });
    let mut expect = 0u64;
    let data: Vec<u8> = (0..TCP_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    for &b in &data {
        expect = expect.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    let reply = {
        let _ns = lab.client.enter().map_err(|e| e.to_string())?;
        let mut c =
            TcpStream::connect_timeout(&(addr::INSIDE_SERVER, 5201).into(), Duration::from_secs(5))
                .map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        c.set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        c.write_all(&data).map_err(|e| format!("send: {e}"))?;
        c.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut d = [0u8; 8];
        c.read_exact(&mut d).map_err(|e| format!("digest: {e}"))?;
        u64::from_be_bytes(d)
    };
    let (n, digest) = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?
        .map_err(|e| format!("server: {e}"))?;
    if n != TCP_BYTES || digest != expect || reply != expect {
        return Err(format!(
            "server got {n} bytes, digest {digest:x}/{reply:x}, want {TCP_BYTES} / {expect:x}"
        ));
    }
    Ok(())
}

/// Paced UDP datagrams client → server; returns how many arrived.
fn udp_stream(lab: &GatewayLab) -> Result<u32, LabError> {
    let rx = {
        let _ns = lab.server.enter()?;
        UdpSocket::bind((addr::INSIDE_SERVER, 5300)).expect("bind udp")
    };
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    // A receiver thread starved of CPU on this shared machine must not turn
    // into "loss": give its socket room for the whole stream.
    let bytes: libc::c_int = 8 << 20;
    // SAFETY: valid socket fd, option value points to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&rx),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    let receiver = std::thread::spawn(move || {
        let mut seen = vec![false; UDP_DATAGRAMS as usize];
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut got = 0;
        while got < UDP_DATAGRAMS && Instant::now() < deadline {
            if let Ok(n) = rx.recv(&mut buf) {
                if n >= 4 {
                    let seq = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
                    if let Some(s) = seen.get_mut(seq as usize) {
                        if !*s {
                            *s = true;
                            got += 1;
                        }
                    }
                }
            } else if got > 0 {
                // Nothing for 200 ms after traffic started: the stream is over.
                break;
            }
        }
        got
    });
    {
        let _ns = lab.client.enter()?;
        let tx = UdpSocket::bind((addr::OUTSIDE_CLIENT, 0)).expect("bind");
        for seq in 0..UDP_DATAGRAMS {
            let mut p = [0u8; 32];
            p[..4].copy_from_slice(&seq.to_be_bytes());
            let _ = tx.send_to(&p, (addr::INSIDE_SERVER, 5300));
            if seq % 50 == 49 {
                // Pace at roughly 50 datagrams per millisecond burst.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    Ok(receiver.join().expect("receiver"))
}
