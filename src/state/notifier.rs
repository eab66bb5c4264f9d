//! Notifications to the kernel, written asynchronously so that the loop never blocks on a
//! kernel lock held by a request it has yet to answer (fuse-protocol.md §4.2).
//!
//! A small pool of buffers; each notification is encoded into a free one and written to
//! `/dev/fuse` by an `IORING_OP_WRITE` flagged `IOSQE_ASYNC`, which io_uring runs on one
//! of its workers, never inline in the loop's `io_uring_enter`. The buffer returns to the
//! pool with the write's completion.

use rustix::fd::BorrowedFd;

use crate::abi::Errno;
use crate::abi::notify::NotifyError;
use crate::ring::Ring;
use crate::state::{Stats, Storage};

/// Most notifications in flight at once.
pub(crate) const MAX_NOTIFY: usize = 32;

pub(crate) struct Notifier {
    storage: Storage,
    size: usize,
    count: usize,
    /// Bit `k` set: buffer `k` is free.
    free: u32,
}

impl Notifier {
    /// `count` buffers of `size` bytes (at most [`MAX_NOTIFY`]).
    pub(crate) fn new(storage: Storage, count: usize, size: usize) -> Self {
        let count = count.min(MAX_NOTIFY).min(storage.len() / size.max(1));
        let free = if count == 32 {
            u32::MAX
        } else {
            (1u32 << count) - 1
        };
        Self {
            storage,
            size,
            count,
            free,
        }
    }

    /// Bytes needed for `count` buffers of `size`.
    pub(crate) const fn bytes(count: usize, size: usize) -> usize {
        count * size
    }

    /// Encodes a notification into a free buffer and queues its write.
    pub(crate) fn send(
        &mut self,
        ring: &mut Ring,
        fuse: BorrowedFd<'_>,
        stats: &mut Stats,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, NotifyError>,
    ) -> Result<(), Errno> {
        if self.free == 0 {
            return Err(Errno::EAGAIN);
        }
        let k = self.free.trailing_zeros() as usize;
        let start = k * self.size;
        let buf = self
            .storage
            .as_mut()
            .get_mut(start..start + self.size)
            .ok_or(Errno::EIO)?;
        let len = encode(buf).map_err(notify_errno)?;
        let msg = buf.get(..len).ok_or(Errno::EIO)?;
        let sqe = crate::sys::notify_write_sqe(fuse, msg, crate::state::tags::notify_user_data(k));
        crate::state::tags::push(ring, &sqe, stats)?;
        self.free &= !(1 << k);
        stats.notifications += 1;
        Ok(())
    }

    /// A notification write completed: its buffer is free again.
    pub(crate) fn completed(&mut self, k: usize, res: i32, stats: &mut Stats) {
        if k < self.count {
            self.free |= 1 << k;
        }
        if res < 0 {
            stats.notification_errors += 1;
        }
    }

    /// Whether writes are in flight.
    pub(crate) fn busy(&self) -> bool {
        let all = if self.count == 32 {
            u32::MAX
        } else {
            (1u32 << self.count) - 1
        };
        self.free != all
    }
}

/// The errno a notification encoding error stands for.
pub(crate) fn notify_errno(e: NotifyError) -> Errno {
    match e {
        NotifyError::BufferTooSmall { .. } | NotifyError::TooLarge => Errno::E2BIG,
        _ => Errno::EINVAL,
    }
}
