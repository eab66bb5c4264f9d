//! [`Cx`]: what a [`Filesystem`](crate::Filesystem) method can do besides answering its own
//! request — see who is asking, resume a deferred request, submit its own ring operations,
//! and notify the kernel.

use core::ffi::CStr;

use rustix::fd::BorrowedFd;

use crate::abi::Errno;
use crate::abi::flags::NotifyEntryFlags;
use crate::abi::notify::{self, NotifyError};
use crate::api::attr::NodeId;
use crate::api::reply::{Deferred, Lent, Reply};
use crate::ring::{Ring, Sqe};
use crate::state::Outcome;
use crate::state::notifier::Notifier;
use crate::state::slab::SlabView;
use crate::state::stats::Stats;

/// Who sent a request (`fuse_in_header`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Info {
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// The loop's parts a filesystem call may use.
pub(crate) struct Env<'a> {
    /// Reply buffers of the other slots, for [`Cx::resume`].
    pub slab: SlabView<'a>,
    /// Counts slots whose reply was resumed and must be sent after this call.
    pub resumed: &'a mut u32,
    /// The ring and the device, absent when no ring backs this session (in-memory tests).
    pub io: Option<Io<'a>>,
    /// Counters.
    pub stats: &'a mut Stats,
    /// The loop's id, carried by the tokens of the requests it defers (see `lost`).
    pub owner: u16,
}

/// The ring and the `/dev/fuse` descriptor.
pub(crate) struct Io<'a> {
    pub ring: &'a mut Ring,
    pub fuse: BorrowedFd<'a>,
    pub notifier: &'a mut Notifier,
}

/// Tags of ring operations a filesystem submits are its own, up to 2^56 − 1; the top byte
/// of `user_data` says whose a completion is.
pub const MAX_TAG: u64 = (1 << crate::state::tags::KIND_SHIFT) - 1;

/// Longest chain [`Cx::submit_linked`] takes.
pub const MAX_CHAIN: usize = 8;

/// The context of one filesystem call: the caller's identity and the loop's services.
pub struct Cx<'a> {
    pub(crate) info: Info,
    pub(crate) env: Env<'a>,
    /// In a request's own call: where its reply leaves its payload area if it defers, for
    /// a [`resume`](Self::resume) in the same call.
    pub(crate) lent: Option<&'a Lent<'a>>,
}

