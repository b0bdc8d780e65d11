//! The operator API between tandemctl and tandemd: commands, the wire
//! protocol, and the structured data each command returns.
//!
//! Protocol: a Unix stream socket (mode 0600) carrying newline-delimited
//! JSON. Each request is one line `{"cmd":"show interface"}`; each response
//! one line, `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`. A
//! connection may carry any number of requests in sequence. The daemon
//! returns data only; tandemctl renders it ([`crate::render`]) or prints
//! the JSON (`--json`), so scripts and the text view see the same facts.
//!
//! Commands are words parsed into [`Command`]; like an appliance CLI, each
//! word may be abbreviated to a unique prefix (`sh int`). A later command
//! (`show failover`, `failover active group 1`) is one more row in
//! [`COMMANDS`] plus a variant, and the server needs no change.

pub mod client;
pub mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Longest request or response line accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    ShowInterface,
    ShowRoute,
    ShowArp,
    ShowCounters,
    ShowVersion,
    /// `show conn`: the connection table (up to [`SHOW_CONN_LIMIT`] lines).
    ShowConn,
    /// `show conn count`: connections in use and the most ever in use.
    ShowConnCount,
    /// `show xlate`: the PAT translations (up to [`SHOW_CONN_LIMIT`]).
    ShowXlate,
    ShowFailover,
    ShowFailoverState,
    ShowFailoverHistory,
    ShowMonitorInterface,
    FailoverActive,
    NoFailoverActive,
    FailoverReset,
    NoFailover,
    Failover,
    WriteStandby,
    /// `config reload`: re-read the configuration file and apply what changed live
    /// ([`crate::reload`]); on the active unit, replicate it to the standby.
    ConfigReload,
    /// `config reload force` (`tandemctl --force config reload`): also on a standby unit, which
    /// is then out of sync with its mate until the next configuration replication.
    ConfigReloadForce,
    /// `failover exec mate|active|standby <command>`: run a command on a unit of the pair.
    Exec(Exec),
}

/// Which unit `failover exec` runs its command on (seeds 003, "Remote command execution").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecTarget {
    /// The other unit of the pair.
    Mate,
    /// Whichever unit is active (this one or the mate).
    Active,
    /// Whichever unit is standby (this one or the mate).
    Standby,
}

impl ExecTarget {
    const ALL: [ExecTarget; 3] = [ExecTarget::Mate, ExecTarget::Active, ExecTarget::Standby];

    /// The target's word.
    pub fn word(self) -> &'static str {
        match self {
            ExecTarget::Mate => "mate",
            ExecTarget::Active => "active",
            ExecTarget::Standby => "standby",
        }
    }
}

/// A `failover exec` command: a target and one command of [`COMMANDS`] (never another exec, so
/// the command stays `Copy` and a unit cannot bounce a command back and forth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Exec {
    pub target: ExecTarget,
    /// Index of the command in [`COMMANDS`].
    index: u8,
}

impl Exec {
    /// `failover exec <target> <cmd>`; `None` when `cmd` is itself an exec.
    pub fn new(target: ExecTarget, cmd: Command) -> Option<Exec> {
        let index = COMMANDS.iter().position(|(_, c, _)| *c == cmd)?;
        Some(Exec {
            target,
            index: u8::try_from(index).ok()?,
        })
    }

    /// The command to run on the target.
    pub fn command(self) -> Command {
        COMMANDS
            .get(usize::from(self.index))
            .map(|(_, c, _)| *c)
            .unwrap_or(Command::ShowVersion)
    }
}

/// The words of every `failover exec` command, built once so that [`Command::words`] can hand out
/// `&'static str` for them too: target-major, in [`COMMANDS`] order.
static EXEC_WORDS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    ExecTarget::ALL
        .iter()
        .flat_map(|t| {
            COMMANDS
                .iter()
                .map(move |(w, _, _)| format!("failover exec {} {w}", t.word()))
        })
        .collect()
});

