//! Shared helpers of the lab tests: start a real `tandemd` in a lab
//! namespace with a generated config, talk to it with `tandemctl`, stop it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use tandem_netns::daemon::{log_dir, wait_until, Daemon};
use tandem_netns::topology::{addr, GatewayLab};
use tandem_netns::{LabError, Netns};

/// Paths of the binaries under test (built by cargo for this test target).
pub const TANDEMD: &str = env!("CARGO_BIN_EXE_tandemd");
pub const TANDEMCTL: &str = env!("CARGO_BIN_EXE_tandemctl");

/// The shipped hardware profiles, so the test does not depend on the cwd.
pub fn profile_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hw-profiles")
}

/// A running tandemd and its control socket.
pub struct Unit {
    pub daemon: Daemon,
    pub socket: PathBuf,
    pub config: PathBuf,
}

impl Unit {
    /// Start tandemd in `ns` with `config_toml` (written to the run's log dir).
    pub fn start(ns: &Netns, name: &str, config_toml: &str) -> Result<Unit, LabError> {
        let dir = log_dir()?;
        let config = dir.join(format!("{}-{name}.toml", ns.name()));
        std::fs::write(&config, config_toml).map_err(|source| LabError::Io {
            what: format!("write {}", config.display()),
            source,
        })?;
        let socket = dir.join(format!("{}-{name}.sock", ns.name()));
        let cfg = config.to_string_lossy().to_string();
        let pdir = profile_dir().to_string_lossy().to_string();
        let mut cmd = ns.cmd(TANDEMD);
        cmd.args(["-c", &cfg, "--profile-dir", &pdir])
            .env("RUST_LOG", "info");
        let daemon = Daemon::spawn_cmd(name, cmd)?;
        let mut unit = Unit {
            daemon,
            socket,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let sock = unit.socket.clone();
        let ready = wait_until(deadline, || {
            sock.exists()
                && Command::new(TANDEMCTL)
                    .args(["-s", &sock.to_string_lossy(), "show", "version"])
                    .output()
                    .is_ok_and(|o| o.status.success())
        });
        if ready.is_err() || !unit.daemon.is_running() {
            return Err(LabError::Command {
                cmd: format!("tandemd -c {}", unit.config.display()),
                stderr: format!(
                    "did not become ready:\n{}\n{}",
                    unit.daemon.log_tail(40),
                    unit.daemon.thread_dump()
                ),
            });
        }
        Ok(unit)
    }

    /// The single gateway of a [`GatewayLab`]: outside on out0, inside on in0.
    pub fn start_gateway(lab: &GatewayLab, name: &str, backend: &str) -> Result<Unit, LabError> {
        let socket = log_dir()?.join(format!("{}-{name}.sock", lab.unit.name()));
        let toml = format!(
            r#"[unit]
name = "{name}"
profile = "lab"
backend = "{backend}"
control_socket = "{socket}"

[[interface]]
name = "outside"
device = "out0"
address = "{out}/24"

[[interface]]
name = "inside"
device = "in0"
address = "{ins}/24"
"#,
            socket = socket.display(),
            out = addr::OUTSIDE_UNIT,
            ins = addr::INSIDE_UNIT,
        );
        Unit::start(&lab.unit, name, &toml)
    }

    /// `tandemctl -s SOCKET args... --json`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(TANDEMCTL)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .arg("--json")
            .output()
            .expect("run tandemctl");
        assert!(
            out.status.success(),
            "tandemctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tandemctl {args:?} --json: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `tandemctl -s SOCKET args...` as text.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(TANDEMCTL)
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tandemctl");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail(40)
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn stop(&mut self) -> Result<ExitStatus, LabError> {
        self.daemon.stop(Duration::from_secs(10))
    }
}

/// This host's and the mate's failover state, from `show failover --json`.
pub fn failover_state(u: &Unit) -> (String, Option<String>) {
    let v = u.ctl_json(&["show", "failover"]);
    (
        v["this_host"]["state"].as_str().unwrap_or("?").to_string(),
        v["other_host"]["state"].as_str().map(str::to_string),
    )
}

/// Wait (bounded by `within`) until `u` is in `this` and sees its mate in
/// `other` (`None`: any); panics with `show failover` and the log otherwise.
pub fn wait_failover_state(
    u: &Unit,
    this: &str,
    other: Option<&str>,
    what: &str,
    within: Duration,
) {
    let ok = wait_until(Instant::now() + within, || {
        let (t, o) = failover_state(u);
        t == this && other.is_none_or(|w| o.as_deref() == Some(w))
    });
    if ok.is_err() {
        panic!(
            "{what}: wanted {this} / {other:?}, have {:?}\n{}\n{}",
            failover_state(u),
            u.ctl(&["show", "failover"]),
            u.log_tail()
        );
    }
}
