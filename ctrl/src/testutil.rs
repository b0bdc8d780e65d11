//! Test helpers: a temporary directory removed on drop (no extra crate
//! needed for one directory).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, deleted with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tandem-ctrl-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

use std::net::Ipv4Addr;

use crate::api::{
    ArpView, Command, CommandDone, ControlSource, CountersView, FailoverHost, FailoverInterface,
    FailoverStatus, FailoverTransition, InterfaceView, Response, RouteView, VersionView,
    WorkerCounters,
};

fn fake_host(role: &str, state: &str, last: u8, age_ms: u64) -> FailoverHost {
    let i = |name: &str, net: u8| FailoverInterface {
        name: name.into(),
        ip: Some(format!("198.18.{net}.{last}")),
        mac: Some(format!("02:00:00:00:0{net}:0{last}")),
        status: "Normal".into(),
        monitored: net == 1,
    };
    FailoverHost {
        role: role.into(),
        state: state.into(),
        age_ms: Some(age_ms),
        failover_enabled: true,
        failed_interfaces: 0,
        interfaces: vec![i("outside", 1), i("inside", 2)],
    }
}

fn fake_transition() -> FailoverTransition {
    FailoverTransition {
        at_ms: 60,
        from: "Negotiation".into(),
        to: "Active".into(),
        reason: "no peer detected on the failover link for 60 ms after start".into(),
    }
}

/// The `show failover` data of [`FakeSource`]: an encrypted pair, this host
/// primary and active, the mate standby ready.
pub fn fake_failover() -> FailoverStatus {
    FailoverStatus {
        config_sync: None,
        replication: Some(fake_replication()),
        failover: true,
        unit: "Primary".into(),
        link_name: "folink".into(),
        link_device: "fo0".into(),
        link_active_ip: Some("198.18.3.1".into()),
        link_standby_ip: Some("198.18.3.2".into()),
        link_carrier: "up".into(),
        link_failed: None,
        link_session: true,
        link_protection: "encrypted (AES-256-GCM)".into(),
        link_rejected: 0,
        state_device: Some("st0".into()),
        state_stale: None,
        unit_polltime_ms: 1000,
        unit_holdtime_ms: 15000,
        interface_polltime_ms: 5000,
        interface_holdtime_ms: 25000,
        link_state_polltime_ms: 500,
        interface_policy: "1".into(),
        monitored: 1,
        this_host: fake_host("Primary", "Active", 1, 7_200_000),
        other_host: Some(fake_host("Secondary", "Standby Ready", 2, 3)),
        last_failover: Some(fake_transition()),
        term: 1,
    }
}

/// The replication block of [`fake_failover`]: the active side, mid bulk sync.
pub fn fake_replication() -> crate::replication::ReplicationStatus {
    use crate::replication::{ReplicationRole, ReplicationStatus, StreamStatus};
    ReplicationStatus {
        role: Some(ReplicationRole::Active),
        device: "st0 (EtherType 0x88B6)".into(),
        session: true,
        protection: "encrypted (AES-256-GCM)".into(),
        stale: false,
        ready: false,
        mate_ready: false,
        records_applied: 0,
        streams: vec![StreamStatus {
            stream: 0,
            frames_sent: Some(1200),
            lag_frames: Some(3),
            bulk_phase: "running".into(),
            bulk_done: 450,
            bulk_total: 1000,
            bulk_percent: 45,
            ..StreamStatus::default()
        }],
        counters: Default::default(),
        sender: Some(serde_json::json!({
            "frames_sent": 1200, "records_sent": 36000, "retransmits": 4,
            "naks_received": 1, "bulk_syncs": 1
        })),
        receiver: None,
        lag_frames: 3,
        bulk_phase: "running".into(),
        bulk_done: 450,
        bulk_total: 1000,
        bulk_percent: 45,
    }
}

/// A control source with fixed data: two interfaces, four routes, two ARP
/// entries, one worker's counters. Used by the protocol and rendering tests.
pub struct FakeSource;

impl ControlSource for FakeSource {
    fn version(&self) -> VersionView {
        VersionView {
            version: "0.1.0".into(),
            unit: "gw1".into(),
            config: "/etc/tandem/gw1.toml".into(),
            profile: "lab".into(),
            profile_source: "built-in lab".into(),
            backend: "afxdp-copy".into(),
            backend_choice: "auto".into(),
            backend_reason: "unit.backend = \"auto\" and AF_XDP opened as afxdp-copy on out0, in0 (XDP mode: out0 native, in0 native)".into(),
            management_core: 0,
            worker_cores: vec![1],
            uptime_s: 3725,
        }
    }

    fn interfaces(&self) -> Vec<InterfaceView> {
        vec![
            InterfaceView {
                name: "outside".into(),
                device: "out0".into(),
                mac: "02:00:00:00:01:01".into(),
                address: Ipv4Addr::new(198, 18, 1, 1),
                prefix_len: 24,
                mtu: 1500,
                admin_up: Some(true),
                link_up: Some(true),
            },
            InterfaceView {
                name: "inside".into(),
                device: "in0".into(),
                mac: "02:00:00:00:02:01".into(),
                address: Ipv4Addr::new(198, 18, 2, 1),
                prefix_len: 25,
                mtu: 1400,
                admin_up: Some(false),
                link_up: None,
            },
        ]
    }