/// Help line for `failover exec`, which is not a row of [`COMMANDS`] (it takes a command).
pub const EXEC_HELP: (&str, &str) = (
    "failover exec mate|active|standby COMMAND",
    "run COMMAND on the mate (or on whichever unit is active / standby) and print its answer",
);

impl Command {
    /// An operator query (`show …`): it changes nothing, so the daemon logs it at debug only.
    pub fn is_query(self) -> bool {
        let inner = match self {
            Command::Exec(e) => e.command(),
            c => c,
        };
        inner.words().starts_with("show ")
    }

    /// Whether the failover (HA) thread answers this command.
    pub fn is_failover(self) -> bool {
        matches!(
            self,
            Command::Exec(_)
                | Command::ShowFailover
                | Command::ShowFailoverState
                | Command::ShowFailoverHistory
                | Command::ShowMonitorInterface
                | Command::FailoverActive
                | Command::NoFailoverActive
                | Command::FailoverReset
                | Command::NoFailover
                | Command::Failover
                | Command::WriteStandby
        )
    }
}

/// Every command with its words, in help order.
pub const COMMANDS: &[(&str, Command, &str)] = &[
    (
        "show interface",
        Command::ShowInterface,
        "interfaces: device, MAC, address, MTU, link state",
    ),
    (
        "show route",
        Command::ShowRoute,
        "the route table: connected and static routes",
    ),
    (
        "show arp",
        Command::ShowArp,
        "the ARP table of every worker",
    ),
    (
        "show counters",
        Command::ShowCounters,
        "frame, ARP and drop counters per worker",
    ),
    (
        "show version",
        Command::ShowVersion,
        "version, unit, profile, packet I/O backend, uptime",
    ),
    (
        "show conn",
        Command::ShowConn,
        "connections (stateful units): protocol, both endpoints with interfaces, translation, idle, state",
    ),
    (
        "show conn count",
        Command::ShowConnCount,
        "connections in use and the most used since start (stateful units)",
    ),
    (
        "show xlate",
        Command::ShowXlate,
        "PAT translations: real and mapped address and port, connections, idle (stateful units)",
    ),
    (
        "show failover",
        Command::ShowFailover,
        "failover: this host and the other host, roles, states, interfaces, links, timers",
    ),
    (
        "show failover state",
        Command::ShowFailoverState,
        "failover: both units' state and the last failure reason",
    ),
    (
        "show failover history",
        Command::ShowFailoverHistory,
        "failover: every state transition with time and reason",
    ),
    (
        "show monitor-interface",
        Command::ShowMonitorInterface,
        "failover: monitored interfaces and their statuses on both units",
    ),
    (
        "failover active",
        Command::FailoverActive,
        "make this unit active (the mate becomes standby)",
    ),
    (
        "no failover active",
        Command::NoFailoverActive,
        "make this unit standby (the mate becomes active)",
    ),
    (
        "failover reset",
        Command::FailoverReset,
        "return a failed unit to an unfailed state",
    ),
    (
        "no failover",
        Command::NoFailover,
        "disable failover on this unit (the mate's standby becomes pseudo-standby)",
    ),
    (
        "failover",
        Command::Failover,
        "enable failover on this unit",
    ),
    (
        "write standby",
        Command::WriteStandby,
        "send this (active) unit's configuration to the standby again",
    ),
    (
        "config reload",
        Command::ConfigReload,
        "re-read the config file, apply what changed live (the active replicates it to the standby)",
    ),
    (
        "config reload force",
        Command::ConfigReloadForce,
        "config reload, also on a standby unit (which is then out of sync with the active)",
    ),
];

