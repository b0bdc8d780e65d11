//! The main job, end to end, in network namespaces built and removed here.
//!
//! * `lab-demo` (default, `pair`): an Active/Standby pair of `tandemd` on
//!   shared outside/inside segments with a failover link and a state link,
//!   stateful with PAT; 200 verified TCP streams and a paced UDP stream from
//!   the client to the server through the VIP; the active unit is killed
//!   with SIGKILL; the standby takes over with the replicated connections;
//!   the outage is the longest gap the receiver saw, and every TCP stream
//!   must complete cleanly.
//! * `lab-demo gateway`: one `tandemd` as the routed gateway, with ICMP, a
//!   TCP transfer (iperf3) and a paced UDP stream through it.
//!
//! Run it through `tests/demo.sh`, which builds the release binaries this
//! program starts (found next to this executable).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use tandem_netns::daemon::{log_dir, wait_for, Daemon};
use tandem_netns::pair::{PairConfig, VMAC_OUTSIDE};
use tandem_netns::streams;
use tandem_netns::topology::{addr, ensure_tool, GatewayLab};
use tandem_netns::{have_privileges, LabError};

fn main() -> ExitCode {
    if !have_privileges("lab-demo") {
        eprintln!("lab-demo: run as root (sudo tests/demo.sh)");
        return ExitCode::from(2);
    }
    let which = std::env::args().nth(1).unwrap_or_else(|| "pair".into());
    let result = match which.as_str() {
        "pair" => pair_demo(),
        "gateway" => demo(),
        other => {
            eprintln!("lab-demo: unknown demo {other:?} (pair | gateway)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bin(name: &str) -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe().map_err(|source| LabError::Io {
        what: "locate lab-demo".into(),
        source,
    })?;
    let p = exe.with_file_name(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(LabError::Command {
            cmd: name.into(),
            stderr: format!("{} not built; run tests/demo.sh", p.display()),
        })
    }
}

fn step(title: &str) {
    println!("\n━━ {title}");
}

fn show(out: std::process::Output) {
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        print!("{err}");
    }
}

