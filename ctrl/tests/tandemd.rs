//! tandemd as a process: exit codes for --check and bad configs (no
//! privileges needed), and a privileged smoke test per backend on a
//! client — unit — server veth topology: tandemd starts, routes ping
//! through, answers every tandemctl command, and on SIGTERM exits 0 with
//! its socket removed and its XDP program detached.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_ctrl::testutil::TempDir;
use tandem_netns::{have_privileges, veth, Netns};

fn profile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles")
}

fn tandemd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tandemd"));
    c.arg("--profile-dir").arg(profile_dir());
    c
}

fn config(socket: &Path, backend: &str, out_dev: &str, in_dev: &str) -> String {
    format!(
        r#"
[unit]
name = "gwtest"
profile = "lab"
backend = "{backend}"
control_socket = "{}"

[[interface]]
name = "outside"
device = "{out_dev}"
address = "198.18.1.1/24"

[[interface]]
name = "inside"
device = "{in_dev}"
address = "198.18.2.1/24"

[[route]]
destination = "198.19.0.0/16"
gateway = "198.18.2.2"

[arp]
gratuitous_count = 1
"#,
        socket.display()
    )
}

#[test]
fn check_prints_config_ok() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/unit.toml");
    let out = tandemd()
        .arg("-c")
        .arg(&example)
        .arg("--check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("config OK: unit gw1 with 2 interfaces"),
        "{stdout}"
    );
}

#[test]
fn check_prints_the_failover_setup() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/failover-primary.toml");
    let out = tandemd()
        .arg("-c")
        .arg(&example)
        .arg("--check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "failover: Primary unit, failover link fo0, state link st0, encrypted with the failover key"
        ),
        "{stdout}"
    );
}

#[test]
fn missing_failover_link_device_exits_2_naming_the_key() {
    let dir = TempDir::new("nofo");
    let path = dir.path().join("gw.toml");
    let sock = dir.path().join("s.sock");
    // The failover link is checked before the data devices (which do not
    // exist either).
    let text = config(&sock, "auto", "tdnodev0", "tdnodev1")
        + "\n[failover]\nrole = \"primary\"\nlink_device = \"tdnofo0\"\n";
    std::fs::write(&path, text).unwrap();
    let out = tandemd().arg("-c").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"failover.link_device: device "tdnofo0" does not exist"#),
        "{stderr}"
    );
    assert!(!sock.exists());
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = TempDir::new("badcfg");
    let path = dir.path().join("gw.toml");
    let text = config(&dir.path().join("s.sock"), "auto", "out0", "in0")
        .replace("198.18.2.1/24", "198.18.2.1/33");
    std::fs::write(&path, text).unwrap();
    let out = tandemd().arg("-c").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            r#"interface[1] "inside": address "198.18.2.1/33": prefix length must be 0..=32"#
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("s.sock").exists(), "nothing started");
}

#[test]
fn missing_device_exits_2_before_touching_anything() {
    let dir = TempDir::new("nodev");
    let path = dir.path().join("gw.toml");
    let sock = dir.path().join("s.sock");
    std::fs::write(&path, config(&sock, "auto", "tdnodev0", "tdnodev1")).unwrap();
    let out = tandemd().arg("-c").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"interface[0] "outside": device "tdnodev0" does not exist"#),
        "{stderr}"
    );
    assert!(!sock.exists());
}

