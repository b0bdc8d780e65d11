//! Figures of a row, the median over runs, and the two output forms: the
//! comparison table and one JSON object per row per line (issue 2's
//! convention: a `name` string and every figure a number whose key carries
//! its unit).

use std::fmt::Write as _;

use serde::Serialize;

use super::{Options, RowKind, RowOutcome};

/// Above this share of the forwarding core taken by other processes, a run
/// is flagged as measured on a shared core.
pub const SHARED_CORE_PCT: f64 = 10.0;

/// Below this loss flat out, a row delivered about what the generator
/// offered: the generator, not the unit, set its pps (the sink side loses
/// a percent or two even then).
pub const OFFER_BOUND_LOSS_PCT: f64 = 5.0;

impl Figures {
    /// Did the generator, not the unit, set this row's flat-out pps?
    pub fn offer_bound(&self) -> bool {
        self.loss_pct < OFFER_BOUND_LOSS_PCT
    }
}

/// One run of a row (or the median of several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Frames per second delivered at the sink in the flat-out phase
    /// (received over the sender's running time).
    pub pps: f64,
    /// Frames per second the generator sent in that phase.
    pub offered_pps: f64,
    /// Frames per second the unit transmitted towards the server in that
    /// phase, whether the sink kept up or not: the unit's own rate.
    pub unit_pps: f64,
    /// Frames lost in the flat-out phase, percent of those sent.
    pub loss_pct: f64,
    /// One-way latency percentiles in the paced phase, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Frames lost in the paced phase, percent of those sent.
    pub latency_loss_pct: f64,
    /// Share of the forwarding core the unit's threads (its NAPI kthreads,
    /// tandemd) had in the flat-out phase, and what other processes took.
    pub unit_cpu_pct: f64,
    pub other_cpu_pct: f64,
    /// CPU time the unit's threads spent per frame the unit sent, in the
    /// flat-out phase: the unit's cost per frame, comparable between rows
    /// even when other processes took part of the forwarding core.
    pub unit_ns_per_frame: f64,
}

impl Figures {
    /// `unit_cpu_pct` of a core spread over `unit_pps` frames per second.
    pub fn ns_per_frame(unit_cpu_pct: f64, unit_pps: f64) -> f64 {
        if unit_pps > 0.0 {
            unit_cpu_pct / 100.0 * 1e9 / unit_pps
        } else {
            f64::NAN
        }
    }
}

/// Median of `v` (mean of the middle two for an even count); NaN if empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Figures {
    /// Each figure's median over `runs`, taken figure by figure.
    pub fn median_of(runs: &[Figures]) -> Figures {
        let col = |f: fn(&Figures) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        Figures {
            pps: col(|r| r.pps),
            offered_pps: col(|r| r.offered_pps),
            unit_pps: col(|r| r.unit_pps),
            loss_pct: col(|r| r.loss_pct),
            p50_us: col(|r| r.p50_us),
            p99_us: col(|r| r.p99_us),
            p999_us: col(|r| r.p999_us),
            latency_loss_pct: col(|r| r.latency_loss_pct),
            unit_cpu_pct: col(|r| r.unit_cpu_pct),
            other_cpu_pct: col(|r| r.other_cpu_pct),
            unit_ns_per_frame: col(|r| r.unit_ns_per_frame),
        }
    }
}

/// A row that ran.
#[derive(Clone, Debug)]
pub struct RowReport {
    pub kind: RowKind,
    /// Every run's figures, in order.
    pub runs: Vec<Figures>,
    /// The median over `runs`.
    pub median: Figures,
    /// The packet I/O backend tandemd reported (`show version`), tandem rows only.
    pub backend: Option<String>,
    /// What else is worth knowing about the row (pinning, tandemd counters).
    pub notes: Vec<String>,
}

/// The JSON line of a row.
#[derive(Serialize)]
struct JsonRow<'a> {
    name: &'a str,
    #[serde(flatten)]
    figures: Option<Figures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_kernel: Option<f64>,
    runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// pps of the plain kernel row, when it ran.