impl Cx<'_> {
    /// The request's `unique` (0 outside a request, for example in
    /// [`Filesystem::completion`](crate::Filesystem::completion)).
    pub fn unique(&self) -> u64 {
        self.info.unique
    }

    /// The node the request is about.
    pub fn node(&self) -> NodeId {
        NodeId(self.info.nodeid)
    }

    /// The calling process's user id (as mapped into the mount's user namespace).
    pub fn uid(&self) -> u32 {
        self.info.uid
    }

    /// The calling process's group id.
    pub fn gid(&self) -> u32 {
        self.info.gid
    }

    /// The calling process's id (0 for requests the kernel makes on its own, such as
    /// writeback).
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Turns a deferred request back into its reply, to answer it now — in a later call,
    /// or in the call that deferred it.
    ///
    /// `None` if the token is stale: the request was interrupted (the session already
    /// answered `EINTR`) — the slot is released all the same, so always resume a token
    /// once. (A token dropped without being resumed is answered `EIO`; see
    /// [`Deferred`].)
    pub fn resume<K>(&mut self, deferred: Deferred<K>) -> Option<Reply<'_, K>> {
        if deferred.owner != self.env.owner {
            // Another loop's token (per-CPU loops): it cannot be answered here. Dropped,
            // it is answered EIO by its own loop.
            return None;
        }
        if self.lent.is_some() && self.info.unique == deferred.unique {
            return self.resume_current(deferred);
        }
        let Some((area, meta)) = self.env.slab.reply_of(deferred.slot as usize) else {
            deferred.spend();
            return None;
        };
        if !meta.fs_holds || meta.unique != deferred.unique {
            deferred.spend();
            return None;
        }
        meta.fs_holds = false;
        meta.resumed = true;
        *self.env.resumed += 1;
        if meta.answered {
            // Answered by the session (EINTR after INTERRUPT), sent or about to be: the
            // token only frees the slot.
            deferred.spend();
            return None;
        }
        Some(Reply::resumed(area, &mut meta.outcome, deferred))
    }

    /// [`resume`](Self::resume) of the request this call is handling, which its reply just
    /// deferred: the answer is sent with the resumed replies after the call.
    fn resume_current<K>(&mut self, deferred: Deferred<K>) -> Option<Reply<'_, K>> {
        // `defer_into` lends no area (the filesystem holds it): the token, dropped here,
        // is answered EIO.
        let area = self.lent.and_then(Lent::take)?;
        let meta = self.env.slab.meta.get_mut(deferred.slot as usize)?;
        meta.unique = deferred.unique;
        meta.resumed = true;
        *self.env.resumed += 1;
        Some(Reply::resumed(area, &mut meta.outcome, deferred))
    }

    /// For the asynchronous adapter: marks the deferred request of `slot` (with `unique`)
    /// resumed and gives its outcome to set — `None` if it is stale or was answered by the
    /// session already (`EINTR` after INTERRUPT on the classic transport), when resuming
    /// only frees the slot.
    pub(crate) fn resume_outcome(&mut self, slot: u32, unique: u64) -> Option<&mut Outcome> {
        let (_, meta) = self.env.slab.reply_of(slot as usize)?;
        if !meta.fs_holds || meta.unique != unique {
            return None;
        }
        meta.fs_holds = false;
        meta.resumed = true;
        *self.env.resumed += 1;
        if meta.answered {
            return None;
        }
        Some(&mut meta.outcome)
    }

    /// Slot `slot`'s task area (for the asynchronous adapter), if the layout has them.
    pub(crate) fn task_area(&self, slot: u32) -> Option<(core::ptr::NonNull<u8>, usize)> {
        self.env.slab.task_area(slot as usize)
    }

    /// The slots of this loop.
    pub(crate) fn slot_count(&self) -> usize {
        self.env.slab.meta.len()
    }

    /// Submits what the ring holds now (for an operation dropped before its SQE was
    /// submitted: the kernel reads the paths it points at during submission).
    pub(crate) fn submit_now(&mut self) {
        if let Some(io) = self.env.io.as_mut() {
            if io.ring.submit().is_ok() {
                self.env.stats.enters += 1;
            }
        }
    }

    /// The reply buffer of a request this filesystem deferred, to fill in place while the
    /// request stays deferred: for example the target of a READ SQE of the backing file,
    /// so data goes from the backing file to the kernel with no copy. The slot stays
    /// reserved (and the buffer untouched by the loop) until the token is resumed; answer
    /// then with [`ReplyData::commit`](crate::ReplyData::commit)`(n)`. `None` for a stale
    /// token.
    ///
    /// Submitting a READ into this buffer needs `unsafe` ([`Sqe::read`]: the buffer must
    /// stay put until the read completes, and resuming the token early would free it). The
    /// safe form is an [`AsyncFilesystem`](crate::AsyncFilesystem), whose
    /// [`AsyncCx::read_at`](crate::AsyncCx::read_at) reads a backing file straight into
    /// the reply buffer and keeps the slot until the read is over.
    pub fn deferred_buffer<K>(&mut self, deferred: &Deferred<K>) -> Option<&mut [u8]> {
        let (area, meta) = self.env.slab.reply_of(deferred.slot as usize)?;
        if !meta.fs_holds || meta.answered || meta.unique != deferred.unique {
            return None;
        }
        let limit = (deferred.limit as usize).min(area.len());
        area.get_mut(..limit)
    }

    /// Cancels a ring operation this filesystem submitted with `tag`
    /// (`IORING_OP_ASYNC_CANCEL`): it completes early with `-ECANCELED` (or normally, if it
    /// was already done). Used when the loop is [`stopping`](crate::Filesystem::stopping).
    ///
    /// # Errors
    ///
    /// `EINVAL` for a tag above [`MAX_TAG`]; `EOPNOTSUPP` without a ring.
    pub fn cancel(&mut self, tag: u64) -> Result<(), Errno> {
        if tag > MAX_TAG {
            return Err(Errno::EINVAL);
        }
        let io = self.env.io.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        let sqe = crate::ring::Sqe::async_cancel(
            crate::state::tags::fs_user_data(tag),
            crate::ring::IoringAsyncCancelFlags::empty(),
        )
        .user_data(crate::state::tags::user_data(
            crate::state::tags::KIND_CANCEL,
            0,
        ));
        crate::state::tags::push(io.ring, &sqe, self.env.stats)?;
        self.env.stats.fs_ops_cancelled += 1;
        Ok(())
    }

    /// Submits a ring operation of the filesystem's own. Its completion comes back through
    /// [`Filesystem::completion`](crate::Filesystem::completion) with `tag` (at most
    /// [`MAX_TAG`]); the `user_data` set on `sqe` is replaced.
    ///
    /// The memory an operation points at must stay valid until its completion (the
    /// `unsafe` constructors of [`Sqe`] say so); the filesystem owns it.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a tag above [`MAX_TAG`]; `EOPNOTSUPP` where no ring backs the session
    /// (the in-memory transport); `EBUSY` if the submission queue is full even after
    /// submitting what it held; other errors of `io_uring_enter`.
    pub fn submit(&mut self, sqe: &Sqe, tag: u64) -> Result<(), Errno> {
        if tag > MAX_TAG {
            return Err(Errno::EINVAL);
        }
        let io = self.env.io.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        let sqe = sqe.user_data(crate::state::tags::fs_user_data(tag));
        crate::state::tags::push(io.ring, &sqe, self.env.stats)?;
        self.env.stats.fs_ops_in_flight += 1;
        Ok(())
    }

    /// Submits `chain` as one linked group: each operation after the first starts only
    /// once the one before it succeeded (`IOSQE_IO_LINK` is set on all but the last; a
    /// [`Sqe::link_timeout`] may be one of them). The group is queued whole or not at all —
    /// never split across two submits by a full queue, which would break the link. Each
    /// completes through [`Filesystem::completion`](crate::Filesystem::completion) with its
    /// own tag; a broken link completes the rest with `-ECANCELED`.
    ///
    /// # Errors
    ///
    /// `EINVAL` for an empty chain, one longer than [`MAX_CHAIN`], or a tag above
    /// [`MAX_TAG`]; `EOPNOTSUPP` without a ring; `EBUSY` if the queue has no room for the
    /// whole group even after submitting what it held (nothing is queued then).
    pub fn submit_linked(&mut self, chain: &[(&Sqe, u64)]) -> Result<(), Errno> {
        if chain.is_empty() || chain.len() > MAX_CHAIN || chain.iter().any(|&(_, t)| t > MAX_TAG) {
            return Err(Errno::EINVAL);
        }
        let io = self.env.io.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        let mut sqes = arrayvec::ArrayVec::<Sqe, MAX_CHAIN>::new();
        for (k, &(sqe, tag)) in chain.iter().enumerate() {
            let mut sqe = sqe.user_data(crate::state::tags::fs_user_data(tag));
            if k + 1 < chain.len() {
                sqe = sqe.flags(crate::ring::IoringSqeFlags::IO_LINK);
            }
            sqes.push(sqe);
        }
        match io.ring.push_all(&sqes) {
            Ok(()) => {}
            Err(crate::ring::PushError::Full) => {
                io.ring.submit().map_err(crate::sys::errno)?;
                self.env.stats.enters += 1;
                io.ring.push_all(&sqes).map_err(|_| Errno::EBUSY)?;
            }
            Err(_) => return Err(Errno::EINVAL),
        }
        self.env.stats.fs_ops_in_flight += chain.len() as u64;
        Ok(())
    }

    fn notify(
        &mut self,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, NotifyError>,
    ) -> Result<(), Errno> {
        let io = self.env.io.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        io.notifier.send(io.ring, io.fuse, self.env.stats, encode)
    }

    /// Tells the kernel that `node`'s attributes (and, if `offset >= 0`, its cached data
    /// from `offset` for `len` bytes, `len <= 0` meaning to the end) are stale
    /// (`FUSE_NOTIFY_INVAL_INODE`).
    ///
    /// Notifications are written asynchronously, on an io_uring worker, and never block
    /// the loop; a full notification queue answers `EAGAIN`. So one may be sent even from
    /// inside the handler of a request on the same directory or inode, while the kernel
    /// holds that inode's lock waiting for the reply (the case that deadlocks a server
    /// writing notifications synchronously, fuse-protocol.md §4.2): it takes effect once
    /// the reply has released the lock (`tests/notify`, `no_deadlock`).
    ///
    /// # Errors
    ///
    /// `EAGAIN` when every notification buffer is in flight; `EOPNOTSUPP` without a ring.
    pub fn notify_inval_inode(&mut self, node: NodeId, offset: i64, len: i64) -> Result<(), Errno> {
        self.notify(|b| notify::inval_inode(b, node.0, offset, len))
    }

    /// Registers `file` (an open regular file) as a kernel passthrough backing file
    /// (`FUSE_DEV_IOC_BACKING_OPEN`) and returns its id, for
    /// [`ReplyOpen::opened_passthrough`](crate::ReplyOpen::opened_passthrough): reads and
    /// writes of the FUSE file then go straight to `file` inside the kernel. Close the id
    /// with [`backing_close`](Self::backing_close) when no open needs it any more.
    ///
    /// # Errors
    ///
    /// `EPERM` without CAP_SYS_ADMIN or when `FUSE_PASSTHROUGH` was not negotiated (ask
    /// for it in [`Filesystem::init`](crate::Filesystem::init), without
    /// `WRITEBACK_CACHE`); `EOPNOTSUPP` for files whose filesystem cannot back
    /// passthrough, or without a device (the in-memory transport); `ELOOP` when stacked too
    /// deep.
    pub fn backing_open(&mut self, file: BorrowedFd<'_>) -> Result<i32, Errno> {
        let io = self.env.io.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        crate::sys::backing_open(io.fuse, file).map_err(crate::sys::errno)
    }

    /// Releases a backing id (`FUSE_DEV_IOC_BACKING_CLOSE`); files already opened with it
    /// keep their backing file.
    ///
    /// # Errors
    ///
    /// `ENOENT` for an unknown id; `EOPNOTSUPP` without a device.
    pub fn backing_close(&mut self, id: i32) -> Result<(), Errno> {
        let io = self.env.io.as_ref().ok_or(Errno::EOPNOTSUPP)?;
        crate::sys::backing_close(io.fuse, id).map_err(crate::sys::errno)
    }

    /// Tells the kernel to forget the name `parent/name` (`FUSE_NOTIFY_INVAL_ENTRY`);
    /// with `expire_only` it only expires it (needs a kernel offering `HAS_EXPIRE_ONLY`).
    ///
    /// # Errors
    ///
    /// As [`notify_inval_inode`](Self::notify_inval_inode); `EINVAL` for an invalid name.
    pub fn notify_inval_entry(
        &mut self,
        parent: NodeId,
        name: &CStr,
        expire_only: bool,
    ) -> Result<(), Errno> {
        let flags = if expire_only {
            NotifyEntryFlags::EXPIRE_ONLY
        } else {
            NotifyEntryFlags::EMPTY
        };
        self.notify(|b| notify::inval_entry(b, parent.0, name.to_bytes(), flags))
    }

    /// Tells the kernel that `parent/name`, which was `child`, is gone
    /// (`FUSE_NOTIFY_DELETE`).
    ///
    /// # Errors
    ///
    /// As [`notify_inval_entry`](Self::notify_inval_entry).
    pub fn notify_delete(
        &mut self,
        parent: NodeId,
        child: NodeId,
        name: &CStr,
    ) -> Result<(), Errno> {
        self.notify(|b| notify::delete(b, parent.0, child.0, name.to_bytes()))
    }

    /// Puts `data` into `node`'s page cache at `offset` (`FUSE_NOTIFY_STORE`).
    ///
    /// # Errors
    ///
    /// As [`notify_inval_inode`](Self::notify_inval_inode); `E2BIG` if `data` does not fit
    /// a notification buffer.
    pub fn notify_store(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.notify(|b| notify::store(b, node.0, offset, data))
    }

    /// Asks the kernel for `size` bytes of `node`'s cached data from `offset`
    /// (`FUSE_NOTIFY_RETRIEVE`); the answer arrives as
    /// [`Filesystem::retrieve_reply`](crate::Filesystem::retrieve_reply) with
    /// `notify_unique`.
    ///
    /// # Errors
    ///
    /// As [`notify_inval_inode`](Self::notify_inval_inode).
    pub fn notify_retrieve(
        &mut self,
        notify_unique: u64,
        node: NodeId,
        offset: u64,
        size: u32,
    ) -> Result<(), Errno> {
        self.notify(|b| notify::retrieve(b, notify_unique, node.0, offset, size))
    }

    /// Wakes the pollers waiting on `kh` (`FUSE_NOTIFY_POLL`), the handle a POLL request
    /// carried.
    ///
    /// # Errors
    ///
    /// As [`notify_inval_inode`](Self::notify_inval_inode).
    pub fn notify_poll(&mut self, kh: u64) -> Result<(), Errno> {
        self.notify(|b| notify::poll_wakeup(b, kh))
    }

    /// Invalidates every cached dentry at once (`FUSE_NOTIFY_INC_EPOCH`, 7.44).
    ///
    /// # Errors
    ///
    /// As [`notify_inval_inode`](Self::notify_inval_inode).
    pub fn notify_inc_epoch(&mut self) -> Result<(), Errno> {
        self.notify(notify::inc_epoch)
    }

    /// Asks the kernel to drop unused cached inodes of `nodes`, so that FORGETs follow
    /// (`FUSE_NOTIFY_PRUNE`, 7.45).
    ///
    /// # Errors
    ///
    /// As [`notify_store`](Self::notify_store).
    pub fn notify_prune(&mut self, nodes: &[u64]) -> Result<(), Errno> {
        self.notify(|b| notify::prune(b, nodes))
    }
}
