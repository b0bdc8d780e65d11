//! Smoke run of the forwarding macro benchmark: every row (kernel, kernel +
//! conntrack + masquerade, tandem AF_XDP, tandem io_uring) for about a
//! second, asserting that each one ran and produced numbers. No performance
//! assertion: this machine is shared and noisy.
//!
//! Needs root (network namespaces, XDP): skips outside CI, fails under
//! CI=true. Uses tandemd, tandemctl and pktgen from this target directory,
//! building them (debug) when missing.

use bench::forward::{self, report, Binaries, Options, RowKind};

#[test]
fn every_forward_row_produces_numbers() {
    if !tandem_netns::have_privileges("every_forward_row_produces_numbers") {
        return;
    }
    let mut say = |line: &str| eprintln!("forward smoke: {line}");
    let bins = Binaries::locate(false, &mut say).expect("tandem binaries");
    let opts = Options::smoke();
    let rows = forward::run(&opts, &bins, &mut say);
    eprintln!("{}", report::table(&rows, &opts));
    assert_eq!(rows.len(), RowKind::ALL.len());
    for r in &rows {
        let rep = match &r.result {
            Ok(rep) => rep,
            Err(e) => panic!("row {} did not run: {e}", r.kind.name()),
        };
        let m = &rep.median;
        assert_eq!(rep.runs.len(), 1, "{}", r.kind.name());
        assert!(m.pps > 0.0, "{}: {m:?}", r.kind.name());
        assert!(m.offered_pps > 0.0, "{}: {m:?}", r.kind.name());
        assert!(
            (0.0..=100.0).contains(&m.loss_pct),
            "{}: {m:?}",
            r.kind.name()
        );
        assert!(
            m.p99_us > 0.0 && m.p50_us <= m.p99_us && m.p99_us <= m.p999_us,
            "{}: {m:?}",
            r.kind.name()
        );
        if let Some(b) = r.kind.tandem_backend() {
            let chosen = rep.backend.as_deref().unwrap_or_default();
            assert!(chosen.starts_with(b), "{}: backend {chosen}", r.kind.name());
        }
    }
    let json = report::json_lines(&rows);
    assert_eq!(json.lines().count(), rows.len());
}