fn demo() -> Result<(), LabError> {
    let tandemd = bin("tandemd")?;
    let tandemctl = bin("tandemctl")?;
    let pktgen = bin("pktgen")?;
    ensure_tool("iperf3", "iperf3")?;
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hw-profiles");

    step("lab: client c0 ══ out0 [tandem unit] in0 ══ s0 server  (network namespaces, veth)");
    let lab = GatewayLab::new()?;
    lab.host_checksums_in_software()?;
    println!(
        "client {} ({}), unit outside {} / inside {}, server {} ({})",
        addr::OUTSIDE_CLIENT,
        lab.client.name(),
        addr::OUTSIDE_UNIT,
        addr::INSIDE_UNIT,
        addr::INSIDE_SERVER,
        lab.server.name()
    );

    let dir = log_dir()?;
    let sock = dir.join("demo-gw.sock");
    let config = dir.join("demo-gw.toml");
    let toml = format!(
        "[unit]\nname = \"demo-gw\"\nprofile = \"lab\"\nbackend = \"auto\"\ncontrol_socket = \"{}\"\n\n\
         [[interface]]\nname = \"outside\"\ndevice = \"out0\"\naddress = \"{}/24\"\n\n\
         [[interface]]\nname = \"inside\"\ndevice = \"in0\"\naddress = \"{}/24\"\n",
        sock.display(),
        addr::OUTSIDE_UNIT,
        addr::INSIDE_UNIT
    );
    std::fs::write(&config, &toml).map_err(|source| LabError::Io {
        what: format!("write {}", config.display()),
        source,
    })?;
    step(&format!("tandemd -c {}", config.display()));
    print!("{toml}");
    let mut cmd = lab.unit.cmd(&tandemd.to_string_lossy());
    cmd.arg("-c")
        .arg(&config)
        .arg("--profile-dir")
        .arg(&profiles)
        .env("RUST_LOG", "info");
    let mut gw = Daemon::spawn_cmd("tandemd", cmd)?;
    let ctl = |args: &[&str]| {
        Command::new(&tandemctl)
            .arg("-s")
            .arg(&sock)
            .args(args)
            .output()
    };
    wait_for("tandemd control socket", Duration::from_secs(20), || {
        ctl(&["show", "version"]).is_ok_and(|o| o.status.success())
    })
    .map_err(|e| LabError::Command {
        cmd: "tandemd".into(),
        stderr: format!("{e}\n{}", gw.log_tail(30)),
    })?;
    println!("--- tandemd log ---\n{}", gw.log_tail(30));

    for what in [
        ["show", "version"],
        ["show", "interface"],
        ["show", "route"],
    ] {
        step(&format!("tandemctl {}", what.join(" ")));
        show(ctl(&what).map_err(io("tandemctl"))?);
    }

    step("ICMP: client pings the server through tandem");
    show(lab.client.exec(
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
    )?);

    step("TCP: iperf3 client → server through tandem, 3 s");
    // One-off server; the client retries (bounded) until the server listens.
    let iperf_server = Daemon::spawn(&lab.server, "iperf3-server", "iperf3", &["-s", "-1"])?;
    let server_ip = addr::INSIDE_SERVER.to_string();
    let mut report = None;
    for _ in 0..50 {
        let out = lab
            .client
            .cmd("timeout")
            .args([
                "20",
                "iperf3",
                "-c",
                &server_ip,
                "-t",
                "3",
                "-f",
                "m",
                "--connect-timeout",
                "500",
            ])
            .output();
        if let Ok(o) = out {
            if o.status.success() {
                report = Some(String::from_utf8_lossy(&o.stdout).to_string());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match report {
        Some(text) => {
            for l in text
                .lines()
                .filter(|l| l.contains("sender") || l.contains("receiver"))
            {
                println!("{l}");
            }
        }
        None => println!("iperf3 did not run: {}", iperf_server.log_tail(5)),
    }
    drop(iperf_server);

    step("UDP: pktgen 64-byte frames at 50 kpps for 3 s, client → tandem → server (io_uring on both hosts)");
    let unit_mac = lab.unit.mac("out0")?;
    let mac = unit_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut cmd = lab.server.cmd(&pktgen.to_string_lossy());
    cmd.args([
        "recv",
        "--dev",
        "s0",
        "--backend",
        "io_uring",
        "--duration",
        "8s",
        "--idle-timeout",
        "1s",
    ]);
    let mut sink = Daemon::spawn_cmd("pktgen-recv", cmd)?;
    wait_for("pktgen receiver", Duration::from_secs(10), || {
        sink.log().contains("receiving on")
    })?;
    let sent = lab.client.exec(
        &pktgen.to_string_lossy(),
        &[
            "send",
            "--dev",
            "c0",
            "--backend",
            "io_uring",
            "--dst-mac",
            &mac,
            "--src-ip",
            &addr::OUTSIDE_CLIENT.to_string(),
            "--dst-ip",
            &server_ip,
            "--rate",
            "50000",
            "--duration",
            "3s",
        ],
    )?;
    show(sent);
    let _ = sink.wait_exit(Duration::from_secs(10));
    print!("{}", sink.log());

    for what in [["show", "arp"], ["show", "counters"]] {
        step(&format!("tandemctl {}", what.join(" ")));
        show(ctl(&what).map_err(io("tandemctl"))?);
    }

    step("stop tandemd (SIGTERM) and tear the lab down");
    let status = gw.stop(Duration::from_secs(10))?;
    println!("tandemd exited: {status}");
    let link = lab.unit.ip(&["-d", "link", "show", "out0"])?;
    let attached = String::from_utf8_lossy(&link.stdout).contains("prog/xdp");
    println!(
        "XDP program on out0 after exit: {}",
        if attached {
            "STILL ATTACHED"
        } else {
            "detached"
        }
    );
    drop(lab);
    println!("lab removed");
    Ok(())
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> LabError {
    move |source| LabError::Io {
        what: what.into(),
        source,
    }
}

/// The demo pair's failover key.
const DEMO_KEY: &str = "hex 5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

fn pair_config(name: &str, role: &str, socket: &Path) -> String {
    let mut c = PairConfig::new(name, role);
    c.key = Some(DEMO_KEY.into());
    c.unit_timers_ms = (10, 50);
    // Stateful: the client side is trusted (level 100) and translated by
    // PAT to the inside VIP, so connections survive only if replicated.
    c.security_levels = Some((100, 0));
    c.extra = DEMO_PAT.into();
    c.render(socket)
}

/// Dynamic PAT of the client subnet to the inside VIP.
const DEMO_PAT: &str = "[[nat]]\ntype = \"pat\"\nreal = \"198.18.1.0/24\"\nreal_interface = \"outside\"\nmapped_interface = \"inside\"\nmapped = \"interface\"\n";

/// TCP connections the demo keeps streaming across the failover.
const DEMO_STREAMS: usize = 200;

/// `tandemctl -s SOCK args` (text), or the error text.
fn ctl_text(tandemctl: &Path, sock: &Path, args: &[&str]) -> String {
    match Command::new(tandemctl)
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
    {
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => format!("tandemctl: {e}\n"),
    }
}

/// This host's failover state from `show failover --json`, by text search
/// (the demo has no JSON parser; `"state":"Active"` is unambiguous there).
fn this_state(tandemctl: &Path, sock: &Path) -> String {
    let out = ctl_text(tandemctl, sock, &["show", "failover", "state", "--json"]);
    let all = ctl_text(tandemctl, sock, &["show", "failover", "--json"]);
    let text = if all.contains("this_host") { all } else { out };
    let Some(i) = text.find("\"this_host\"") else {
        return String::new();
    };
    let rest = &text[i..];
    let Some(j) = rest.find("\"state\"") else {
        return String::new();
    };
    rest[j + 7..]
        .trim_start_matches([':', ' ', '"'])
        .split('"')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn start_unit(
    ns: &tandem_netns::Netns,
    tandemd: &Path,
    name: &str,
    role: &str,
    profiles: &Path,
) -> Result<(Daemon, PathBuf), LabError> {
    let dir = log_dir()?;
    let sock = dir.join(format!("demo-{name}.sock"));
    let config = dir.join(format!("demo-{name}.toml"));
    std::fs::write(&config, pair_config(name, role, &sock)).map_err(|source| LabError::Io {
        what: format!("write {}", config.display()),
        source,
    })?;
    let mut cmd = ns.cmd(&tandemd.to_string_lossy());
    cmd.arg("-c")
        .arg(&config)
        .arg("--profile-dir")
        .arg(profiles)
        .env("RUST_LOG", "info");
    Ok((Daemon::spawn_cmd(&format!("tandemd-{name}"), cmd)?, sock))
}

fn pair_demo() -> Result<(), LabError> {
    use tandem_netns::topology::PairLab;
    let tandemd = bin("tandemd")?;
    let tandemctl = bin("tandemctl")?;
    let pktgen = bin("pktgen")?;
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hw-profiles");

    step("lab: client ─ outside segment ─ unit A / unit B ─ inside segment ─ server; A ═ B failover link (fo0) and state link (st0)");
    let lab = PairLab::new()?;
    ensure_tool("ethtool", "ethtool")?;
    lab.client.exec("ethtool", &["-K", "c0", "tx", "off"])?;
    lab.server.exec("ethtool", &["-K", "s0", "tx", "off"])?;
    lab.wait_for_carrier(Duration::from_secs(10))?;

    step("unit A (primary) starts alone and becomes active");
    let (mut a, sock_a) = start_unit(&lab.unit_a, &tandemd, "fwa", "primary", &profiles)?;
    wait_for("A active", Duration::from_secs(20), || {
        this_state(&tandemctl, &sock_a) == "Active"
    })
    .map_err(|e| LabError::Command {
        cmd: "tandemd A".into(),
        stderr: format!("{e}\n{}", a.log_tail(30)),
    })?;
    step("unit B (secondary) joins and becomes standby");
    let (mut b, sock_b) = start_unit(&lab.unit_b, &tandemd, "fwb", "secondary", &profiles)?;
    wait_for("B standby", Duration::from_secs(20), || {
        this_state(&tandemctl, &sock_b) == "Standby Ready"
    })
    .map_err(|e| LabError::Command {
        cmd: "tandemd B".into(),
        stderr: format!("{e}\n{}", b.log_tail(30)),
    })?;
    print!("{}", ctl_text(&tandemctl, &sock_a, &["show", "failover"]));

    step("ICMP: client pings the server through the active unit");
    show(lab.client.exec(
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
    )?);

    step(&format!(
        "TCP: {DEMO_STREAMS} connections through PAT, each streaming a verified byte pattern both ways (tcp-streams)"
    ));
    let listen = std::net::SocketAddr::from((addr::INSIDE_SERVER, 5001));
    let server = {
        let _in = lab.server.enter()?;
        let mut cfg = streams::ServerConfig::new(listen);
        cfg.max_conns = Some(DEMO_STREAMS);
        cfg.deadline = Duration::from_secs(120);
        streams::Server::bind(cfg).map_err(|e| LabError::Command {
            cmd: "tcp-streams server".into(),
            stderr: e.to_string(),
        })?
    };
    let server = std::thread::spawn(move || server.run());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = std::sync::Arc::new(streams::Progress::default());
    let mut ccfg = streams::ClientConfig::new(listen, DEMO_STREAMS, 2000, Duration::from_secs(60));
    ccfg.stop = Some(std::sync::Arc::clone(&stop));
    ccfg.progress = Some(std::sync::Arc::clone(&progress));
    ccfg.deadline = Some(Duration::from_secs(120));
    let client_ns = lab.client.name().to_string();
    let client = std::thread::spawn(move || {
        let _in = tandem_netns::enter_named(&client_ns)
            .map_err(|e| streams::StreamsError::Config(format!("enter {client_ns}: {e}")))?;
        streams::run_client(&ccfg)
    });
    wait_for("TCP streams established", Duration::from_secs(30), || {
        progress
            .established
            .load(std::sync::atomic::Ordering::Relaxed)
            >= DEMO_STREAMS
    })?;
    println!("{DEMO_STREAMS} connections established through unit A");
    wait_for(
        "connections replicated to B",
        Duration::from_secs(30),
        || {
            ctl_text(&tandemctl, &sock_b, &["show", "conn", "count"])
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= DEMO_STREAMS)
        },
    )?;
    println!(
        "unit B (standby) holds them: {}",
        ctl_text(&tandemctl, &sock_b, &["show", "conn", "count"]).trim()
    );

    step("UDP: pktgen 64-byte frames at 20 kpps, client → VIP → server; SIGKILL of the active unit after 2 s");
    let vmac = VMAC_OUTSIDE.0.replace('.', "");
    let vmac = (0..6)
        .map(|i| &vmac[2 * i..2 * i + 2])
        .collect::<Vec<_>>()
        .join(":");
    let mut cmd = lab.server.cmd(&pktgen.to_string_lossy());
    cmd.args([
        "recv",
        "--dev",
        "s0",
        "--backend",
        "io_uring",
        "--duration",
        "20s",
        "--idle-timeout",
        "2s",
    ]);
    let mut sink = Daemon::spawn_cmd("pktgen-recv", cmd)?;
    wait_for("pktgen receiver", Duration::from_secs(10), || {
        sink.log().contains("receiving on")
    })?;
    let mut cmd = lab.client.cmd(&pktgen.to_string_lossy());
    cmd.args([
        "send",
        "--dev",
        "c0",
        "--backend",
        "io_uring",
        "--dst-mac",
        &vmac,
        "--src-ip",
        &addr::OUTSIDE_CLIENT.to_string(),
        "--dst-ip",
        &addr::INSIDE_SERVER.to_string(),
        "--rate",
        "20000",
        "--duration",
        "6s",
    ]);
    let mut source = Daemon::spawn_cmd("pktgen-send", cmd)?;
    std::thread::sleep(Duration::from_secs(2)); // traffic flows through A for 2 s: the demo's script, not synchronisation
    a.signal(libc::SIGKILL)?;
    println!("SIGKILL sent to unit A (pid {})", a.pid());
    wait_for("B active", Duration::from_secs(10), || {
        this_state(&tandemctl, &sock_b) == "Active"
    })?;
    println!("unit B is Active");
    let _ = source.wait_exit(Duration::from_secs(20));
    let _ = sink.wait_exit(Duration::from_secs(20));
    for l in sink
        .log()
        .lines()
        .filter(|l| !l.contains(" INFO ") && !l.contains("backend counters"))
    {
        println!("{l}");
    }

    step("TCP: the connections after the failover");
    let before = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
    wait_for(
        "TCP streams flowing through B",
        Duration::from_secs(20),
        || progress.bytes.load(std::sync::atomic::Ordering::Relaxed) > before + 100_000,
    )?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    match client.join() {
        Ok(Ok(r)) => println!("{}", r.summary()),
        Ok(Err(e)) => println!("tcp-streams client: {e}"),
        Err(_) => println!("tcp-streams client panicked"),
    }
    match server.join() {
        Ok(Ok(r)) => println!("{}", r.summary()),
        Ok(Err(e)) => println!("tcp-streams server: {e}"),
        Err(_) => println!("tcp-streams server panicked"),
    }

    step("unit B: show failover");
    print!("{}", ctl_text(&tandemctl, &sock_b, &["show", "failover"]));
    step("unit B: show failover history");
    print!(
        "{}",
        ctl_text(&tandemctl, &sock_b, &["show", "failover", "history"])
    );
    step("unit B log (state changes)");
    for l in b
        .log()
        .lines()
        .filter(|l| l.contains("tandem_ctrl::ha"))
        .take(12)
    {
        println!("{l}");
    }

    step("stop unit B (SIGTERM) and tear the lab down");
    println!("tandemd B exited: {}", b.stop(Duration::from_secs(10))?);
    drop(lab);
    println!("lab removed");
    Ok(())
}
