//! Processes the lab runs for a test (tandemd, pktgen, peers) and the bounded
//! polling helper tests wait with.
//!
//! A [`Daemon`] is spawned inside a namespace with stdout and stderr going
//! to one log file in the per-run log directory ([`log_dir`]); on drop it is
//! stopped by PID (SIGTERM, then SIGKILL after a bounded wait) and, if the
//! test is panicking, the tail of its log is printed. The child is not reaped
//! before it is signalled, so its PID cannot have been reused by then.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{LabError, Netns};

static LOG_DIR: OnceLock<PathBuf> = OnceLock::new();
static LOG_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Lines of a daemon's log printed when a test panics while it runs.
const TAIL_ON_PANIC: usize = 40;

/// Per-run log directories under the temp dir are `td-lab-<pid>`.
pub(crate) const LOG_DIR_PREFIX: &str = "td-lab-";

/// The per-run directory for daemon logs and scratch files:
/// `$TANDEM_LAB_LOGS` if set, else `<tmp>/td-lab-<pid>`. Created on first use.
pub fn log_dir() -> Result<&'static Path, LabError> {
    if let Some(d) = LOG_DIR.get() {
        return Ok(d);
    }
    let dir = match std::env::var_os("TANDEM_LAB_LOGS") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("{LOG_DIR_PREFIX}{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        what: format!("create log directory {}", dir.display()),
        source,
    })?;
    Ok(LOG_DIR.get_or_init(|| dir))
}

/// `(policy, rt_priority)` of process `pid`'s thread named `comm`, from
/// `/proc/PID/task/TID/stat` (fields 41 and 40, after the command's `)`).
pub fn thread_sched(pid: u32, comm: &str) -> Option<(u64, u64)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for e in dir.flatten() {
        let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if name.trim() != comm {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        // `rest` starts at field 3 (state).
        let f: Vec<&str> = rest.split_whitespace().collect();
        return Some((f.get(41 - 3)?.parse().ok()?, f.get(40 - 3)?.parse().ok()?));
    }
    None
}

/// A child process owned by a test; stopped on drop.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Run `program args` inside `ns` (via [`Netns::cmd`]). `name` labels
    /// the log file and error messages. The program must stay in the
    /// foreground: a process that daemonizes escapes the guard.
    pub fn spawn(ns: &Netns, name: &str, program: &str, args: &[&str]) -> Result<Daemon, LabError> {
        let mut cmd = ns.cmd(program);
        cmd.args(args);
        Daemon::spawn_cmd(name, cmd)
    }

    /// Run a prepared command (stdout and stderr are replaced by the log).
    pub fn spawn_cmd(name: &str, mut cmd: Command) -> Result<Daemon, LabError> {
        let n = LOG_COUNTER.fetch_add(1, Ordering::Relaxed);
        let log = log_dir()?.join(format!("{n:03}-{name}.log"));
        let io_err = |what: &str| {
            let what = format!("{what} {}", log.display());
            move |source| LabError::Io { what, source }
        };
        let out = File::create(&log).map_err(io_err("create log"))?;
        let err = out.try_clone().map_err(io_err("clone log handle"))?;
        let text = format!("{cmd:?}").replace('"', "");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn { cmd: text, source })?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log,
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far (lossy UTF-8).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Where each thread of the running process is, for a test that found
    /// it stuck: name, state and kernel wait channel of every thread, and
    /// their user-space stacks when gdb is installed (bounded: 20 s).
    pub fn thread_dump(&self) -> String {
        let pid = self.pid();
        let mut out = String::new();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        for t in tasks.into_iter().flatten().flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(t.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            let state = read("status")
                .lines()
                .find(|l| l.starts_with("State:"))
                .unwrap_or_default()
                .to_string();
            out.push_str(&format!(
                "thread {} {:?} {state} wchan={}\n",
                t.file_name().to_string_lossy(),
                read("comm"),
                read("wchan")
            ));
        }
        let gdb = Command::new("timeout")
            .args(["20", "gdb", "-p", &pid.to_string(), "-batch", "-nx"])
            .args(["-ex", "thread apply all bt 16"])
            .stdin(Stdio::null())
            .output();
        if let Ok(o) = gdb {
            let text = String::from_utf8_lossy(&o.stdout);
            for l in text
                .lines()
                .filter(|l| l.starts_with('#') || l.starts_with("Thread"))
            {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The exit status if the process has exited (reaping it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LabError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| LabError::Io {
                what: format!("wait for {} (pid {})", self.name, self.child.id()),
                source,
            })?;
        }
        Ok(self.status)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Wait up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let what = format!("{} (pid {}) to exit", self.name, self.pid());
        let mut status = None;
        wait_for(&what, timeout, || {
            status = self.try_wait().ok().flatten();
            status.is_some()
        })?;
        Ok(status.expect("set when the wait succeeded"))
    }

    /// Send `signal` (e.g. `libc::SIGKILL` to simulate a crash) if the
    /// process has not been reaped yet.
    pub fn signal(&mut self, signal: i32) -> Result<(), LabError> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory effects; `pid` is our own child, not yet
        // reaped (status is None and nothing else waits on it), so the PID
        // still names this process (or its zombie) and cannot be reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            // ESRCH: it exited between the check and the kill.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(LabError::Io {
                    what: format!("signal {signal} to {} (pid {pid})", self.name),
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL and reap.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, LabError> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        self.signal(libc::SIGTERM)?;
        if let Ok(s) = self.wait_exit(grace) {
            return Ok(s);
        }
        self.signal(libc::SIGKILL)?;
        self.wait_exit(Duration::from_secs(5))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(2));
        if std::thread::panicking() {
            eprintln!(
                "---- {} (pid {}) log tail, {} ----\n{}\n----",
                self.name,
                self.child.id(),
                self.log.display(),
                self.log_tail(TAIL_ON_PANIC)
            );
        }
    }
}

