//! In-memory backend: ports are queues in plain memory. Used by unit tests,
//! the deterministic simulation and micro-benchmarks. It follows the same
//! ownership contract as the kernel backends, so code tested here behaves
//! the same on AF_XDP.

use std::collections::VecDeque;
use std::time::Duration;

use crate::offload::{FlowOffload, MemFlowTable};
use crate::pool::FramePool;
use crate::region::Region;
use crate::{Backend, BackendStats, Frame, PortId};

struct MemPort {
    rx: VecDeque<Frame>,
    tx: VecDeque<Frame>,
    /// Maximum frames queued for transmit before `tx_burst` refuses (models a TX ring).
    tx_ring: usize,
}

/// In-memory backend with `ports` ports sharing one frame memory.
pub struct MemBackend {
    mem: Region,
    pool: FramePool,
    ports: Vec<MemPort>,
    stats: BackendStats,
    /// The kernel side's flow-offload table, when set: `inject` runs the
    /// model of the XDP program first, as the kernel would.
    flows: Option<MemFlowTable>,
}

impl MemBackend {
    /// `frame_count` slots of `frame_size` bytes shared by `ports` ports;
    /// each port's TX ring holds `tx_ring` frames.
    pub fn new(ports: usize, frame_count: u32, frame_size: u32, tx_ring: usize) -> MemBackend {
        let mem = Region::new(frame_count as usize * frame_size as usize, false)
            .expect("in-memory frame region");
        let cap = frame_count as usize;
        MemBackend {
            mem,
            pool: FramePool::new(frame_count, frame_size),
            ports: (0..ports)
                .map(|_| MemPort {
                    rx: VecDeque::with_capacity(cap),
                    tx: VecDeque::with_capacity(cap),
                    tx_ring,
                })
                .collect(),
            stats: BackendStats::default(),
            flows: None,
        }
    }

    /// Gives this backend a flow-offload table: from now on a frame
    /// [`MemBackend::inject`]ed that the table matches is rewritten and
    /// queued for transmit on its egress port at once, as tandem's XDP
    /// program does, and never seen by `rx_burst`.
    pub fn set_flow_offload(&mut self, table: MemFlowTable) {
        self.flows = Some(table);
    }

    /// The flow-offload table (to set its clock or read it in tests).
    pub fn flow_table(&mut self) -> Option<&mut MemFlowTable> {
        self.flows.as_mut()
    }

    fn slot(&self, addr: u64) -> usize {
        (addr - addr % self.pool.frame_size() as u64) as usize
    }

    /// Copy `bytes` into a free frame and queue it for receive on `port`.
    /// Returns false (and counts `rx_dropped`) when no frame is free or the
    /// bytes do not fit.
    pub fn inject(&mut self, port: PortId, bytes: &[u8]) -> bool {
        if bytes.len() > self.pool.frame_size() as usize {
            self.stats.rx_dropped += 1;
            return false;
        }
        let Some(mut f) = self.pool.alloc() else {
            self.stats.rx_dropped += 1;
            return false;
        };
        let at = self.slot(f.addr);
        let frame = &mut self.mem.as_mut_slice()[at..at + bytes.len()];
        frame.copy_from_slice(bytes);
        f.len = bytes.len() as u32;
        match self.flows.as_mut().and_then(|t| t.forward(port, frame)) {
            // The fast path's redirect: straight to the egress, no ring limit.
            Some(egress) if egress < self.ports.len() => self.ports[egress].tx.push_back(f),
            Some(_) => self.pool.free(f.addr),
            None => self.ports[port].rx.push_back(f),
        }
        true
    }

    /// Hand every frame transmitted on `port` to `each`, in order, and free it.
    pub fn drain_tx(&mut self, port: PortId, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(f) = self.ports[port].tx.pop_front() {
            each(self.frame(f));
            self.pool.free(f.addr);
            n += 1;
        }
        n
    }

