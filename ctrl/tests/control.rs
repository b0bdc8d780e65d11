//! The control protocol end to end without a data plane: a server on a
//! temporary socket answering from a fake source, the client library, the
//! text rendering (golden text), and the tandemctl binary itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use tandem_ctrl::api::client::{choose_socket, Client};
use tandem_ctrl::api::server::{ControlServer, Handler, ServerError};
use tandem_ctrl::api::{execute, Command, Response, COMMANDS};
use tandem_ctrl::render;
use tandem_ctrl::testutil::{FakeSource, TempDir};

const TIMEOUT: Duration = Duration::from_secs(10);

fn fake_handler() -> Handler {
    Arc::new(|cmd| execute(&FakeSource, cmd))
}

fn serve(dir: &TempDir) -> ControlServer {
    ControlServer::bind(&dir.path().join("gw1.sock"), fake_handler()).unwrap()
}

const GOLDEN: &[(&str, &str)] = &[
    (
        "show interface",
        r#"Interface out0 "outside", is up, line protocol is up
        MAC address 0200.0000.0101, MTU 1500
        IP address 198.18.1.1, subnet mask 255.255.255.0
Interface in0 "inside", is administratively down, line protocol is unknown
        MAC address 0200.0000.0201, MTU 1400
        IP address 198.18.2.1, subnet mask 255.255.255.128
"#,
    ),
    (
        "show route",
        r#"Codes: C - connected, S - static, * - candidate default

Gateway of last resort is 198.18.1.254 to network 0.0.0.0

C        198.18.1.0 255.255.255.0 is directly connected, outside
C        198.18.2.0 255.255.255.128 is directly connected, inside
S*       0.0.0.0 0.0.0.0 via 198.18.1.254, outside
S        198.19.0.0 255.255.0.0 via 198.18.2.126, inside
"#,
    ),
    (
        "show arp",
        r#"        outside  198.18.1.254  0200.0000.01fe  12  reachable
        inside   198.18.2.126  -                0  incomplete
Total number of ARP entries: 2
"#,
    ),
    (
        "show counters",
        r#"Worker 0: core 1, backend afxdp-copy

Counter        Total
rx                10
tx                 8
forwarded          7
tx_garp            3
drop_no_route      2
(1 counter at zero not shown; `tandemctl show counters --json` lists all)
"#,
    ),
    (
        "show version",
        r#"tandem Version 0.1.0
Unit gw1 up 1 hour 2 mins
Config file: /etc/tandem/gw1.toml
Hardware profile: lab (built-in lab)
Cores: management 0, workers 1
Packet I/O: afxdp-copy
        unit.backend = "auto" and AF_XDP opened as afxdp-copy on out0, in0 (XDP mode: out0 native, in0 native)
"#,
    ),
    (
        "show conn",
        r#"2 in use, 1000 most used
TCP outside 198.18.1.10:40000 inside 198.18.2.10:5001 xlate 198.18.2.1:61234, idle 0:00:01, ESTABLISHED, replicated, offloaded
UDP outside 198.18.1.10:5353 inside 198.18.1.100:53 real 198.18.2.10:53, idle 1:02:05, open
"#,
    ),
    (
        "show conn count",
        r#"2 in use, 1000 most used
1 xlates, 0 IPsec SAs
"#,
    ),
    (
        "show xlate",
        r#"1 in use, 1000 most used
TCP PAT from 198.18.1.10/40000 to 198.18.2.1/61234, 1 conns, idle 0:00:00
"#,
    ),
    (
        "show failover",
        r#"Failover On
Failover unit Primary
Failover LAN Interface: folink fo0 (up)
Failover link security: encrypted (AES-256-GCM), session up
Unit Poll frequency 1 seconds, holdtime 15 seconds
Interface Poll frequency 5 seconds, holdtime 25 seconds
Interface Policy 1
Monitored Interfaces 1
Last Failover at: 60 ms after start: Negotiation → Active (no peer detected on the failover link for 60 ms after start)
        This host: Primary - Active
                Active time: 7200000 ms ago
                Interface outside (198.18.1.1): Normal (Monitored)
                Interface inside (198.18.2.1): Normal (Not-Monitored)
        Other host: Secondary - Standby Ready
                Last heard: 3 ms ago
                Interface outside (198.18.1.2): Normal (Monitored)
                Interface inside (198.18.2.2): Normal (Not-Monitored)
Stateful Failover Logical Update Statistics
        Link : st0
        Replication: sending (active) on st0 (EtherType 0x88B6), encrypted (AES-256-GCM), session up
        bulk sync 45 % (450 of 1000), mate not synchronised yet; lag 3 frames
        Sent: 36000 records in 1200 frames, 4 retransmissions, 1 NAKs received, 1 bulk syncs
        Stream  Frames  Lag  Bulk sync
             0    1200    3  running 45 % (450 of 1000)
"#,
    ),
    (
        "show failover state",
        r#"                        State          Last Failure Reason
This host  - Primary    Active         None
Other host - Secondary  Standby Ready  None
"#,
    ),
    (
        "show failover history",
        r#"Time (ms)  From State   To State  Reason
       60  Negotiation  Active    no peer detected on the failover link for 60 ms after start
"#,
    ),
    (
        "show monitor-interface",
        r#"        This host: Primary - Active
                Interface outside (198.18.1.1): Normal (Monitored)
                Interface inside (198.18.2.1): Normal (Not-Monitored)
        Other host: Secondary - Standby Ready
                Interface outside (198.18.1.2): Normal (Monitored)
                Interface inside (198.18.2.2): Normal (Not-Monitored)
"#,
    ),
    (
        "failover active",
        r#"this unit is becoming active
"#,
    ),
    (
        "no failover active",
        r#"this unit is handing the active role to its mate
"#,
    ),
    (
        "failover reset",
        r#"failover reset
"#,
    ),
    (
        "no failover",
        r#"failover disabled on this unit
"#,
    ),
    (
        "failover",
        r#"failover enabled on this unit
"#,
    ),
    (
        "write standby",
        r#"configuration (512 bytes) sent to the standby
"#,
    ),
    (
        "config reload",
        r#"configuration reloaded: 1 change applied live: route 198.19.9.0/24 via 198.18.2.254 on inside: added; replicated to the mate (512 bytes)
"#,
    ),
    (
        "config reload force",
        r#"configuration reloaded: 1 change applied live: route 198.19.9.0/24 via 198.18.2.254 on inside: added; this unit is now OUT OF SYNC with the active unit
"#,
    ),
];

