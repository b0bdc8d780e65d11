//! `CommandTx`: the sending end of a worker's command queue that also wakes
//! the worker (its [`WakeFd`]) after every command it queues, so a worker
//! blocked in its backend handles a command within one iteration rather
//! than at the end of its idle wait (see `worker`'s module doc).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendError, SendTimeoutError, Sender, TrySendError};
use tandem_io::wake::WakeFd;

use crate::worker::Command;

/// A worker's command queue plus its wake-up. Same methods as the
/// crossbeam `Sender` it wraps; each wakes the worker after a successful send.
#[derive(Clone, Debug)]
pub(crate) struct CommandTx {
    tx: Sender<Command>,
    wake: Arc<WakeFd>,
}

impl CommandTx {
    pub(crate) fn new(tx: Sender<Command>, wake: Arc<WakeFd>) -> CommandTx {
        CommandTx { tx, wake }
    }

    /// Wakes the worker (after queueing something for it elsewhere).
    pub(crate) fn wake(&self) {
        self.wake.wake();
    }

    pub(crate) fn try_send(&self, cmd: Command) -> Result<(), TrySendError<Command>> {
        self.tx.try_send(cmd)?;
        self.wake.wake();
        Ok(())
    }

    pub(crate) fn send_timeout(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<Command>> {
        self.tx.send_timeout(cmd, timeout)?;
        self.wake.wake();
        Ok(())
    }

    pub(crate) fn send_deadline(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError<Command>> {
        self.tx.send_deadline(cmd, deadline)?;
        self.wake.wake();
        Ok(())
    }

    pub(crate) fn send(&self, cmd: Command) -> Result<(), SendError<Command>> {
        self.tx.send(cmd)?;
        self.wake.wake();
        Ok(())
    }
}