/// A tandemd child, killed (SIGKILL, by pid) on drop if still running.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until tandemd answers on `sock`; panics with its log
    /// if it exits or does not answer within 20 s.
    fn wait_ready(&mut self, sock: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while tandemctl(sock, &["show", "version"]).0 != 0 {
            if let Some(code) = self.wait_exit(Duration::from_millis(100)) {
                panic!("tandemd exited {code:?} during start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tandemd not ready:\n{}",
                self.log()
            );
        }
    }

    /// Poll until the process exits or `timeout` passes.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tandemctl(sock: &Path, words: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("-s")
        .arg(sock)
        .args(words)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `tandemd -c cfg` in `unit`, run through `wrapper` (a command and its
/// arguments that exec it; none: directly), its log to `log`.
fn spawn_tandemd(
    unit: &Netns,
    wrapper: &[&str],
    cfg: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    let tandemd = env!("CARGO_BIN_EXE_tandemd");
    let mut cmd = match wrapper.split_first() {
        Some((w, args)) => {
            let mut c = unit.cmd(w);
            c.args(args).arg(tandemd);
            c
        }
        None => unit.cmd(tandemd),
    };
    cmd.arg("-c")
        .arg(cfg)
        .arg("--profile-dir")
        .arg(profile_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Client, unit and server namespaces: client c0 ↔ unit out0, unit in0 ↔
/// server s0.
fn gateway_namespaces() -> (Netns, Netns, Netns) {
    let client = Netns::new("c").unwrap();
    let unit = Netns::new("u").unwrap();
    let server = Netns::new("s").unwrap();
    veth(&client, "c0", &unit, "out0").unwrap();
    veth(&unit, "in0", &server, "s0").unwrap();
    (client, unit, server)
}

fn smoke(test: &str, backend: &str, unit_extra: &str, want_backend: &str) {
    if !have_privileges(test) {
        return;
    }
    let (client, unit, server) = gateway_namespaces();
    client
        .ip(&["addr", "add", "198.18.1.2/24", "dev", "c0"])
        .unwrap();
    client
        .ip(&["route", "add", "default", "via", "198.18.1.1"])
        .unwrap();
    server
        .ip(&["addr", "add", "198.18.2.2/24", "dev", "s0"])
        .unwrap();
    server
        .ip(&["route", "add", "default", "via", "198.18.2.1"])
        .unwrap();

    let dir = TempDir::new(test);
    let sock = dir.path().join("gwtest.sock");
    let cfg = dir.path().join("gwtest.toml");
    let text = config(&sock, backend, "out0", "in0").replacen(
        "profile = \"lab\"",
        &format!("profile = \"lab\"\n{unit_extra}"),
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("tandemd.log");
    // `ip netns exec` execs tandemd, so the child's pid is tandemd's.
    let child = spawn_tandemd(&unit, &[], &cfg, &log);
    let mut d = Daemon { child, log };

    d.wait_ready(&sock);

    let ping = client
        .cmd("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", "198.18.2.2"])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping through tandemd ({backend}) failed:\n{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        d.log()
    );

    let (code, out, err) = tandemctl(&sock, &["show", "version"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Unit gwtest up"), "{out}");
    assert!(
        out.contains(&format!("Packet I/O: {want_backend}")),
        "{out}"
    );

    // The kernel publishes operstate asynchronously (linkwatch), so a
    // moment after the lab came up it may still read "down": poll, bounded.
    let mut out = String::new();
    for _ in 0..50 {
        let (code, text, _) = tandemctl(&sock, &["show", "interface"]);
        assert_eq!(code, 0);
        out = text;
        if out.contains(r#"Interface out0 "outside", is up, line protocol is up"#) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        out.contains(r#"Interface out0 "outside", is up, line protocol is up"#),
        "{out}"
    );
    assert!(
        out.contains("IP address 198.18.2.1, subnet mask 255.255.255.0"),
        "{out}"
    );

    let (code, out, _) = tandemctl(&sock, &["show", "route"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("C        198.18.1.0 255.255.255.0 is directly connected, outside"),
        "{out}"
    );
    assert!(
        out.contains("S        198.19.0.0 255.255.0.0 via 198.18.2.2, inside"),
        "{out}"
    );

    let (code, out, _) = tandemctl(&sock, &["show", "arp", "--json"]);
    assert_eq!(code, 0);
    let arp: serde_json::Value = serde_json::from_str(&out).unwrap();
    let learned: Vec<&str> = arp
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] != "incomplete")
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert!(
        learned.contains(&"198.18.1.2") && learned.contains(&"198.18.2.2"),
        "{out}"
    );

    let (code, out, _) = tandemctl(&sock, &["show", "counters", "--json"]);
    assert_eq!(code, 0);
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fwd = c["workers"][0]["counters"]["forwarded"].as_u64().unwrap();
    assert!(
        fwd >= 6,
        "3 echo requests and 3 replies forwarded, got {fwd}"
    );

    if unit_extra.contains("realtime_priority") {
        // (policy, priority) of the worker thread, read back from the kernel.
        let pid = d.child.id();
        assert_eq!(
            tandem_netns::daemon::thread_sched(pid, "tandem-w0"),
            Some((libc::SCHED_FIFO as u64, 20)),
            "worker at SCHED_FIFO 20:\n{}",
            d.log()
        );
        assert!(d.log().contains("workers at SCHED_FIFO"), "{}", d.log());
    }

    // Clean shutdown on SIGTERM.
    // By the pid of the child this test spawned.
    Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    let code = d.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "tandemd exit after SIGTERM:\n{}", d.log());
    assert!(!sock.exists(), "control socket removed");
    let link = unit.ip(&["link", "show", "out0"]).unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "XDP program detached: {link}");
    let log = d.log();
    assert!(log.contains("tandemd stopped"), "{log}");
    if backend == "auto" && want_backend == "io_uring" {
        assert!(log.contains("AF_XDP unavailable: "), "{log}");
        assert!(log.contains("; trying io_uring"), "{log}");
    }
}

/// `realtime_priority` runs the worker at SCHED_FIFO (and `cpu_latency_us`
/// is held) while the unit forwards as before.
#[test]
fn tandemd_realtime_worker_forwards_at_sched_fifo() {
    smoke(
        "tandemd_realtime_worker_forwards_at_sched_fifo",
        "io_uring",
        "realtime_priority = 20\ncpu_latency_us = 0",
        "io_uring",
    );
}

/// Asked for SCHED_FIFO and not granted (CAP_SYS_NICE dropped): tandemd
/// refuses to run, saying why, rather than running time-sharing.
#[test]
fn tandemd_refuses_to_start_without_its_realtime_priority() {
    let test = "tandemd_refuses_to_start_without_its_realtime_priority";
    if !have_privileges(test) {
        return;
    }
    // The peers stay alive (their ends of the veths) until the test ends.
    let (_client, unit, _server) = gateway_namespaces();
    let dir = TempDir::new(test);
    let sock = dir.path().join("gwtest.sock");
    let cfg = dir.path().join("gwtest.toml");
    let text = config(&sock, "io_uring", "out0", "in0").replacen(
        "profile = \"lab\"",
        "profile = \"lab\"\nrealtime_priority = 20",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let log = dir.path().join("tandemd.log");
    let child = spawn_tandemd(
        &unit,
        &[
            "setpriv",
            "--bounding-set=-sys_nice",
            "--inh-caps=-sys_nice",
            "--",
        ],
        &cfg,
        &log,
    );
    let mut d = Daemon { child, log };
    let code = d.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "tandemd must refuse:\n{}", d.log());
    assert!(
        d.log()
            .contains("unit.realtime_priority = 20: cannot run the workers at SCHED_FIFO 20"),
        "{}",
        d.log()
    );
    assert!(!sock.exists(), "control socket removed");
}

/// A profile's `run.cpu_latency_us` is the unit's default: tandemd holds
/// the request when the unit says nothing and names where it came from;
/// `cpu_latency_us = "off"` in the unit holds none.
#[test]
fn tandemd_holds_the_profiles_cpu_latency_unless_the_unit_says_off() {
    let test = "tandemd_holds_the_profiles_cpu_latency_unless_the_unit_says_off";
    if !have_privileges(test) {
        return;
    }
    let (_client, unit, _server) = gateway_namespaces();
    let dir = TempDir::new(test);
    // The lab profile, renamed, with the appliance profiles' default.
    let lab = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles/lab.toml"),
    )
    .unwrap();
    let polling = lab
        .replacen("name = \"lab\"", "name = \"lab-polling\"", 1)
        .replacen(
            "tx_flush_us = 50",
            "tx_flush_us = 50\ncpu_latency_us = 0",
            1,
        );
    assert!(polling.contains("cpu_latency_us = 0") && polling.contains("lab-polling"));
    let profile = dir.path().join("lab-polling.toml");
    std::fs::write(&profile, polling).unwrap();
    for (unit_key, held) in [("", true), ("cpu_latency_us = \"off\"", false)] {
        let sock = dir.path().join("gwtest.sock");
        let cfg = dir.path().join("gwtest.toml");
        let text = config(&sock, "io_uring", "out0", "in0").replacen(
            "profile = \"lab\"",
            &format!("profile = \"{}\"\n{unit_key}", profile.display()),
            1,
        );
        std::fs::write(&cfg, text).unwrap();
        let log = dir.path().join(format!("tandemd-{held}.log"));
        let child = spawn_tandemd(&unit, &[], &cfg, &log);
        let mut d = Daemon { child, log };
        d.wait_ready(&sock);
        let log = d.log();
        let holding = log.contains("holding a CPU wake-up latency request");
        assert_eq!(holding, held, "unit key {unit_key:?}:\n{log}");
        if held {
            assert!(
                log.contains("from=profile lab-polling run.cpu_latency_us"),
                "{log}"
            );
        }
        // By the pid of the child this test spawned.
        Command::new("kill")
            .args(["-TERM", &d.child.id().to_string()])
            .status()
            .unwrap();
        assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0), "{}", d.log());
    }
}

#[test]
fn tandemd_afxdp_forwards_answers_and_stops_cleanly() {
    smoke(
        "tandemd_afxdp_forwards_answers_and_stops_cleanly",
        "afxdp",
        "",
        "afxdp-copy",
    );
}

#[test]
fn tandemd_io_uring_forwards_answers_and_stops_cleanly() {
    smoke(
        "tandemd_io_uring_forwards_answers_and_stops_cleanly",
        "io_uring",
        "",
        "io_uring",
    );
}

/// `auto` falls back to io_uring when AF_XDP cannot open (veth has no
/// zero-copy, so requiring it makes AF_XDP fail) and says why.
#[test]
fn tandemd_auto_falls_back_to_io_uring() {
    smoke(
        "tandemd_auto_falls_back_to_io_uring",
        "auto",
        "zero_copy = \"required\"",
        "io_uring",
    );
}
