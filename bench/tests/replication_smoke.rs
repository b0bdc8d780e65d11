//! Smoke run of the replication benchmark with small counts: every in-process row (apply with
//! and without AEAD, bulk sync with and without AEAD, memory per connection) and, as root, the
//! veth rows (bulk sync and lag over two real replication threads). Each row must run, apply
//! every record and produce its figures. No timing assertion: the verdicts are not checked
//! (this machine is shared and noisy, and a debug build is slow).

use bench::replication::{self, RowReport};

fn check(rows: &[RowReport]) {
    eprintln!("{}", replication::table(rows));
    for r in rows {
        assert!(r.failed.is_none(), "{}: {:?}", r.name, r.failed);
        assert!(r.pass.is_some(), "{}: no verdict", r.name);
        assert!(!r.figure.is_empty(), "{}", r.name);
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["name"], r.name.as_str());
    }
}

#[test]
fn in_process_rows_apply_every_record() {
    let rows = replication::smoke(3_000);
    check(&rows);
    assert_eq!(rows.len(), 6);
    let apply = &rows[0];
    // 3 000 connections, each with its new PAT xlate.
    assert_eq!(apply.records, Some(6_000));
    assert!(apply.records_per_s.is_some_and(|v| v > 0.0));
    assert!(rows[1].aead_ns_per_frame.is_some());
    assert!(rows[2].bulk_ms.is_some_and(|v| v > 0.0));
    assert_eq!(rows[2].records, Some(6_000));
    assert_eq!(rows[3].records, Some(6_000));
    assert!(rows[4]
        .bytes_per_conn
        .is_some_and(|b| b > 0.0 && b < 1024.0));
}

#[test]
fn pat_plan_keeps_each_mapped_address_half_full() {
    assert_eq!(replication::mapped_addresses(1), 1);
    assert_eq!(replication::mapped_addresses(32_768), 1);
    assert_eq!(replication::mapped_addresses(32_769), 2);
    assert_eq!(replication::mapped_addresses(1_000_000), 32);
    assert_eq!(replication::mapped_addresses(replication::MAX_CONNS), 64);
}

#[test]
fn veth_rows_bulk_sync_and_measure_lag() {
    if !tandem_netns::have_privileges("veth_rows_bulk_sync_and_measure_lag") {
        return;
    }
    let rows = replication::smoke_veth(2_000);
    check(&rows);
    assert_eq!(rows[0].records, Some(4_000));
    let lag = &rows[1];
    assert!(lag.conns.is_some_and(|n| n > 0));
    assert!(lag.p50_us.is_some() && lag.p99_us >= lag.p50_us && lag.max_us >= lag.p99_us);
    // The lab profile's cores exist wherever the lab tests run: the rows place the threads
    // as tandemd does.
    for r in &rows {
        assert!(
            r.note.contains("placed as tandemd's lab profile does"),
            "{}",
            r.note
        );
    }
}
