//! The control socket server: a Unix listener on its own thread, one short
//! thread per connection, newline-delimited JSON in and out.
//!
//! The management plane is not the hot path, so this is plain blocking std
//! I/O. The server never touches daemon state itself: it hands each parsed
//! [`Command`] to a [`Handler`] (in tandemd, a closure that forwards it to the
//! management thread and waits for the answer), which is what lets later
//! commands that change state (`failover active`) slot in without locks.
//!
//! Socket file lifecycle: a stale file left by a crashed run (nothing
//! accepts on it) is replaced; a live one (another tandemd answers) is an
//! error; a path that is not a socket is never deleted. The socket is made
//! mode 0600 and removed on shutdown or drop — only if it is still the file
//! this server created.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Command, Request, Response, MAX_LINE};

/// Answers one command. Called from connection threads, concurrently.
pub type Handler = Arc<dyn Fn(Command) -> Response + Send + Sync>;

/// Most connections served at once; more are told to retry and closed.
pub const MAX_CONNECTIONS: usize = 16;

/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {path}: another tandemd is serving it (stop that one first, or give this unit another unit.control_socket)")]
    InUse { path: String },
    #[error("control socket {path}: exists and is not a socket; not replacing it")]
    NotASocket { path: String },
    #[error("control socket {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A running control server; stops and removes its socket on
/// [`ControlServer::shutdown`] or drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// (dev, ino) of the socket file we created, so we never remove a file
    /// that someone else put there later.
    id: (u64, u64),
}

impl ControlServer {
    /// Bind `path` (creating its directory, mode 0700, when missing) and
    /// start serving with `handler`.
    pub fn bind(path: &Path, handler: Handler) -> Result<ControlServer, ServerError> {
        let shown = path.display().to_string();
        let io_err = |what: &'static str| {
            let shown = shown.clone();
            move |source| ServerError::Io {
                path: shown,
                what,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(io_err("creating its directory"))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err("setting its directory's mode"))?;
            }
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
        // Connecting needs write permission on the socket; 0600 limits the
        // API to the daemon's own user (root).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err("setting mode 0600"))?;
        let meta = std::fs::metadata(path).map_err(io_err("stat"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ctrl-api".into())
                .spawn(move || accept_loop(listener, handler, stop))
                .map_err(io_err("spawning the server thread"))?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
            id: (meta.dev(), meta.ino()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting, join the accept thread, remove the socket file.
    /// Connections in progress finish their current request on their own.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); it sees the flag and returns.
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Remove `path` if it is a socket nobody accepts on.
fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServerError::Io {
                path: shown,
                what: "stat",
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket { path: shown });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ServerError::InUse { path: shown }),
        Err(_) => {
            tracing::info!(socket = %shown, "replacing stale control socket left by an earlier run");
            std::fs::remove_file(path).map_err(|source| ServerError::Io {
                path: shown,
                what: "removing the stale socket",
                source,
            })
        }
    }
}

fn accept_loop(listener: UnixListener, handler: Handler, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                // EMFILE and friends: do not spin on a persistent error.
                std::thread::yield_now();
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = write_response(
                &mut stream,
                &Response::error(format!(
                    "too many control connections ({MAX_CONNECTIONS}); retry"
                )),
            );
            continue;
        }
        let handler = handler.clone();
        let active2 = active.clone();
        let spawned = std::thread::Builder::new()
            .name("ctrl-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &handler) {
                    tracing::debug!(error = %e, "control connection ended");
                }
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "control socket: cannot spawn a connection thread");
        }
    }
}

/// Serve requests on one connection until it closes or idles out.
fn serve(stream: UnixStream, handler: &Handler) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            write_response(
                &mut writer,
                &Response::error(format!("request longer than {MAX_LINE} bytes")),
            )?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        let resp = answer(text.trim(), handler);
        write_response(&mut writer, &resp)?;
    }
}

/// Decode one request line and run it.
pub fn answer(line: &str, handler: &Handler) -> Response {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Response::error(format!("request is not {{\"cmd\":\"...\"}} JSON: {e}")),
    };
    match Command::parse(&req.cmd) {
        Ok(cmd) => handler(cmd),
        Err(e) => Response::error(e.to_string()),
    }
}

fn write_response(w: &mut impl Write, r: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(r).map_err(io::Error::other)?;
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()
}