fn kernel_pps(rows: &[RowOutcome]) -> Option<f64> {
    rows.iter()
        .find(|r| r.kind == RowKind::Kernel)
        .and_then(|r| r.result.as_ref().ok())
        .map(|r| r.median.pps)
        .filter(|p| *p > 0.0)
}

/// The stateful bar (issue 4): tandem with conntrack + PAT forwards at least
/// the pps of the kernel's conntrack + masquerade, both measured in this run;
/// one line per stateful tandem row (backend) that ran.
/// Every row sends one UDP flow (pktgen `--flows 1`): one connection through
/// both stateful units.
fn stateful_bars(rows: &[RowOutcome]) -> Vec<String> {
    let pps = |k: RowKind| {
        rows.iter()
            .find(|r| r.kind == k)
            .and_then(|r| r.result.as_ref().ok())
            .map(|r| r.median.pps)
    };
    let Some(kernel) = pps(RowKind::KernelMasquerade).filter(|p| *p > 0.0) else {
        return Vec::new();
    };
    // A kernel row held to the generator's offer understates the kernel.
    let caveat = rows
        .iter()
        .find(|r| r.kind == RowKind::KernelMasquerade)
        .and_then(|r| r.result.as_ref().ok())
        .filter(|r| r.median.offer_bound())
        .map(|_| " (the kernel row forwarded all it was offered: its pps is a lower bound; compare ns/frame)")
        .unwrap_or("");
    RowKind::ALL
        .into_iter()
        .filter(|k| k.tandem_stateful())
        .filter_map(|k| {
            let ratio = pps(k)? / kernel;
            Some(format!(
                "bar: {} ≥ {} (one UDP flow = one connection in both): {ratio:.2}× — {}{caveat}",
                k.name(),
                RowKind::KernelMasquerade.name(),
                if ratio >= 1.0 { "PASS" } else { "FAIL" }
            ))
        })
        .collect()
}