/// The command list of `tandemctl --help`: every row of [`COMMANDS`] and
/// `failover exec` ([`EXEC_HELP`]), so the help cannot drift from what the
/// daemon parses (tested against the table).
pub fn help_text() -> String {
    let mut help = String::from("Commands (words may be abbreviated to a unique prefix):\n");
    let width = COMMANDS
        .iter()
        .map(|(w, _, _)| w.len())
        .chain([EXEC_HELP.0.len()])
        .max()
        .unwrap_or(16);
    for (words, _, what) in COMMANDS {
        help.push_str(&format!("  {words:<width$}  {what}\n"));
    }
    help.push_str(&format!("  {:<width$}  {}\n", EXEC_HELP.0, EXEC_HELP.1));
    help.push_str("\n`--force` with `config reload` applies it on a standby unit too.\n");
    help
}

/// A command line that is not a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty command; commands: {}", command_list())]
    Empty,
    #[error("unknown command \"{input}\"; commands: {}", command_list())]
    Unknown { input: String },
    #[error("ambiguous command \"{input}\": could be {}", candidates.join(", "))]
    Ambiguous {
        input: String,
        candidates: Vec<String>,
    },
}

fn command_list() -> String {
    COMMANDS
        .iter()
        .map(|(w, _, _)| *w)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Command {
    /// Parse command words; each may be a unique prefix (`sh int`).
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        if let Some(exec) = parse_exec(line) {
            return exec;
        }
        parse_in(COMMANDS, line)
    }

    /// The command's full words (`show interface`).
    pub fn words(self) -> &'static str {
        if let Command::Exec(e) = self {
            let t = ExecTarget::ALL
                .iter()
                .position(|t| *t == e.target)
                .unwrap_or(0);
            return EXEC_WORDS
                .get(t * COMMANDS.len() + usize::from(e.index))
                .map(String::as_str)
                .unwrap_or("?");
        }
        COMMANDS
            .iter()
            .find(|(_, c, _)| *c == self)
            .map(|(w, _, _)| *w)
            .unwrap_or("?")
    }
}

/// `failover exec <target> <command…>` (each word a unique prefix, like the table's), or `None`
/// when the line is not an exec.
fn parse_exec(line: &str) -> Option<Result<Command, CommandError>> {
    let input: Vec<String> = line.split_whitespace().map(str::to_lowercase).collect();
    let [w0, w1, w2, rest @ ..] = &input[..] else {
        return None;
    };
    if !"failover".starts_with(w0.as_str()) || !"exec".starts_with(w1.as_str()) {
        return None;
    }
    let targets: Vec<ExecTarget> = ExecTarget::ALL
        .into_iter()
        .filter(|t| t.word().starts_with(w2.as_str()))
        .collect();
    let [target] = targets[..] else {
        return Some(Err(CommandError::Unknown {
            input: format!(
                "{} (failover exec needs a target: mate, active or standby)",
                input.join(" ")
            ),
        }));
    };
    let inner = match parse_in(COMMANDS, &rest.join(" ")) {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    Some(
        Exec::new(target, inner)
            .map(Command::Exec)
            .ok_or(CommandError::Unknown {
                input: input.join(" "),
            }),
    )
}

/// [`Command::parse`] over a given table: an exact match wins, otherwise
/// every word must be a prefix of the command's word and only one command
/// may match.
fn parse_in(table: &[(&'static str, Command, &str)], line: &str) -> Result<Command, CommandError> {
    let input: Vec<String> = line.split_whitespace().map(str::to_lowercase).collect();
    if input.is_empty() {
        return Err(CommandError::Empty);
    }
    let matches = |exact: bool| -> Vec<(&'static str, Command)> {
        table
            .iter()
            .filter(|(words, _, _)| {
                let words: Vec<&str> = words.split(' ').collect();
                words.len() == input.len()
                    && words.iter().zip(&input).all(|(w, i)| {
                        if exact {
                            w == i
                        } else {
                            w.starts_with(i.as_str())
                        }
                    })
            })
            .map(|(w, c, _)| (*w, *c))
            .collect()
    };
    if let [(_, c)] = matches(true)[..] {
        return Ok(c);
    }
    match &matches(false)[..] {
        [] => Err(CommandError::Unknown {
            input: input.join(" "),
        }),
        [(_, c)] => Ok(*c),
        many => Err(CommandError::Ambiguous {
            input: input.join(" "),
            candidates: many.iter().map(|(w, _)| w.to_string()).collect(),
        }),
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// One request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub cmd: String,
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        match serde_json::to_value(data) {
            Ok(v) => Response {
                ok: true,
                data: Some(v),
                error: None,
            },
            Err(e) => Response::error(format!("cannot encode the answer: {e}")),
        }
    }

    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

/// `show interface`: one per configured interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceView {
    /// The nameif (`outside`).
    pub name: String,
    /// The Linux device (`out0`).
    pub device: String,
    /// `02:00:00:00:00:01`.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Device administratively up (IFF_UP), when known.
    pub admin_up: Option<bool>,
    /// Carrier / operational state up, when known.
    pub link_up: Option<bool>,
}

/// `show route`: connected routes first, then static, as the table holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// `connected` or `static`.
    pub kind: String,
    pub prefix: Ipv4Addr,
    pub prefix_len: u8,
    pub next_hop: Option<Ipv4Addr>,
    /// Egress interface nameif.
    pub interface: String,
}

/// `show arp`: the workers' ARP tables merged (per interface and address the
/// most recently confirmed entry), sorted by interface then address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArpView {
    pub interface: String,
    pub address: Ipv4Addr,
    /// `None` while incomplete.
    pub mac: Option<String>,
    /// `incomplete`, `reachable` or `stale`.
    pub state: String,
    /// Milliseconds since last confirmed (since created, when incomplete).
    pub age_ms: u64,
}

/// `show counters`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    /// Counter names in display order (the order the data plane declares them).
    pub names: Vec<String>,
    pub workers: Vec<WorkerCounters>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    pub worker: usize,
    pub core: Option<usize>,
    pub backend: String,
    pub counters: BTreeMap<String, u64>,
}

