//! A deterministic two-unit simulation of the state link: the active unit's encoders and
//! sender, the standby's receiver, and two one-way links with latency and seeded loss,
//! duplication and reordering. Time is simulated; nothing sleeps.
#![allow(dead_code)]

use tandem_sync::wire::FLAG_BULK;
use tandem_sync::*;

/// splitmix64: small, seedable, good enough to pick which frames to drop.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// Link impairments, per mille.
#[derive(Clone, Copy, Default)]
pub struct Impair {
    pub loss: u64,
    pub dup: u64,
    pub reorder: u64,
}

pub const LATENCY: u64 = 50_000; // 50 µs one way
pub const STEP: u64 = 20_000;

/// One direction of the link: frames in flight with their arrival time.
#[derive(Default)]
pub struct Wire {
    inflight: Vec<(u64, u64, Vec<u8>)>,
    order: u64,
    pub impair: Impair,
    pub sent: u64,
    pub dropped: u64,
    /// Drop the next `n` frames unconditionally (targeted loss).
    pub drop_next: u32,
}

impl Wire {
    pub fn push(&mut self, now: u64, bytes: &[u8], rng: &mut Rng) {
        self.sent += 1;
        if self.drop_next > 0 {
            self.drop_next -= 1;
            self.dropped += 1;
            return;
        }
        if rng.chance(self.impair.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.chance(self.impair.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let extra = if rng.chance(self.impair.reorder) {
                LATENCY * (1 + rng.next() % 4)
            } else {
                0
            };
            self.order += 1;
            self.inflight
                .push((now + LATENCY + extra, self.order, bytes.to_vec()));
        }
    }

    /// Frames due at `now`, in arrival order.
    pub fn due(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut due: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut i = 0;
        while i < self.inflight.len() {
            if self.inflight[i].0 <= now {
                due.push(self.inflight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|&(t, o, _)| (t, o));
        due.into_iter().map(|(_, _, b)| b).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }
}

/// A received record, as the test's model of a shard sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub stream: u16,
    pub kind: u8,
    pub op: u8,
    pub payload: Vec<u8>,
    pub bulk: bool,
}

pub struct Pair {
    pub now: u64,
    pub rng: Rng,
    pub pool: BufPool,
    pub encoders: Vec<FrameEncoder>,
    pub tx: Sender,
    pub rx: Receiver,
    pub a2b: Wire,
    pub b2a: Wire,
    pub got: Vec<Got>,
    pub deliveries: Vec<String>,
    pub events: Vec<SenderEvent>,
    /// Answer BulkNeeded automatically with an empty bulk (begin + end).
    pub auto_bulk: bool,
}

pub const FRAME: usize = 1464;

impl Pair {
    pub fn new(streams: u16, seed: u64) -> Pair {
        Self::with(
            SenderConfig::new(0xA11C_E001, streams),
            ReceiverConfig::new(streams),
            seed,
        )
    }

    pub fn with(tx: SenderConfig, rx: ReceiverConfig, seed: u64) -> Pair {
        let streams = tx.streams;
        Pair {
            now: 1_000_000,
            rng: Rng(seed),
            pool: BufPool::new(usize::from(streams) * (tx.ring_frames + 4), FRAME),
            encoders: (0..streams)
                .map(|s| FrameEncoder::new(s, FRAME).unwrap())
                .collect(),
            tx: Sender::new(tx).unwrap(),
            rx: Receiver::new(rx).unwrap(),
            a2b: Wire::default(),
            b2a: Wire::default(),
            got: Vec::new(),
            deliveries: Vec::new(),
            events: Vec::new(),
            auto_bulk: true,
        }
    }

    /// Restarts the active unit's sender with a new epoch (its rings are lost).
    pub fn restart_sender(&mut self, epoch: u32) {
        let mut cfg = *self.tx.config();
        cfg.epoch = epoch;
        self.tx = Sender::new(cfg).unwrap();
        let streams = self.encoders.len();
        self.pool = BufPool::new(streams * (cfg.ring_frames + 4), FRAME);
    }

    /// Writes a record on `stream`, finishing and sending the frame when full.
    pub fn put(&mut self, stream: u16, kind: u8, key: u64, payload: &[u8]) {
        let enc = &mut self.encoders[usize::from(stream)];
        if !enc.has_buffer() {
            let b = self.pool.get().expect("pool exhausted");
            let _ = enc.begin(b, false);
        }
        match enc.put(self.now, kind, 1, key, payload) {
            Put::Written | Put::Coalesced => {}
            Put::Full => {
                self.flush(stream);
                let enc = &mut self.encoders[usize::from(stream)];
                let b = self.pool.get().expect("pool exhausted");
                let _ = enc.begin(b, false);
                assert_eq!(enc.put(self.now, kind, 1, key, payload), Put::Written);
            }
            Put::Oversize => panic!("oversize record"),
        }
    }

    /// Finishes and sends the open frame of `stream`, if it has records.
    pub fn flush(&mut self, stream: u16) {
        let enc = &mut self.encoders[usize::from(stream)];
        if let Some(frame) = enc.finish() {
            let bytes = self.tx.send(self.now, frame).unwrap().to_vec();
            self.a2b.push(self.now, &bytes, &mut self.rng);
        }
        while let Some(b) = self.tx.take_free() {
            self.pool.put(b);
        }
    }

    pub fn flush_all(&mut self) {
        for s in 0..self.encoders.len() as u16 {
            self.flush(s);
        }
    }

    /// Sends an empty bulk (the table model in these tests is the live stream itself).
    pub fn empty_bulk(&mut self, stream: u16) {
        let b = self.pool.get().unwrap();
        let f = self.tx.bulk_begin(self.now, stream, 0, b).unwrap().to_vec();
        self.a2b.push(self.now, &f, &mut self.rng);
        let b = self.pool.get().unwrap();
        let f = self.tx.bulk_end(self.now, stream, b).unwrap().to_vec();
        self.a2b.push(self.now, &f, &mut self.rng);
    }

    /// A bulk of `entries` records (kind 9, key i, payload = i), paced by nothing.
    pub fn bulk(&mut self, stream: u16, entries: u64) {
        let b = self.pool.get().unwrap();
        let f = self
            .tx
            .bulk_begin(self.now, stream, entries, b)
            .unwrap()
            .to_vec();
        self.a2b.push(self.now, &f, &mut self.rng);
        let mut enc = FrameEncoder::new(stream, FRAME).unwrap();
        let _ = enc.begin(self.pool.get().unwrap(), true);
        for i in 0..entries {
            let p = i.to_be_bytes();
            if enc.put(self.now, 9, 1, i, &p) == Put::Full {
                let frame = enc.finish().unwrap();
                let bytes = self.tx.send(self.now, frame).unwrap().to_vec();
                self.a2b.push(self.now, &bytes, &mut self.rng);
                let _ = enc.begin(self.pool.get().unwrap(), true);
                assert_eq!(enc.put(self.now, 9, 1, i, &p), Put::Written);
            }
        }
        if let Some(frame) = enc.finish() {
            let bytes = self.tx.send(self.now, frame).unwrap().to_vec();
            self.a2b.push(self.now, &bytes, &mut self.rng);
        }
        if let Some(b) = enc.take_buffer() {
            self.pool.put(b);
        }
        let b = self.pool.get().unwrap();
        let f = self.tx.bulk_end(self.now, stream, b).unwrap().to_vec();
        self.a2b.push(self.now, &f, &mut self.rng);
    }

    /// One time step: deliver what is due both ways, poll both machines.
    pub fn step(&mut self) {
        self.now += STEP;
        for f in self.a2b.due(self.now) {
            match self.rx.handle_frame(self.now, &f) {
                Delivery::Records {
                    stream,
                    bulk,
                    records,
                    ..
                } => {
                    for r in records {
                        self.got.push(Got {
                            stream,
                            kind: r.kind,
                            op: r.op,
                            payload: r.payload.to_vec(),
                            bulk,
                        });
                    }
                    self.deliveries.push("records".into());
                }
                other => self.deliveries.push(format!("{other:?}")),
            }
        }
        for f in self.b2a.due(self.now) {
            let _ = self.tx.handle_control(self.now, &f);
        }
        let mut out = [0u8; 64];
        while let Some(n) = self.rx.poll_control(self.now, &mut out) {
            self.b2a.push(self.now, &out[..n], &mut self.rng);
        }
        while let Some(ev) = self.tx.poll_event() {
            self.events.push(ev);
            if self.auto_bulk {
                let SenderEvent::BulkNeeded { stream, .. } = ev;
                self.empty_bulk(stream);
            }
        }
        loop {
            let now = self.now;
            let Some(f) = self.tx.poll_retransmit(now) else {
                break;
            };
            let f = f.to_vec();
            self.a2b.push(self.now, &f, &mut self.rng);
        }
        while let Some(b) = self.tx.take_free() {
            self.pool.put(b);
        }
    }

    /// Steps until both links are empty and nothing is outstanding, at most `max` steps.
    pub fn settle(&mut self, max: u32) {
        for _ in 0..max {
            self.step();
            if self.a2b.is_empty() && self.b2a.is_empty() && self.tx.lag_frames() == 0 {
                // A last round so pending ACKs go out.
                self.step();
                if self.a2b.is_empty() && self.b2a.is_empty() && self.tx.lag_frames() == 0 {
                    return;
                }
            }
        }
    }

    /// Joins: the receiver requests, the sender answers with empty bulks, until ready.
    pub fn join(&mut self) {
        self.settle(1000);
        assert!(self.rx.ready(), "receiver not ready after the join bulk");
        self.got.clear();
        self.deliveries.clear();
        self.events.clear();
    }
}

/// The 8-byte payload counter records of the live tests carry.
pub fn counter(p: &[u8]) -> u64 {
    u64::from_be_bytes(p[..8].try_into().unwrap())
}

pub fn is_bulk_flag(frame: &[u8]) -> bool {
    frame[10] & FLAG_BULK != 0
}