/// One JSON object per row, one per line. A row that could not run has
/// `"error"` and no figures.
pub fn json_lines(rows: &[RowOutcome]) -> String {
    let base = kernel_pps(rows);
    let mut out = String::new();
    for r in rows {
        let row = match &r.result {
            Ok(rep) => JsonRow {
                name: r.kind.name(),
                figures: Some(rep.median),
                vs_kernel: base.map(|b| rep.median.pps / b),
                runs: rep.runs.len(),
                backend: rep.backend.as_deref(),
                error: None,
            },
            Err(e) => JsonRow {
                name: r.kind.name(),
                figures: None,
                vs_kernel: None,
                runs: 0,
                backend: None,
                error: Some(e.to_string()),
            },
        };
        // Serialising plain numbers and strings cannot fail.
        out.push_str(&serde_json::to_string(&row).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// The comparison table, with a header saying how it was measured and the
/// rows' notes and failures below it.
pub fn table(rows: &[RowOutcome], opts: &Options) -> String {
    let base = kernel_pps(rows);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "forwarding {}-byte UDP client → unit → server over veth; unit on core {}, \
         generator/sink on core {}",
        opts.frame_len, opts.forward_core, opts.traffic_core
    );
    if let Some(c) = opts.unit_napi_core.filter(|&c| c != opts.forward_core) {
        let _ = writeln!(
            s,
            "placement experiment (--unit-napi-core {c}): the unit's NAPI kthreads (out0, in0) \
             run on core {c}, not on the forwarding core, in every row"
        );
    }
    let _ = writeln!(
        s,
        "throughput: {:?} flat out; latency: {:?} at {} pps; median of {} run(s)",
        opts.duration, opts.latency_duration, opts.latency_rate_pps, opts.runs
    );
    let _ = writeln!(
        s,
        "pps: delivered to the sink; unit pps: sent by the unit towards the server \
         (also what the server side then dropped); loss%: of the offered frames;\n\
         core u/o%: share of the forwarding core used by the unit / by other processes \
         in the flat-out phase;\nns/frame: the unit's CPU time per frame it sent \
         (comparable between rows even on a shared core)\n"
    );
    let _ = writeln!(
        s,
        "{:<28} {:>10} {:>8} {:>10} {:>10} {:>7} {:>8} {:>8} {:>9} {:>10} {:>9}  backend",
        "row",
        "pps",
        "×kernel",
        "unit pps",
        "offered",
        "loss%",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "core u/o%",
        "ns/frame"
    );
    for r in rows {
        match &r.result {
            Ok(rep) => {
                let m = &rep.median;
                let ratio = base.map_or("-".to_string(), |b| format!("{:.2}", m.pps / b));
                let _ = writeln!(
                    s,
                    "{:<28} {:>10.0} {:>8} {:>10.0} {:>10.0} {:>7.1} {:>8.0} {:>8.0} {:>9.0} {:>10} {:>9.0}  {}",
                    r.kind.name(),
                    m.pps,
                    ratio,
                    m.unit_pps,
                    m.offered_pps,
                    m.loss_pct,
                    m.p50_us,
                    m.p99_us,
                    m.p999_us,
                    format!("{:.0}/{:.0}", m.unit_cpu_pct, m.other_cpu_pct),
                    m.unit_ns_per_frame,
                    rep.backend.as_deref().unwrap_or("kernel"),
                );
            }
            Err(_) => {
                let _ = writeln!(
                    s,
                    "{:<28} {:>10}  (could not run, see below)",
                    r.kind.name(),
                    "FAILED"
                );
            }
        }
    }
    for line in stateful_bars(rows) {
        let _ = writeln!(s, "{line}");
    }
    let mut notes = String::new();
    for r in rows {
        match &r.result {
            Ok(rep) => {
                if rep.runs.len() > 1 {
                    let pps: Vec<String> =
                        rep.runs.iter().map(|f| format!("{:.0}", f.pps)).collect();
                    let p99: Vec<String> = rep
                        .runs
                        .iter()
                        .map(|f| format!("{:.0}", f.p99_us))
                        .collect();
                    let _ = writeln!(
                        notes,
                        "  {}: runs pps [{}], p99 µs [{}]",
                        r.kind.name(),
                        pps.join(", "),
                        p99.join(", ")
                    );
                }
                if rep.median.other_cpu_pct > SHARED_CORE_PCT {
                    let _ = writeln!(
                        notes,
                        "  {}: WARNING: other processes had {:.0} % of the forwarding core \
                         (median): this row measured a shared core, not the unit",
                        r.kind.name(),
                        rep.median.other_cpu_pct
                    );
                }
                if rep.median.offer_bound() {
                    let _ = writeln!(
                        notes,
                        "  {}: delivered {:.1} % of the generator's offer using {:.0} % of the \
                         forwarding core: the generator set this rate, the unit can forward at \
                         least this much (compare ns/frame)",
                        r.kind.name(),
                        100.0 - rep.median.loss_pct,
                        rep.median.unit_cpu_pct
                    );
                }
                if rep.median.latency_loss_pct > 0.0 {
                    let _ = writeln!(
                        notes,
                        "  {}: {:.2} % lost in the paced phase",
                        r.kind.name(),
                        rep.median.latency_loss_pct
                    );
                }
                for n in &rep.notes {
                    let _ = writeln!(notes, "  {}: {n}", r.kind.name());
                }
            }
            Err(e) => {
                let _ = writeln!(notes, "  {}: FAILED: {e}", r.kind.name());
            }
        }
    }
    if !notes.is_empty() {
        let _ = write!(s, "\nnotes:\n{notes}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::BenchError;

    fn figures(pps: f64, p99: f64) -> Figures {
        Figures {
            pps,
            offered_pps: 2.0 * pps,
            unit_pps: 1.5 * pps,
            loss_pct: 50.0,
            p50_us: 10.0,
            p99_us: p99,
            p999_us: 2.0 * p99,
            latency_loss_pct: 0.0,
            unit_cpu_pct: 90.0,
            other_cpu_pct: 5.0,
            unit_ns_per_frame: 0.9e9 / (1.5 * pps),
        }
    }

    #[test]
    fn median_is_per_figure_and_handles_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
        let m = Figures::median_of(&[
            figures(100.0, 9.0),
            figures(300.0, 1.0),
            figures(200.0, 5.0),
        ]);
        assert_eq!((m.pps, m.p99_us, m.p999_us), (200.0, 5.0, 10.0));
        // 30 % of a core for 300 kpps: 1 µs of CPU per frame.
        assert!((Figures::ns_per_frame(30.0, 300_000.0) - 1000.0).abs() < 1e-6);
        assert!(Figures::ns_per_frame(30.0, 0.0).is_nan());
    }

    fn outcome(kind: RowKind, pps: Option<f64>) -> RowOutcome {
        RowOutcome {
            kind,
            result: match pps {
                Some(p) => Ok(RowReport {
                    kind,
                    runs: vec![figures(p, 50.0); 3],
                    median: figures(p, 50.0),
                    backend: kind.tandem_backend().map(|b| format!("{b}-copy")),
                    notes: vec!["pinned".into()],
                }),
                None => Err(BenchError::Tandemd("did not start".into())),
            },
        }
    }

    #[test]
    fn json_has_one_line_per_row_with_unit_keys_and_errors() {
        let rows = [
            outcome(RowKind::Kernel, Some(500_000.0)),
            outcome(RowKind::TandemAfXdp, Some(750_000.0)),
            outcome(RowKind::TandemIoUring, None),
        ];
        let out = json_lines(&rows);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["name"], "kernel");
        for key in ["pps", "loss_pct", "p50_us", "p99_us", "p999_us", "runs"] {
            assert!(lines[1][key].is_number(), "{key}: {}", lines[1]);
        }
        assert_eq!(lines[1]["vs_kernel"], 1.5);
        assert_eq!(lines[1]["backend"], "afxdp-copy");
        assert_eq!(lines[2]["name"], "tandem io_uring");
        assert!(lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("did not start"));
        assert!(lines[2].get("pps").is_none());
    }

    #[test]
    fn table_shows_every_row_and_says_why_one_failed() {
        let rows = [
            outcome(RowKind::Kernel, Some(500_000.0)),
            outcome(RowKind::TandemIoUring, None),
        ];
        let t = table(&rows, &Options::default());
        assert!(t.contains("kernel "), "{t}");
        assert!(t.contains("1.00"), "{t}");
        assert!(t.contains("tandem io_uring") && t.contains("FAILED"), "{t}");
        assert!(t.contains("did not start"), "{t}");
    }

    #[test]
    fn stateful_bar_judges_each_stateful_backend_against_masquerade() {
        let rows = [
            outcome(RowKind::KernelMasquerade, Some(200_000.0)),
            outcome(RowKind::TandemAfXdpPat, Some(190_000.0)),
            outcome(RowKind::TandemIoUringPat, Some(230_000.0)),
            outcome(RowKind::TandemIoUring, Some(400_000.0)),
        ];
        let bars = stateful_bars(&rows);
        assert_eq!(bars.len(), 2, "{bars:?}");
        assert!(bars[0].contains("afxdp+conntrack+PAT") && bars[0].contains("0.95× — FAIL"));
        assert!(bars[1].contains("io_uring+conntrack+PAT") && bars[1].contains("1.15× — PASS"));
        // Without the kernel's row there is nothing to compare with.
        assert!(stateful_bars(&rows[1..]).is_empty());
    }

    #[test]
    fn a_kernel_row_held_to_the_offer_is_called_a_lower_bound() {
        let mut rows = vec![
            outcome(RowKind::KernelMasquerade, Some(300_000.0)),
            outcome(RowKind::TandemAfXdpPat, Some(310_000.0)),
        ];
        // 50 % lost: saturated, no caveat.
        assert!(!stateful_bars(&rows)[0].contains("lower bound"));
        if let Ok(r) = rows[0].result.as_mut() {
            r.median.loss_pct = 2.0;
        }
        let bars = stateful_bars(&rows);
        assert!(
            bars[0].contains("1.03× — PASS") && bars[0].contains("lower bound"),
            "{bars:?}"
        );
        let t = table(&rows, &Options::default());
        assert!(
            t.contains("delivered 98.0 % of the generator's offer using 90 %"),
            "{t}"
        );
    }
}