/// `show version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: String,
    pub unit: String,
    pub config: String,
    pub profile: String,
    /// Where the profile was read from (a path, or `built-in NAME`).
    pub profile_source: String,
    /// The backend in use (`afxdp-copy`, `io_uring`, ...).
    pub backend: String,
    /// `unit.backend` as configured (`auto`, `afxdp`, `io_uring`).
    pub backend_choice: String,
    /// Why this backend (what was tried and what failed).
    pub backend_reason: String,
    pub management_core: usize,
    pub worker_cores: Vec<usize>,
    pub uptime_s: u64,
}

/// What the daemon answers from; the server calls it on the management
/// thread's behalf. Tests implement it with fixed data.
pub trait ControlSource {
    fn version(&self) -> VersionView;
    fn interfaces(&self) -> Vec<InterfaceView>;
    fn routes(&self) -> Vec<RouteView>;
    fn arp(&self) -> Vec<ArpView>;
    fn counters(&self) -> CountersView;
    /// Answer a failover command ([`Command::is_failover`]); `None` when
    /// the unit has no `[failover]` section.
    fn failover(&self, _cmd: Command) -> Option<Response> {
        None
    }
    /// `config reload` (`force`: also on a standby unit).
    fn config_reload(&self, _force: bool) -> Response {
        Response::error("`config reload` is not available here")
    }
    /// `show conn`; `Err` names why not (a stateless unit).
    fn conns(&self) -> Result<ConnsView, String> {
        Err(NOT_STATEFUL.into())
    }
    /// `show conn count`.
    fn conn_count(&self) -> Result<ConnCountView, String> {
        Err(NOT_STATEFUL.into())
    }
    /// `show xlate`.
    fn xlates(&self) -> Result<XlatesView, String> {
        Err(NOT_STATEFUL.into())
    }
}

/// The answer of the stateful views on a stateless unit.
pub const NOT_STATEFUL: &str = "this unit is not stateful (no [[nat]], [[access_rule]], security_level, [timeouts] or `stateful = true` in its configuration)";

