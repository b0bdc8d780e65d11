//! The replication bench's in-process rows, each on the calling thread (one core): records/s
//! decoded and applied on a standby (without and with the secure link's AEAD), bulk sync from
//! `Shard::bulk` to the last record applied, and the shard's memory per connection.

use std::time::Instant;

use super::fixture::{self, LinkPair, Out, Pipe, Standby};
use super::{mega, BenchError, RowReport, BAR_APPLY, BAR_BULK, BAR_MEMORY};

/// Capacity for `conns` connections: a little headroom, at least 1024.
fn capacity(conns: u64) -> u32 {
    u32::try_from(conns + conns / 16)
        .unwrap_or(u32::MAX)
        .max(1024)
}

/// The two apply rows: one encoded stream, replayed into a fresh standby once in the clear and
/// once through seal + open.
pub fn apply_rows(conns: u64, say: &mut dyn FnMut(&str)) -> Vec<RowReport> {
    const PLAIN: &str = "apply: decode + apply, 1 core";
    const AEAD: &str = "apply + AEAD seal/open, 1 core";
    say(&format!(
        "apply: opening {conns} connections on the active shard (PAT over {} addresses)",
        fixture::mapped_addresses(conns)
    ));
    match apply(conns) {
        Ok(rows) => rows.to_vec(),
        Err(e) => vec![
            RowReport::failed(PLAIN, BAR_APPLY, BenchError::Setup(e.to_string())),
            RowReport::failed(AEAD, BAR_APPLY, e),
        ],
    }
}

fn apply(conns: u64) -> Result<[RowReport; 2], BenchError> {
    let cfg = fixture::config(capacity(conns), conns);
    let mut active = fixture::shard(&cfg, 1)?;
    // The packet path's records (conn + new PAT xlate per SYN) into live frames; a ring of 2
    // frames: the arena keeps them, the sender only stamps them.
    let mut pipe = Pipe::new(Out::Arena(Default::default()), 8, 2)?;
    pipe.bulk_begin(0);
    pipe.bulk_end();
    for i in 0..conns {
        fixture::open(&mut active, 0, i, &mut pipe)?;
    }
    if let Some(e) = &pipe.error {
        return Err(BenchError::Setup(format!("encoding: {e}")));
    }
    let Out::Arena(arena) = pipe.into_out() else {
        return Err(BenchError::Setup("no frames".into()));
    };
    let frames = arena.frames.len();
    let records = arena.records;

    let epoch = Instant::now();
    let mut standby = Standby::new(&cfg)?;
    let t0 = Instant::now();
    for i in 0..frames {
        let now = fixture::ns_since(epoch);
        standby.deliver(now, arena.frame(i));
    }
    let plain = t0.elapsed().as_secs_f64();
    standby.check()?;
    verify(&standby, records, conns)?;

    let mut standby = Standby::new(&cfg)?;
    let mut link = LinkPair::new()?;
    let t0 = Instant::now();
    for i in 0..frames {
        let now = fixture::ns_since(epoch);
        let f = link.carry(now, arena.frame(i), true)?;
        standby.deliver(now, f);
    }
    let sealed = t0.elapsed().as_secs_f64();
    standby.check()?;
    verify(&standby, records, conns)?;

    let bytes: usize = arena.frames.iter().map(|r| r.len()).sum();
    let avg = bytes as f64 / frames.max(1) as f64;
    let rps = records as f64 / plain;
    let rps_aead = records as f64 / sealed;
    let aead_ns = (sealed - plain).max(0.0) * 1e9 / frames.max(1) as f64;
    let note = format!(
        "{records} records ({conns} conns + their PAT xlates, from SYNs committed on a real \
         active shard, PAT over {} mapped addresses) in {frames} frames of {avg:.0} B avg; \
         Receiver::handle_frame + Shard::apply into an empty standby shard",
        fixture::mapped_addresses(conns)
    );
    Ok([
        RowReport {
            name: "apply: decode + apply, 1 core".into(),
            records_per_s: Some(rps),
            records: Some(records),
            conns: Some(conns),
            figure: format!("{} records/s", mega(rps)),
            bar: BAR_APPLY.into(),
            pass: Some(rps >= 1e6),
            note,
            ..RowReport::default()
        },
        RowReport {
            name: "apply + AEAD seal/open, 1 core".into(),
            records_per_s: Some(rps_aead),
            records: Some(records),
            conns: Some(conns),
            aead_ns_per_frame: Some(aead_ns),
            figure: format!("{} records/s", mega(rps_aead)),
            bar: BAR_APPLY.into(),
            pass: Some(rps_aead >= 1e6),
            note: format!(
                "the same frames sealed (active) and opened (standby) with AES-256-GCM on this \
                 one core, then decoded and applied: {aead_ns:.0} ns of AEAD per {avg:.0}-byte \
                 frame"
            ),
            ..RowReport::default()
        },
    ])
}

/// Every record applied and the standby holds every connection.
fn verify(s: &Standby, records: u64, conns: u64) -> Result<(), BenchError> {
    let (c, x, _) = s.shard.counts();
    if s.applied != records || c as u64 != conns {
        return Err(BenchError::Setup(format!(
            "standby applied {} of {records} records, holds {c} of {conns} connections \
             ({x} xlates)",
            s.applied
        )));
    }
    Ok(())
}

