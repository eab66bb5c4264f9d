//! What a completion is for: the top byte of an operation's `user_data` names its kind (a
//! slot's READ or reply, a native entry, a notification, the filesystem's own operation,
//! ...), the rest its index or the filesystem's tag. Every operation the loop or a handler
//! queues is tagged here, and [`push`] queues it.

use crate::abi::Errno;
use crate::ring::{PushError, Ring, Sqe};
use crate::state::Stats;

/// The top byte of a completion's `user_data` says what it belongs to.
pub(crate) const KIND_SHIFT: u32 = 56;
pub(crate) const KIND_READ: u64 = 1;
pub(crate) const KIND_WRITE: u64 = 2;
pub(crate) const KIND_NOTIFY: u64 = 3;
pub(crate) const KIND_STOP: u64 = 4;
pub(crate) const KIND_FS: u64 = 5;
pub(crate) const KIND_CANCEL: u64 = 6;
pub(crate) const KIND_ENTRY: u64 = 7;
pub(crate) const KIND_INIT: u64 = 8;
pub(crate) const KIND_IRQ: u64 = 9;
/// The end of a stop's grace for requests the filesystem holds.
pub(crate) const KIND_GRACE: u64 = 10;

pub(crate) const fn user_data(kind: u64, index: u64) -> u64 {
    (kind << KIND_SHIFT) | (index & ((1 << KIND_SHIFT) - 1))
}

pub(crate) const fn fs_user_data(tag: u64) -> u64 {
    user_data(KIND_FS, tag)
}

pub(crate) const fn notify_user_data(k: usize) -> u64 {
    user_data(KIND_NOTIFY, k as u64)
}

pub(crate) const fn split_user_data(ud: u64) -> (u64, u64) {
    (ud >> KIND_SHIFT, ud & ((1 << KIND_SHIFT) - 1))
}

/// Queues `sqe`, submitting what the queue holds first if it is full.
pub(crate) fn push(ring: &mut Ring, sqe: &Sqe, stats: &mut Stats) -> Result<(), Errno> {
    match ring.push(sqe) {
        Ok(()) => Ok(()),
        Err(PushError::Full) => {
            ring.submit().map_err(crate::sys::errno)?;
            stats.enters += 1;
            ring.push(sqe).map_err(|_| Errno::EBUSY)
        }
        Err(_) => Err(Errno::EINVAL),
    }
}