/// Most lines `show conn` and `show xlate` return (the answer stays well
/// under [`MAX_LINE`]); the counts are always complete.
pub const SHOW_CONN_LIMIT: usize = 2000;

/// One connection of `show conn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnLine {
    /// `tcp`, `udp`, `icmp`.
    pub proto: String,
    /// The originating side: its interface, address and port (ICMP: echo id).
    pub in_if: String,
    pub src: Ipv4Addr,
    pub sport: u16,
    /// The responding side, as the originator addressed it.
    pub out_if: String,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// The source as translated (PAT or static NAT); equal to src/sport without NAT.
    pub xlated_src: Ipv4Addr,
    pub xlated_sport: u16,
    /// The destination as translated (static de-NAT).
    pub xlated_dst: Ipv4Addr,
    pub xlated_dport: u16,
    /// TCP state (`ESTABLISHED`, …), `-` for UDP and ICMP.
    pub state: String,
    pub idle_ms: u64,
    /// Replicated to the mate (HTTP only with `replication_http`).
    pub replicated: bool,
    /// Forwarded by the flow-offload fast path (`flow_offload = true`).
    #[serde(default)]
    pub offloaded: bool,
}

/// `show conn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnsView {
    /// Connections in use (all workers).
    pub in_use: u64,
    /// The most in use at once since tandemd started.
    pub most_used: u64,
    /// At most [`SHOW_CONN_LIMIT`].
    pub conns: Vec<ConnLine>,
}

/// `show conn count`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnCountView {
    pub in_use: u64,
    /// High-water mark since start (sampled every second and at every query).
    pub most_used: u64,
    pub xlates: u64,
    pub sas: u64,
}

/// One PAT translation of `show xlate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XlateLine {
    pub proto: String,
    /// `pat`.
    pub kind: String,
    pub real: Ipv4Addr,
    pub real_port: u16,
    pub mapped: Ipv4Addr,
    pub mapped_port: u16,
    /// Connections using it.
    pub conns: u32,
    /// Since its last connection went (0 while in use).
    pub idle_ms: u64,
}

/// `show xlate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XlatesView {
    pub in_use: u64,
    /// High-water mark since start (sampled every second and at every query).
    pub most_used: u64,
    pub xlates: Vec<XlateLine>,
}

/// Answer one command from `src`.
pub fn execute(src: &dyn ControlSource, cmd: Command) -> Response {
    match cmd {
        Command::ShowInterface => Response::ok(src.interfaces()),
        Command::ShowRoute => Response::ok(src.routes()),
        Command::ShowArp => Response::ok(src.arp()),
        Command::ShowCounters => Response::ok(src.counters()),
        Command::ShowVersion => Response::ok(src.version()),
        Command::ShowConn => src.conns().map_or_else(Response::error, Response::ok),
        Command::ShowConnCount => src.conn_count().map_or_else(Response::error, Response::ok),
        Command::ShowXlate => src.xlates().map_or_else(Response::error, Response::ok),
        Command::ConfigReload => src.config_reload(false),
        Command::ConfigReloadForce => src.config_reload(true),
        c if c.is_failover() => src.failover(c).unwrap_or_else(|| {
            Response::error(format!(
                "`{c}`: failover is not configured on this unit (no [failover] section)"
            ))
        }),
        c => Response::error(format!("`{c}` is not available here")),
    }
}

