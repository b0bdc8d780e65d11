//! The main job of this milestone, end to end: build the lab (client —
//! tandem unit — server in network namespaces), run `tandemd` as the
//! gateway, pass real traffic through it (ICMP, a TCP transfer with iperf3,
//! a paced 64-byte UDP stream with pktgen), print what tandem reports, and
//! tear everything down. Run it through `tests/demo.sh`, which builds the
//! release binaries this program starts (found next to this executable).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use tandem_netns::daemon::{log_dir, wait_for, Daemon};
use tandem_netns::topology::{addr, ensure_tool, GatewayLab};
use tandem_netns::{have_privileges, LabError};

fn main() -> ExitCode {
    if !have_privileges("lab-demo") {
        eprintln!("lab-demo: run as root (sudo tests/demo.sh)");
        return ExitCode::from(2);
    }
    match demo() {
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