/// Poll `cond` until it holds or `deadline` passes (checking once more at
/// the deadline). Polls every millisecond at first, backing off to 20 ms.
pub fn wait_until(deadline: Instant, cond: impl FnMut() -> bool) -> Result<(), LabError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    wait_for("condition", timeout, cond)
}

/// [`wait_until`] with a timeout and a description for the error message.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), LabError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut step = Duration::from_millis(1);
    loop {
        if cond() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LabError::Timeout {
                what: what.to_string(),
                waited: now - start,
            });
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_when_true_and_times_out_when_not() {
        let mut n = 0;
        wait_until(Instant::now() + Duration::from_secs(5), || {
            n += 1;
            n == 3
        })
        .unwrap();
        assert_eq!(n, 3);
        let e = wait_for("the moon", Duration::from_millis(5), || false).unwrap_err();
        assert!(e.to_string().contains("the moon"), "{e}");
    }

    #[test]
    fn daemon_logs_output_and_is_stopped_on_drop() {
        if !crate::have_privileges("daemon_logs_output_and_is_stopped_on_drop") {
            return;
        }
        let ns = Netns::new("dmn").unwrap();
        let mut d = Daemon::spawn(
            &ns,
            "sleeper",
            "sh",
            &["-c", "echo ready; echo oops >&2; exec sleep 30"],
        )
        .unwrap();
        wait_for("ready line", Duration::from_secs(10), || {
            d.log().contains("ready")
        })
        .unwrap();
        wait_for("stderr line", Duration::from_secs(10), || {
            d.log().contains("oops")
        })
        .unwrap();
        assert!(d.is_running());
        use std::os::unix::process::ExitStatusExt;
        let st = d.stop(Duration::from_secs(5)).unwrap();
        assert_eq!(st.signal(), Some(libc::SIGTERM));
        drop(d);

        // A process that exits by itself reports its status.
        let mut e = Daemon::spawn(&ns, "false", "false", &[]).unwrap();
        let st = e.wait_exit(Duration::from_secs(10)).unwrap();
        assert!(!st.success());
    }

    #[test]
    fn stop_escalates_to_sigkill() {
        if !crate::have_privileges("stop_escalates_to_sigkill") {
            return;
        }
        let ns = Netns::new("dmk").unwrap();
        let mut d = Daemon::spawn(
            &ns,
            "stubborn",
            "sh",
            &["-c", "trap '' TERM; echo armed; while :; do sleep 1; done"],
        )
        .unwrap();
        wait_for("trap armed", Duration::from_secs(10), || {
            d.log().contains("armed")
        })
        .unwrap();
        use std::os::unix::process::ExitStatusExt;
        let st = d.stop(Duration::from_millis(100)).unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    }
}