/// `02:00:00:00:00:01`.
pub fn fmt_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `02:00:00:00:00:01` (as in /sys/class/net/DEV/address).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_unique_prefixes() {
        const ALL: &str = "show interface, show route, show arp, show counters, show version, show conn, show conn count, show xlate, show failover, show failover state, show failover history, show monitor-interface, failover active, no failover active, failover reset, no failover, failover, write standby, config reload, config reload force";
        let cases: &[(&str, Result<Command, String>)] = &[
            ("show interface", Ok(Command::ShowInterface)),
            ("  SHOW   Route ", Ok(Command::ShowRoute)),
            ("sh int", Ok(Command::ShowInterface)),
            ("sh ar", Ok(Command::ShowArp)),
            ("s cou", Ok(Command::ShowCounters)),
            ("sh conn c", Ok(Command::ShowConnCount)),
            ("sh x", Ok(Command::ShowXlate)),
            (
                "s c",
                Err("ambiguous command \"s c\": could be show counters, show conn".into()),
            ),
            ("show ver", Ok(Command::ShowVersion)),
            ("sh fail", Ok(Command::ShowFailover)),
            ("sh fail hist", Ok(Command::ShowFailoverHistory)),
            ("sh mon", Ok(Command::ShowMonitorInterface)),
            ("no fail act", Ok(Command::NoFailoverActive)),
            ("fail act", Ok(Command::FailoverActive)),
            ("failover", Ok(Command::Failover)),
            ("conf rel", Ok(Command::ConfigReload)),
            ("config reload force", Ok(Command::ConfigReloadForce)),
            ("", Err(format!("empty command; commands: {ALL}"))),
            (
                "show bogus",
                Err(format!("unknown command \"show bogus\"; commands: {ALL}")),
            ),
            (
                "show interface extra",
                Err(format!(
                    "unknown command \"show interface extra\"; commands: {ALL}"
                )),
            ),
            (
                "show",
                Err(format!("unknown command \"show\"; commands: {ALL}")),
            ),
        ];
        for (line, want) in cases {
            let got = Command::parse(line).map_err(|e| e.to_string());
            assert_eq!(&got, want, "{line:?}");
        }
        for (words, c, _) in COMMANDS {
            assert_eq!(c.words(), *words);
            assert_eq!(Command::parse(words), Ok(*c));
        }
    }

    #[test]
    fn failover_exec_parses_target_and_command_and_round_trips() {
        let e = |t, c| Command::Exec(Exec::new(t, c).unwrap());
        let cases = [
            (
                "failover exec mate show failover",
                e(ExecTarget::Mate, Command::ShowFailover),
            ),
            (
                "fail ex m sh fail hist",
                e(ExecTarget::Mate, Command::ShowFailoverHistory),
            ),
            (
                "failover exec active show route",
                e(ExecTarget::Active, Command::ShowRoute),
            ),
            (
                "fail exec st fail reset",
                e(ExecTarget::Standby, Command::FailoverReset),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Command::parse(line), Ok(want), "{line}");
            assert_eq!(Command::parse(want.words()), Ok(want));
            assert!(want.is_failover());
        }
        assert_eq!(
            Command::parse("failover exec mate show failover")
                .unwrap()
                .to_string(),
            "failover exec mate show failover"
        );
        for (_, c, _) in COMMANDS {
            for t in ExecTarget::ALL {
                let x = e(t, *c);
                assert_eq!(Command::parse(x.words()), Ok(x));
                let Command::Exec(ex) = x else { unreachable!() };
                assert_eq!(ex.command(), *c);
            }
        }
        // Missing target or command, bad command, nested exec.
        assert!(Command::parse("failover exec mate").is_err());
        assert!(Command::parse("failover exec bogus show failover")
            .unwrap_err()
            .to_string()
            .contains("needs a target"));
        assert!(Command::parse("failover exec mate show bogus").is_err());
        assert!(Command::parse("failover exec mate failover exec mate show failover").is_err());
        // Two words stay table commands.
        assert_eq!(Command::parse("failover"), Ok(Command::Failover));
        assert_eq!(Command::parse("fail act"), Ok(Command::FailoverActive));
    }

    #[test]
    fn ambiguous_prefix_lists_candidates_and_exact_match_wins() {
        let table: &[(&'static str, Command, &str)] = &[
            ("show counters", Command::ShowCounters, ""),
            ("show config", Command::ShowVersion, ""),
            ("show arp", Command::ShowArp, ""),
            ("show arpx", Command::ShowRoute, ""),
        ];
        assert_eq!(
            parse_in(table, "sh co").unwrap_err().to_string(),
            "ambiguous command \"sh co\": could be show counters, show config"
        );
        assert_eq!(parse_in(table, "sh cou"), Ok(Command::ShowCounters));
        assert_eq!(parse_in(table, "show arp"), Ok(Command::ShowArp));
        assert!(parse_in(table, "show ar").is_err());
    }

    #[test]
    fn response_json_shape() {
        let ok = serde_json::to_string(&Response::ok(vec![1, 2])).unwrap();
        assert_eq!(ok, r#"{"ok":true,"data":[1,2]}"#);
        let err = serde_json::to_string(&Response::error("nope")).unwrap();
        assert_eq!(err, r#"{"ok":false,"error":"nope"}"#);
    }

    #[test]
    fn macs() {
        let m = [0x02, 0, 0, 0xab, 0xcd, 0xef];
        assert_eq!(fmt_mac(m), "02:00:00:ab:cd:ef");
        assert_eq!(parse_mac("02:00:00:ab:cd:ef\n"), Some(m));
        assert_eq!(parse_mac("02:00:00:ab:cd"), None);
        assert_eq!(parse_mac("02:00:00:ab:cd:ef:00"), None);
        assert_eq!(parse_mac("zz:00:00:ab:cd:ef"), None);
    }
}

/// One unit in `show failover`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverHost {
    /// `Primary` / `Secondary`.
    pub role: String,
    /// `Active`, `Standby Ready`, `Failed`, ….
    pub state: String,
    /// Seconds in this state (this host) or since last heard (other host).
    pub age_ms: Option<u64>,
    pub failover_enabled: bool,
    pub failed_interfaces: usize,
    pub interfaces: Vec<FailoverInterface>,
}

/// One interface line of `show failover` / `show monitor-interface`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverInterface {
    pub name: String,
    pub ip: Option<String>,
    pub mac: Option<String>,
    /// `Normal`, `Testing`, `Failed`, `No Link`, `Link Down`, `Unknown`.
    pub status: String,
    pub monitored: bool,
}

