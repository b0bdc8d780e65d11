//! Smoke run of the connection-survival benchmark: every row (tandem's
//! stateful pair, keepalived + conntrackd, keepalived alone as the control)
//! with 10 connections and one trial. Each row must run and account for
//! every connection; tandem's pair must carry every one across the SIGKILL
//! of its active unit without a reset from the new active (issue 4's
//! acceptance); the control must lose every one (else the kernel setup is
//! not strict), and its resets must show as RSTs from the new active (else
//! the RST counter is blind). No assertion on the conntrackd row's outcome
//! or on any timing: that is what the benchmark reports.
//!
//! Needs root (network namespaces, XDP): skips outside CI, fails under
//! CI=true. Uses tandemd and tandemctl from this target directory, building
//! them (debug) when missing.

use bench::survival::{self, Binaries, Options, Row};

#[test]
fn every_survival_row_accounts_for_every_connection() {
    if !tandem_netns::have_privileges("both_survival_rows_account_for_every_connection") {
        return;
    }
    let mut say = |line: &str| eprintln!("survival smoke: {line}");
    let bins = Binaries::locate(false, &mut say).expect("tandem binaries");
    let opts = Options::smoke();
    let rows: Vec<_> = Row::ALL
        .into_iter()
        .map(|r| survival::run_row(r, &bins, &opts, &mut say))
        .collect();
    eprintln!("{}", survival::table(&rows));
    for r in &rows {
        assert!(r.failed.is_none(), "{}: {:?}", r.name, r.failed);
        assert_eq!(r.trials.len(), 1, "{}", r.name);
        let t = &r.trials[0];
        assert_eq!(t.established, opts.conns, "{}: {t:?}", r.name);
        assert_eq!(
            t.survived + t.reset + t.stalled + t.other,
            opts.conns,
            "{}: {t:?}",
            r.name
        );
        assert!(t.udp_outage_ms.is_some(), "{}: no UDP figure", r.name);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["name"], r.name.as_str());
    }
    let tandem = &rows[0].trials[0];
    assert_eq!(tandem.survived, opts.conns, "{tandem:?}");
    assert_eq!(tandem.rst_new_active, 0, "{tandem:?}");
    assert!(tandem.stall_max_ms.is_some(), "{tandem:?}");
    let control = &rows[2].trials[0];
    assert_eq!(control.survived, 0, "{control:?}");
    // Behind the control's forward filter only the new active's own stack
    // can reset a connection (answering the server's retransmissions to the
    // VIP): a reset with no RST counted means the counter is blind.
    if control.reset > 0 {
        assert!(control.rst_new_active > 0, "{control:?}");
    }
}