    fn routes(&self) -> Vec<RouteView> {
        let r = |kind: &str, p: [u8; 4], len, nh: Option<[u8; 4]>, i: &str| RouteView {
            kind: kind.into(),
            prefix: Ipv4Addr::from(p),
            prefix_len: len,
            next_hop: nh.map(Ipv4Addr::from),
            interface: i.into(),
        };
        vec![
            r("connected", [198, 18, 1, 0], 24, None, "outside"),
            r("connected", [198, 18, 2, 0], 25, None, "inside"),
            r(
                "static",
                [0, 0, 0, 0],
                0,
                Some([198, 18, 1, 254]),
                "outside",
            ),
            r(
                "static",
                [198, 19, 0, 0],
                16,
                Some([198, 18, 2, 126]),
                "inside",
            ),
        ]
    }

    fn arp(&self) -> Vec<ArpView> {
        vec![
            ArpView {
                interface: "outside".into(),
                address: Ipv4Addr::new(198, 18, 1, 254),
                mac: Some("02:00:00:00:01:fe".into()),
                state: "reachable".into(),
                age_ms: 12_345,
            },
            ArpView {
                interface: "inside".into(),
                address: Ipv4Addr::new(198, 18, 2, 126),
                mac: None,
                state: "incomplete".into(),
                age_ms: 900,
            },
        ]
    }

    fn failover(&self, cmd: Command) -> Option<Response> {
        let done = |m: &str| {
            Response::ok(CommandDone {
                message: m.to_string(),
            })
        };
        Some(match cmd {
            Command::ShowFailoverHistory => Response::ok(vec![fake_transition()]),
            Command::FailoverActive => done("this unit is becoming active"),
            Command::NoFailoverActive => done("this unit is handing the active role to its mate"),
            Command::FailoverReset => done("failover reset"),
            Command::NoFailover => done("failover disabled on this unit"),
            Command::Failover => done("failover enabled on this unit"),
            Command::WriteStandby => done("configuration (512 bytes) sent to the standby"),
            _ => Response::ok(fake_failover()),
        })
    }

    fn conn_count(&self) -> Result<crate::api::ConnCountView, String> {
        Ok(crate::api::ConnCountView {
            in_use: 2,
            most_used: 1000,
            xlates: 1,
            sas: 0,
        })
    }

    fn conns(&self) -> Result<crate::api::ConnsView, String> {
        let ip = Ipv4Addr::new;
        Ok(crate::api::ConnsView {
            in_use: 2,
            most_used: 1000,
            conns: vec![
                crate::api::ConnLine {
                    proto: "tcp".into(),
                    in_if: "outside".into(),
                    src: ip(198, 18, 1, 10),
                    sport: 40000,
                    out_if: "inside".into(),
                    dst: ip(198, 18, 2, 10),
                    dport: 5001,
                    xlated_src: ip(198, 18, 2, 1),
                    xlated_sport: 61234,
                    xlated_dst: ip(198, 18, 2, 10),
                    xlated_dport: 5001,
                    state: "ESTABLISHED".into(),
                    idle_ms: 1500,
                    replicated: true,
                    offloaded: true,
                },
                crate::api::ConnLine {
                    proto: "udp".into(),
                    in_if: "outside".into(),
                    src: ip(198, 18, 1, 10),
                    sport: 5353,
                    out_if: "inside".into(),
                    dst: ip(198, 18, 1, 100),
                    dport: 53,
                    xlated_src: ip(198, 18, 1, 10),
                    xlated_sport: 5353,
                    xlated_dst: ip(198, 18, 2, 10),
                    xlated_dport: 53,
                    state: "-".into(),
                    idle_ms: 3_725_000,
                    replicated: false,
                    offloaded: false,
                },
            ],
        })
    }

    fn xlates(&self) -> Result<crate::api::XlatesView, String> {
        Ok(crate::api::XlatesView {
            in_use: 1,
            most_used: 1000,
            xlates: vec![crate::api::XlateLine {
                proto: "tcp".into(),
                kind: "pat".into(),
                real: Ipv4Addr::new(198, 18, 1, 10),
                real_port: 40000,
                mapped: Ipv4Addr::new(198, 18, 2, 1),
                mapped_port: 61234,
                conns: 1,
                idle_ms: 0,
            }],
        })
    }

    fn config_reload(&self, force: bool) -> Response {
        Response::ok(CommandDone {
            message: format!(
                "configuration reloaded: 1 change applied live: route 198.19.9.0/24 via 198.18.2.254 on inside: added{}",
                if force { "; this unit is now OUT OF SYNC with the active unit" } else { "; replicated to the mate (512 bytes)" }
            ),
        })
    }

    fn counters(&self) -> CountersView {
        let names = [
            "rx",
            "tx",
            "forwarded",
            "tx_garp",
            "drop_no_route",
            "drop_mtu",
        ];
        let values = [10u64, 8, 7, 3, 2, 0];
        CountersView {
            names: names.iter().map(|n| n.to_string()).collect(),
            workers: vec![WorkerCounters {
                worker: 0,
                core: Some(1),
                backend: "afxdp-copy".into(),
                counters: names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            }],
        }
    }
}