    /// Move every frame transmitted on `from` to the receive queue of `to`
    /// without copying: a wire between two ports (benchmarks use this to
    /// keep a steady load without allocation).
    pub fn wire_tx_to_rx(&mut self, from: PortId, to: PortId) -> usize {
        let mut n = 0;
        while let Some(f) = self.ports[from].tx.pop_front() {
            self.ports[to].rx.push_back(f);
            n += 1;
        }
        n
    }

    /// Frames waiting to be received on `port`.
    pub fn rx_pending(&self, port: PortId) -> usize {
        self.ports[port].rx.len()
    }

    /// Frames transmitted on `port` not yet drained.
    pub fn tx_pending(&self, port: PortId) -> usize {
        self.ports[port].tx.len()
    }

    /// Free frames in the pool (to check that nothing leaks).
    pub fn free_frames(&self) -> usize {
        self.pool.available()
    }
}

impl Backend for MemBackend {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn port_count(&self) -> usize {
        self.ports.len()
    }

    fn frame_size(&self) -> usize {
        self.pool.frame_size() as usize
    }

    fn rx_burst(&mut self, port: PortId, out: &mut [Frame]) -> usize {
        let q = &mut self.ports[port].rx;
        let n = out.len().min(q.len());
        for slot in out.iter_mut().take(n) {
            *slot = q.pop_front().expect("length checked");
        }
        self.stats.rx += n as u64;
        n
    }

    fn tx_burst(&mut self, port: PortId, frames: &[Frame]) -> usize {
        let p = &mut self.ports[port];
        let room = p.tx_ring.saturating_sub(p.tx.len());
        let n = frames.len().min(room);
        p.tx.extend(frames[..n].iter().copied());
        self.stats.tx += n as u64;
        if n < frames.len() {
            self.stats.tx_ring_full += 1;
        }
        n
    }

    fn frame(&self, f: Frame) -> &[u8] {
        let at = self.slot(f.addr);
        &self.mem.as_slice()[at..at + f.len as usize]
    }

    fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        let at = self.slot(f.addr);
        let size = self.pool.frame_size() as usize;
        &mut self.mem.as_mut_slice()[at..at + size]
    }

    fn alloc(&mut self) -> Option<Frame> {
        let f = self.pool.alloc();
        if f.is_none() {
            self.stats.alloc_failed += 1;
        }
        f
    }

    fn free(&mut self, f: Frame) {
        self.pool.free(f.addr);
    }

    fn flush(&mut self) {}

    fn wait(&mut self, _timeout: Duration) {}

    fn stats(&self) -> BackendStats {
        self.stats
    }

    fn flow_offload(&mut self) -> Option<&mut dyn FlowOffload> {
        self.flows.as_mut().map(|t| t as &mut dyn FlowOffload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_receive_transmit_drain_returns_every_frame() {
        let mut b = MemBackend::new(2, 8, 2048, 4);
        assert!(b.inject(0, b"hello"));
        let mut batch = [Frame::default(); 4];
        assert_eq!(b.rx_burst(0, &mut batch), 1);
        assert_eq!(b.frame(batch[0]), b"hello");
        b.frame_mut(batch[0])[0] = b'j';
        assert_eq!(b.tx_burst(1, &batch[..1]), 1);
        let mut seen = Vec::new();
        b.drain_tx(1, |bytes| seen.push(bytes.to_vec()));
        assert_eq!(seen, vec![b"jello".to_vec()]);
        assert_eq!(b.free_frames(), 8);
    }

    #[test]
    fn full_tx_ring_refuses_the_tail_and_counts_it() {
        let mut b = MemBackend::new(1, 8, 2048, 2);
        let fs: Vec<_> = (0..3).map(|_| b.alloc().unwrap()).collect();
        assert_eq!(b.tx_burst(0, &fs), 2);
        assert_eq!(b.stats().tx_ring_full, 1);
        b.free(fs[2]);
    }

    #[test]
    fn pool_exhaustion_drops_injected_frames() {
        let mut b = MemBackend::new(1, 2, 256, 2);
        assert!(b.inject(0, &[1]));
        assert!(b.inject(0, &[2]));
        assert!(!b.inject(0, &[3]));
        assert_eq!(b.stats().rx_dropped, 1);
        assert!(!b.inject(0, &[0; 300]));
    }
}
