//! The control socket client used by tandemctl (and by tests): connect,
//! send one request line, read one response line. Errors say which socket
//! and what the operator can do about it.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Request, Response, MAX_LINE};

/// Where tandemd puts unit sockets by default.
pub const RUN_DIR: &str = "/run/tandem";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to tandemd at {socket}: {source}; {hint}")]
    Connect {
        socket: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("control socket {socket}: {what}: {source}")]
    Io {
        socket: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("control socket {socket}: tandemd closed the connection without answering")]
    Closed { socket: String },
    #[error("control socket {socket}: answer is not valid JSON: {detail}")]
    BadResponse { socket: String, detail: String },
    #[error("no control socket given and {why}; use -s SOCKET or -u UNIT")]
    NoSocket { why: String },
}

fn hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            "is tandemd running? start it with `tandemd -c <unit config>`"
        }
        ErrorKind::PermissionDenied => {
            "the socket is mode 0600: run tandemctl as the user tandemd runs as (root)"
        }
        _ => "check that tandemd is running and the socket path is right",
    }
}

/// One open control connection.
pub struct Client {
    socket: String,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connect to `path`; `timeout` bounds each later read and write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let socket = path.display().to_string();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            socket: socket.clone(),
            hint: hint(source.kind()),
            source,
        })?;
        let io_err = |what| {
            let socket = socket.clone();
            move |source| ClientError::Io {
                socket,
                what,
                source,
            }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_err("set timeout"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io_err("set timeout"))?;
        let reader = BufReader::new(stream.try_clone().map_err(io_err("clone"))?);
        Ok(Client {
            socket,
            writer: stream,
            reader,
        })
    }

    /// Send one command line (`show interface`) and wait for its answer.
    pub fn request(&mut self, cmd: &str) -> Result<Response, ClientError> {
        let io_err = |what| {
            let socket = self.socket.clone();
            move |source| ClientError::Io {
                socket,
                what,
                source,
            }
        };
        let mut line = serde_json::to_vec(&Request {
            cmd: cmd.to_string(),
        })
        .map_err(|e| io_err("encode")(io::Error::other(e)))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(io_err("send"))?;
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io_err("receive"))?;
        if n == 0 {
            return Err(ClientError::Closed {
                socket: self.socket.clone(),
            });
        }
        serde_json::from_slice(&buf).map_err(|e| ClientError::BadResponse {
            socket: self.socket.clone(),
            detail: e.to_string(),
        })
    }
}

/// The socket tandemctl talks to: `-s` wins, then `-u UNIT`
/// (`/run/tandem/UNIT.sock`), then `$TANDEM_SOCKET`, then the only socket
/// in `run_dir`.
pub fn choose_socket(
    socket: Option<&Path>,
    unit: Option<&str>,
    env: Option<&str>,
    run_dir: &Path,
) -> Result<PathBuf, ClientError> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(u) = unit {
        return Ok(run_dir.join(format!("{u}.sock")));
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return Ok(PathBuf::from(e));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ClientError::NoSocket {
            why: format!(
                "no tandemd socket in {} (is tandemd running? start it with `tandemd -c <unit config>`)",
                run_dir.display()
            ),
        }),
        _ => Err(ClientError::NoSocket {
            why: format!(
                "{} has several units: {}",
                run_dir.display(),
                found
                    .iter()
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