/// Bulk sync of `conns` connections in process: from BULK_BEGIN on the active shard to the
/// last record applied on the standby, everything on this thread (encode, sequence, [seal,
/// open,] decode, apply, ACK back).
pub fn bulk_row(conns: u64, aead: bool, say: &mut dyn FnMut(&str)) -> RowReport {
    let name = if aead {
        "bulk sync, in process + AEAD, 1 core"
    } else {
        "bulk sync, in process, 1 core"
    };
    say(&format!("{name}: {conns} connections"));
    match bulk(conns, aead) {
        Ok((secs, records)) => {
            // The bar is for 1 M connections: scale a smaller run linearly for the verdict.
            let per_million = secs * 1e6 / conns.max(1) as f64;
            RowReport {
                name: name.into(),
                bulk_ms: Some(secs * 1e3),
                records: Some(records),
                conns: Some(conns),
                records_per_s: Some(records as f64 / secs),
                figure: format!("{:.0} ms / {} conns", secs * 1e3, short(conns)),
                bar: BAR_BULK.into(),
                pass: Some(per_million <= 2.0),
                note: format!(
                    "Shard::bulk → FrameEncoder → Sender → {}Receiver → Shard::apply, ACKs back; \
                     {records} records ({} records/s){}",
                    if aead { "seal/open → " } else { "" },
                    mega(records as f64 / secs),
                    if conns < 1_000_000 {
                        format!("; verdict scaled to 1 M: {:.2} s", per_million)
                    } else {
                        String::new()
                    }
                ),
                ..RowReport::default()
            }
        }
        Err(e) => RowReport::failed(name, BAR_BULK, e),
    }
}

/// `1000000` → `1 M`, `20000` → `20 k`.
pub(crate) fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{} k", n / 1000)
    } else {
        n.to_string()
    }
}

fn bulk(conns: u64, aead: bool) -> Result<(f64, u64), BenchError> {
    let cfg = fixture::config(capacity(conns), conns);
    let mut active = fixture::shard(&cfg, 1)?;
    fixture::fill(&mut active, 0, 0..conns)?;
    let standby = Box::new(Standby::new(&cfg)?);
    let link = if aead {
        Some(Box::new(LinkPair::new()?))
    } else {
        None
    };
    // Pool and ring as a worker has them (SyncSettings: 1024 buffers per worker).
    let mut pipe = Pipe::new(Out::Apply { standby, link }, 1024, 768)?;
    let epoch = Instant::now();
    let (c, x, s) = active.counts();
    pipe.now = fixture::ns_since(epoch);
    let t0 = Instant::now();
    pipe.bulk_begin((c + x + s) as u64);
    let mut cursor = tandem_state::BulkCursor::default();
    loop {
        // One batch per clock reading, as a worker interleaves bulk batches with packets.
        pipe.now = fixture::ns_since(epoch);
        if active.bulk(&mut cursor, pipe.now, &mut pipe, 256).finished {
            break;
        }
    }
    pipe.bulk_end();
    let secs = t0.elapsed().as_secs_f64();
    if let Some(e) = &pipe.error {
        return Err(BenchError::Setup(format!("{} lost: {e}", pipe.lost)));
    }
    let Out::Apply { standby, .. } = &pipe.out else {
        return Err(BenchError::Setup("no standby".into()));
    };
    standby.check()?;
    let (sc, sx, _) = standby.shard.counts();
    if !standby.bulk_done || sc != c || sx != x {
        return Err(BenchError::Setup(format!(
            "standby holds {sc} of {c} connections and {sx} of {x} xlates (bulk complete: {})",
            standby.bulk_done
        )));
    }
    Ok((secs, standby.applied))
}

/// Memory per connection including its xlate and both index slots, from the shard's own
/// accounting, at the lab profile's table size and at `conns`.
pub fn memory_rows(conns: u64) -> Vec<RowReport> {
    let mut rows = Vec::new();
    for (what, cap) in [
        ("lab profile", 262_144u32),
        (
            "bench size",
            u32::try_from(conns).unwrap_or(u32::MAX).max(1024),
        ),
    ] {
        let name = format!("memory per conn, {what} ({})", short(u64::from(cap)));
        let cfg = fixture::config(cap, conns);
        match fixture::shard(&cfg, 3) {
            Ok(s) => {
                let bytes = s.conn_memory_bytes();
                let per = bytes as f64 / f64::from(cap);
                rows.push(RowReport {
                    name,
                    bytes_per_conn: Some(per),
                    table_bytes: Some(bytes as u64),
                    conns: Some(u64::from(cap)),
                    figure: format!("{per:.0} B/conn"),
                    bar: BAR_MEMORY.into(),
                    pass: Some(per <= 256.0),
                    note: format!(
                        "Shard::conn_memory_bytes {:.1} MiB for {cap} conn + {cap} xlate slots \
                         with their index slots and free lists",
                        bytes as f64 / (1 << 20) as f64
                    ),
                    ..RowReport::default()
                });
            }
            Err(e) => rows.push(RowReport::failed(&name, BAR_MEMORY, e)),
        }
    }
    rows
}