#[test]
fn round_trip_every_command_renders_golden_text() {
    let dir = TempDir::new("roundtrip");
    let server = serve(&dir);
    // One connection carries several requests.
    let mut client = Client::connect(server.path(), TIMEOUT).unwrap();
    assert_eq!(GOLDEN.len(), COMMANDS.len(), "a golden text per command");
    for (words, want) in GOLDEN {
        let resp = client.request(words).unwrap();
        assert!(resp.ok, "{words}: {resp:?}");
        let cmd = Command::parse(words).unwrap();
        let text = render::render(cmd, resp.data.as_ref().unwrap()).unwrap();
        assert_eq!(text, *want, "{words}:\n{text}");
    }
    // The JSON carries the same facts, in machine-friendly units.
    let resp = client.request("sh arp").unwrap();
    let data = resp.data.unwrap();
    assert_eq!(data[0]["address"], "198.18.1.254");
    assert_eq!(data[0]["mac"], "02:00:00:00:01:fe");
    assert_eq!(data[0]["age_ms"], 12345);
    assert_eq!(data[1]["mac"], serde_json::Value::Null);
    server.shutdown();
}

#[test]
fn errors_come_back_as_ok_false() {
    let dir = TempDir::new("errors");
    let server = serve(&dir);
    let stream = UnixStream::connect(server.path()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut ask = |line: &str| -> serde_json::Value {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut out = String::new();
        r.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    };
    let v = ask(r#"{"cmd":"show bogus"}"#);
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("unknown command \"show bogus\"; commands: show interface"));
    let v = ask("not json");
    assert_eq!(v["ok"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("request is not {\"cmd\":\"...\"} JSON"));
    let v = ask(r#"{"cmd":"show version","extra":1}"#);
    assert_eq!(v["ok"], false, "unknown request fields are refused");
    // The connection survives bad requests.
    let v = ask(r#"{"cmd":"show version"}"#);
    assert_eq!(v["ok"], true);
    assert_eq!(v["data"]["unit"], "gw1");
    assert!(v.get("error").is_none());
}

#[test]
fn socket_is_0600_replaces_stale_refuses_live_and_is_removed() {
    let dir = TempDir::new("lifecycle");
    let path = dir.path().join("gw1.sock");

    // A stale socket: bound once, nobody accepting any more.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = ControlServer::bind(&path, fake_handler()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A second daemon for the same socket is refused, and leaves it alone.
    let e = ControlServer::bind(&path, fake_handler()).err().unwrap();
    assert!(matches!(e, ServerError::InUse { .. }), "{e}");
    assert!(
        e.to_string().contains("another tandemd is serving it"),
        "{e}"
    );
    let mut c = Client::connect(&path, TIMEOUT).unwrap();
    assert!(c.request("show version").unwrap().ok);

    server.shutdown();
    assert!(!path.exists(), "socket removed on shutdown");

    // Never delete something that is not a socket.
    std::fs::write(&path, "precious").unwrap();
    let e = ControlServer::bind(&path, fake_handler()).err().unwrap();
    assert!(matches!(e, ServerError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn missing_directory_is_created_private() {
    let dir = TempDir::new("mkdir");
    let path = dir.path().join("run/tandem/gw1.sock");
    let server = ControlServer::bind(&path, fake_handler()).unwrap();
    let mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    drop(server);
    assert!(!path.exists(), "socket removed on drop");
}

#[test]
fn client_errors_say_what_to_do() {
    let dir = TempDir::new("client");
    let e = Client::connect(&dir.path().join("nope.sock"), TIMEOUT)
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with(&format!(
        "cannot connect to tandemd at {}/nope.sock: ",
        dir.path().display()
    )));
    assert!(
        e.ends_with("is tandemd running? start it with `tandemd -c <unit config>`"),
        "{e}"
    );

    // Socket choice: -s, then -u, then $TANDEM_SOCKET, then the only one.
    let run = dir.path();
    let s = choose_socket(Some(Path::new("/x.sock")), Some("u"), Some("/e"), run).unwrap();
    assert_eq!(s, Path::new("/x.sock"));
    let s = choose_socket(None, Some("gw2"), Some("/e"), run).unwrap();
    assert_eq!(s, run.join("gw2.sock"));
    let s = choose_socket(None, None, Some("/e.sock"), run).unwrap();
    assert_eq!(s, Path::new("/e.sock"));
    let e = choose_socket(None, None, None, run)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tandemd socket in"), "{e}");
    std::fs::write(run.join("a.sock"), "").unwrap();
    assert_eq!(
        choose_socket(None, None, None, run).unwrap(),
        run.join("a.sock")
    );
    std::fs::write(run.join("b.sock"), "").unwrap();
    let e = choose_socket(None, None, None, run)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has several units: a, b; use -s SOCKET or -u UNIT"),
        "{e}"
    );
}

#[test]
fn server_answers_concurrent_clients() {
    let dir = TempDir::new("concurrent");
    let server = serve(&dir);
    let path = server.path().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path, TIMEOUT).unwrap();
                for _ in 0..20 {
                    let r: Response = c.request("show route").unwrap();
                    assert!(r.ok);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn tandemctl(args: &[&str]) -> (i32, String, String) {
    let out = Process::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(args)
        .env_remove("TANDEM_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn tandemctl_prints_golden_text_and_json() {
    let dir = TempDir::new("ctl");
    let server = serve(&dir);
    let sock = server.path().to_str().unwrap().to_string();
    for (words, want) in GOLDEN {
        let mut args = vec!["-s", sock.as_str()];
        args.extend(words.split(' '));
        let (code, out, err) = tandemctl(&args);
        assert_eq!(code, 0, "{words}: {err}");
        assert_eq!(out, *want, "{words}");
    }
    // Abbreviations, and --json after the words.
    let (code, out, _) = tandemctl(&["-s", &sock, "sh", "int", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "outside");
    assert_eq!(v[0]["device"], "out0");
    assert_eq!(v[1]["admin_up"], false);
    let (code, out, _) = tandemctl(&["--json", "-s", &sock, "show", "counters"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["workers"][0]["counters"]["drop_no_route"], 2);
    assert_eq!(v["workers"][0]["counters"]["drop_mtu"], 0);
}

#[test]
fn tandemctl_errors_and_help() {
    let dir = TempDir::new("ctlerr");
    let missing = dir.path().join("gw9.sock");
    let (code, _, err) = tandemctl(&["-s", missing.to_str().unwrap(), "show", "version"]);
    assert_eq!(code, 3);
    assert!(err.contains("cannot connect to tandemd at"), "{err}");
    assert!(err.contains("start it with `tandemd -c"), "{err}");

    let (code, _, err) = tandemctl(&["-s", missing.to_str().unwrap(), "show", "bogus"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("tandemctl: unknown command \"show bogus\""),
        "{err}"
    );

    let (code, out, _) = tandemctl(&["--help"]);
    assert_eq!(code, 0);
    for (words, _, _) in COMMANDS {
        assert!(out.contains(words), "--help lists `{words}`:\n{out}");
    }
    assert!(out.contains("--json") && out.contains("--socket") && out.contains("--unit"));
}
