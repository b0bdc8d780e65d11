//! `TxBatches`: per-port arrays of frames waiting for transmit, preallocated
//! at start, handed to the backend with one `tx_burst` per port per flush.

use tandem_io::{Backend, Frame, PortId};

/// Per-port transmit batches of a worker.
///
/// A port's array holds `cap` frames; pushing onto a full one bursts it at
/// once (so a batch that fans out to one port, e.g. many held frames
/// released by one ARP reply, never needs more memory). Frames the backend
/// refuses are freed and counted `drop_tx_ring_full`.
pub struct TxBatches {
    ports: Vec<Vec<Frame>>,
    cap: usize,
    queued: usize,
    /// Frames accepted by the backend.
    pub tx: u64,
    /// Frames refused by the backend (TX ring full) and freed.
    pub drop_tx_ring_full: u64,
}

impl TxBatches {
    /// `ports` ports of `cap` frames each (`cap` ≥ 1).
    pub fn new(ports: usize, cap: usize) -> TxBatches {
        let cap = cap.max(1);
        TxBatches {
            ports: (0..ports).map(|_| Vec::with_capacity(cap)).collect(),
            cap,
            queued: 0,
            tx: 0,
            drop_tx_ring_full: 0,
        }
    }

    /// Queues `f` for transmit on `port`. A frame for a port this batch set
    /// does not have is freed (and counted as refused).
    #[inline]
    pub fn push(&mut self, backend: &mut dyn Backend, port: PortId, f: Frame) {
        let Some(q) = self.ports.get_mut(port) else {
            backend.free(f);
            self.drop_tx_ring_full += 1;
            return;
        };
        if q.len() == self.cap {
            self.burst(backend, port);
        }
        self.ports[port].push(f);
        self.queued += 1;
    }

    fn burst(&mut self, backend: &mut dyn Backend, port: PortId) {
        let q = &mut self.ports[port];
        if q.is_empty() {
            return;
        }
        let sent = backend.tx_burst(port, q).min(q.len());
        for &f in &q[sent..] {
            backend.free(f);
        }
        self.tx += sent as u64;
        self.drop_tx_ring_full += (q.len() - sent) as u64;
        self.queued -= q.len();
        q.clear();
    }

    /// One `tx_burst` per non-empty port. Does not call `backend.flush()`.
    pub fn flush(&mut self, backend: &mut dyn Backend) {
        if self.queued == 0 {
            return;
        }
        for port in 0..self.ports.len() {
            self.burst(backend, port);
        }
    }

    /// Frames queued on all ports.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Frames queued on one port.
    pub fn port_len(&self, port: PortId) -> usize {
        self.ports.get(port).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_io::mem::MemBackend;

    #[test]
    fn full_array_bursts_and_refused_frames_are_freed_and_counted() {
        let mut b = MemBackend::new(2, 16, 256, 3);
        let mut tx = TxBatches::new(2, 2);
        for _ in 0..5 {
            let f = b.alloc().unwrap();
            tx.push(&mut b, 1, f);
        }
        assert_eq!(tx.port_len(1), 1, "two early bursts of two");
        tx.flush(&mut b);
        assert_eq!(tx.tx, 3);
        assert_eq!(tx.drop_tx_ring_full, 2);
        assert!(tx.is_empty());
        assert_eq!(b.drain_tx(1, |_| {}), 3);
        assert_eq!(b.free_frames(), 16);
    }
}