/// One transition of `show failover history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTransition {
    /// Milliseconds since tandemd started.
    pub at_ms: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// `show failover`, `show failover state`, `show monitor-interface`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// `Failover On`.
    pub failover: bool,
    /// This unit's configured role.
    pub unit: String,
    /// Failover link name, device and informational addresses.
    pub link_name: String,
    pub link_device: String,
    pub link_active_ip: Option<String>,
    pub link_standby_ip: Option<String>,
    /// `up` / `no link` / `down`.
    pub link_carrier: String,
    /// Why the failover link is marked failed, if it is.
    pub link_failed: Option<String>,
    /// Secure session with the mate up on the failover link.
    pub link_session: bool,
    /// `encrypted (AES-256-GCM)` or `CLEAR TEXT`.
    pub link_protection: String,
    /// Frames refused from a mate (wrong key, clear text vs key, …).
    pub link_rejected: u64,
    /// The state link device (`None`: shared with the failover link).
    pub state_device: Option<String>,
    /// Why replicated state is stale, if it is.
    pub state_stale: Option<String>,
    pub unit_polltime_ms: u64,
    pub unit_holdtime_ms: u64,
    pub interface_polltime_ms: u64,
    pub interface_holdtime_ms: u64,
    pub link_state_polltime_ms: u64,
    pub interface_policy: String,
    pub monitored: usize,
    pub this_host: FailoverHost,
    pub other_host: Option<FailoverHost>,
    pub last_failover: Option<FailoverTransition>,
    pub term: u64,
    /// Configuration replication as this unit saw it last (`sent …`,
    /// `done: …`, `in progress …`, `failed: …`); `None` before any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sync: Option<String>,
    /// Stateful replication over the state link (stateful units only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::replication::ReplicationStatus>,
}

/// The answer of an operator failover command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandDone {
    pub message: String,
}
