//! The lab: network namespaces, veth pairs and bridges that tests,
//! benchmarks and the demo build and always tear down.
//!
//! Every name carries a per-run tag (`td` + pid + counter), so tests run in
//! parallel; interfaces are created directly inside their namespaces, so
//! their short names never collide in the root namespace. Each [`Netns`]
//! deletes itself on drop, which also runs when a test panics. Namespaces
//! left behind by a run that was SIGKILLed are removed by [`sweep_stale`],
//! which every constructor calls once per process.
//!
//! Addresses are in 198.18.0.0/15 only (RFC 2544 benchmarking space).
//!
//! On top of the fixture: [`topology`] builds the gateway and HA-pair labs
//! with their address plan, [`daemon`] runs processes inside namespaces with
//! logs and guaranteed termination, and [`wait_until`] polls with a deadline.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

pub mod daemon;
pub mod pair;
pub mod sequdp;
pub mod streams;
pub mod topology;

pub use daemon::{log_dir, wait_for, wait_until, Daemon};
pub use topology::{addr, ensure_tool, GatewayLab, PairLab};

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "td";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("`{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("namespace {ns}: {source}")]
    Setns {
        ns: String,
        #[source]
        source: io::Error,
    },
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Whether this process may build a lab (root with CAP_NET_ADMIN).
///
/// Outside CI a test calls this and skips with a message when it returns
/// false; under `CI=true` a missing privilege is a failure, so this panics.
pub fn have_privileges(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip {
        return true;
    }
    let why = if !root {
        "needs root (network namespaces)"
    } else {
        "needs iproute2 (`ip`)"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true makes that a failure");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// Run a command, returning its output or an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let text = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| LabError::Spawn {
        cmd: text.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: text,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// `ip <args>` in the root namespace.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run(Command::new("ip").args(args))
}

/// Remove namespaces (and log directories) left by lab runs whose process
/// no longer exists.
pub fn sweep_stale() {
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name.strip_prefix(daemon::LOG_DIR_PREFIX) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A network namespace owned by this process; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `td<pid>x<n><role>`, with loopback up.
    pub fn new(role: &str) -> Result<Netns, LabError> {
        SWEEP.call_once(sweep_stale);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}x{n}{role}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command to run inside this namespace (`ip netns exec NAME program`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `program args` inside the namespace, failing on a non-zero exit.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, LabError> {
        run(self.cmd(program).args(args))
    }

    /// `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Set a sysctl inside the namespace (e.g. `net.ipv4.ip_forward`, "1").
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])
            .map(|_| ())
    }

    /// Move the calling thread into this namespace until the guard drops.
    /// Sockets opened meanwhile stay in this namespace for their lifetime.
    pub fn enter(&self) -> Result<NetnsGuard, LabError> {
        enter_named(&self.name)
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6], LabError> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        let s = String::from_utf8_lossy(&out.stdout);
        let mut mac = [0u8; 6];
        for (i, part) in s.trim().split(':').enumerate().take(6) {
            mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
        }
        Ok(mac)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside keep the namespace alive until they exit;
        // their owners (guards in this crate) kill them first.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// [`Netns::enter`] by name, for a thread that cannot borrow the [`Netns`]
/// (the namespace must outlive the guard).
pub fn enter_named(name: &str) -> Result<NetnsGuard, LabError> {
    let err = |source| LabError::Setns {
        ns: name.to_string(),
        source,
    };
    let back = File::open("/proc/thread-self/ns/net").map_err(err)?;
    let target = File::open(format!("/var/run/netns/{name}")).map_err(err)?;
    // SAFETY: setns on an open namespace fd only changes the calling
    // thread's network namespace; the fd is valid for this call.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(NetnsGuard { back })
}
/// Returns the thread to its previous namespace on drop.
pub struct NetnsGuard {
    back: File,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: `back` is the fd of the namespace this thread came from.
        let rc = unsafe { libc::setns(self.back.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            // A thread left in a test namespace would poison later work on it.
            panic!(
                "cannot return thread to its namespace: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Create a veth pair with one end in each namespace, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), LabError> {
    veth_with_queues(a, a_if, b, b_if, 1)
}

/// [`veth`] with `queues` receive and transmit queues on both ends (several
/// workers, each serving its own queue).
pub fn veth_with_queues(
    a: &Netns,
    a_if: &str,
    b: &Netns,
    b_if: &str,
    queues: u32,
) -> Result<(), LabError> {
    let q = queues.to_string();
    ip(&[
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_and_veth_are_created_and_removed() {
        if !have_privileges("namespace_and_veth_are_created_and_removed") {
            return;
        }
        let name;
        {
            let a = Netns::new("a").unwrap();
            let b = Netns::new("b").unwrap();
            name = a.name().to_string();
            veth(&a, "e0", &b, "e1").unwrap();
            a.ip(&["addr", "add", "198.18.0.1/24", "dev", "e0"])
                .unwrap();
            b.ip(&["addr", "add", "198.18.0.2/24", "dev", "e1"])
                .unwrap();
            a.exec("ping", &["-c1", "-W2", "198.18.0.2"]).unwrap();
            let mac = a.mac("e0").unwrap();
            assert_ne!(mac, [0; 6]);
            let _g = a.enter().unwrap();
            // Only this thread moved: a netlink query sees e0 here.
            let idx = std::ffi::CString::new("e0").unwrap();
            // SAFETY: idx is a valid NUL-terminated string.
            assert_ne!(unsafe { libc::if_nametoindex(idx.as_ptr()) }, 0);
        }
        assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    }
}
