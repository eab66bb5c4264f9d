//! The executor under [`Async`](crate::Async): futures stored in slot memory, their ring
//! operations, and wakers that need no allocation.
//!
//! # How a future is stored, polled and woken
//!
//! Every slot of a loop serving an [`AsyncFilesystem`](crate::AsyncFilesystem) carries a
//! task area after its reply buffer (`state/slab.rs`), allocated with the other buffers when the
//! loop starts. A request's future is written there (`place`) when the request arrives,
//! together with a [`TaskHeader`]: the request's [`AsyncCx`] (who asks, and a table of up to
//! [`MAX_OPS`] ring operations in flight) and two function pointers, instantiated for the
//! future's concrete type, that poll and drop it in place. Nothing is boxed: the future's
//! type is known where it is created, and erased only into those two pointers. Whether it
//! fits is checked at compile time where it is created (`Async::start`); its address never
//! changes until it is dropped, which is what `Pin` asks.
//!
//! The future is polled once at once, inside the call that delivered the request; if it
//! completes, the request is answered in that call, like a synchronous one. Otherwise the
//! request is deferred and the future is polled again each time one of its ring operations
//! completes (the loop hands the completion to the filesystem, which routes it by its tag:
//! slot and operation) — no waker is involved in that path. Other wake-ups (a future
//! waiting on something another task does) go through a [`Waker`] whose data is a number
//! (the loop's wake id and the slot): `wake` sets a bit in a static table of atomics
//! (`WOKEN`), which the filesystem drains after each call; if bits stay set (a future that
//! woke itself), a NOP on the ring makes sure the loop comes back for them. A waker never
//! points into memory that can go away, so one kept past its task (or its session) only
//! causes a spurious poll of whatever then runs in that slot, which futures must tolerate.
//! A wake from another thread sets its bit at once but is seen only at the loop's next
//! event.
//!
//! # The rule that keeps buffers valid
//!
//! A slot is handed back to the loop (its reply sent, its buffers reused) only when its
//! future has completed or been dropped **and** every ring operation it submitted has
//! completed. An INTERRUPT or a stop cancels a request: each of its operations in flight
//! gets an `IORING_OP_ASYNC_CANCEL`, its future keeps running and sees them end
//! (`ECANCELED`, or their result if they had completed), new operations fail at once, and
//! the future is dropped when it ends — or as soon as it has nothing in flight, if it
//! waits on something else — so what it owns (descriptors, `Rc`s, buffers its operations
//! use) is released by its own code after the kernel let go of it. The request is then
//! answered `EINTR` (interrupt) or `EIO` (stop), whatever the future returned
//! ([`AsyncCx::is_cancelled`]). An operation whose future is dropped early (a `select`)
//! is cancelled and marked orphaned; its slot waits for its completion. So
//! anything an operation points at that lives in the slot — the request's names and WRITE
//! data, the reply buffer a READ fills ([`ReadBuf`]), an operation's scratch space (a
//! `statx` result) — stays valid until the kernel is done with it. Buffers that live
//! elsewhere are not covered by this rule, which is why the safe operations accept only
//! slot buffers ([`IoBuf`]) or data the kernel copies when the SQE is submitted (paths,
//! `open_how`, timeouts: `IORING_FEAT_SUBMIT_STABLE`; an operation dropped before its SQE
//! was submitted submits it at once).
//!
//! This module, `asyncfs/mod.rs` and `asyncfs/adapter.rs` are where that rule is
//! implemented; each `unsafe` block says which part of it it relies on.
#![allow(unsafe_code)]

use core::cell::{Cell, UnsafeCell};
use core::ffi::CStr;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use core::time::Duration;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags, RenameFlags, ResolveFlags, Statx};
use rustix::io_uring::{IoringFsyncFlags, IoringSqeFlags, IoringTimeoutFlags, open_how};

use crate::abi::Errno;
use crate::api::attr::NodeId;
use crate::api::cx::{Cx, Info};
use crate::ring::Sqe;
use crate::state::Outcome;

/// Most ring operations one request's future may have in flight at once; one more
/// answers `EBUSY`.
pub const MAX_OPS: usize = 8;

/// Scratch bytes per operation, for results the kernel writes when the operation runs (a
/// `struct statx` is 256 bytes).
const SCRATCH_WORDS: usize = 32;

/// A task's tag for the loop: the slot in the upper bits, the operation in the low byte.
pub(crate) const fn op_tag(slot: u32, op: usize) -> u64 {
    ((slot as u64) << 8) | (op as u64 & 0xff)
}

/// The tag of the NOP that brings the loop back for woken tasks (above every op tag).
pub(crate) const WAKE_TAG: u64 = crate::api::cx::MAX_TAG;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpState {
    Free,
    /// Submitted (or queued); the future waits for it.
    InFlight,
    /// Completed; the future has not looked yet.
    Done,
    /// Its future was dropped; the slot waits for its completion.
    Orphaned,
}

/// One ring operation of a task.
struct OpCell {
    state: Cell<OpState>,
    res: Cell<i32>,
    flags: Cell<u32>,
    /// Written by the kernel while the operation runs (through a pointer in its SQE), read
    /// by the operation's future once it completed; never borrowed across either. Left
    /// uninitialized when a request starts (8 × 256 bytes less to zero per request): an
    /// operation that uses it writes it whole first (`build_openat2`, `build_statx`).
    scratch: UnsafeCell<MaybeUninit<[u64; SCRATCH_WORDS]>>,
}

impl OpCell {
    const fn free() -> Self {
        Self {
            state: Cell::new(OpState::Free),
            res: Cell::new(0),
            flags: Cell::new(0),
            scratch: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

/// What an asynchronous handler can do besides computing its answer: see who is asking,
/// run ring operations on the loop's own ring, notify the kernel, register passthrough
/// backing files. Handed to every [`AsyncFilesystem`](crate::AsyncFilesystem) method; it
/// lives in the request's slot for as long as the request's future.
///
/// Every operation is a future that submits one SQE when first polled and is ready when
/// its completion arrives; the SQEs a pass of the loop queues go to the kernel in the
/// loop's next single `io_uring_enter`. Dropping an operation's future before it is ready
/// cancels it (`IORING_OP_ASYNC_CANCEL`); the request is answered only once the kernel is
/// done with it (module docs of `task`, "The rule that keeps buffers valid").
///
/// Errors of the operations are the kernel's (`-res` of the completion), plus `EBUSY` when
/// [`MAX_OPS`] are already in flight for this request and `EOPNOTSUPP` without a ring (the
/// in-memory [`Harness`](crate::testing::Harness)).
pub struct AsyncCx {
    info: Info,
    slot: u32,
    /// The loop's context while the filesystem runs (during a poll or a drop of this
    /// request's future), null otherwise.
    cur: Cell<*mut Cx<'static>>,
    ops: [OpCell; MAX_OPS],
    in_flight: Cell<u8>,
    /// Set when the request was interrupted or the session stops: the answer it will get
    /// (`EINTR`, `EIO`); operations in flight were cancelled and new ones fail.
    cancelled: Cell<Option<Errno>>,
}

impl AsyncCx {
    pub(crate) fn new(info: Info, slot: u32) -> Self {
        Self {
            info,
            slot,
            cur: Cell::new(core::ptr::null_mut()),
            ops: [const { OpCell::free() }; MAX_OPS],
            in_flight: Cell::new(0),
            cancelled: Cell::new(None),
        }
    }

    /// The request's `unique`.
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

    /// The calling process's id (0 for requests the kernel makes on its own).
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// Operations of this request submitted and not completed yet (orphaned ones
    /// included).
    pub(crate) fn ops_in_flight(&self) -> u8 {
        self.in_flight.get()
    }

    /// Whether the request was interrupted, or the session is stopping: its operations in
    /// flight were cancelled (they end with `ECANCELED`, or their result if they had
    /// completed), new ones fail with `ECANCELED` at once, and whatever the future answers
    /// the kernel gets `EINTR` (interrupt) or `EIO` (stop). So a future that makes state
    /// the kernel must learn of (a node it counts a lookup of, an open file handle) checks
    /// this after its last `.await` and, if set, undoes it instead: nothing can cancel the
    /// request between that check and the answer.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.get().is_some()
    }

    /// The answer a cancelled request gets instead of an error.
    pub(crate) fn cancel_answer(&self) -> Option<Errno> {
        self.cancelled.get()
    }

    /// Cancels the request: every operation in flight gets an `IORING_OP_ASYNC_CANCEL`
    /// (its future stays and sees it end), and none can start any more.
    pub(crate) fn cancel_request(&self, answer: Errno) {
        if self.cancelled.get().is_none() {
            self.cancelled.set(Some(answer));
        }
        for (k, cell) in self.ops.iter().enumerate() {
            if matches!(cell.state.get(), OpState::InFlight | OpState::Orphaned) {
                let tag = op_tag(self.slot, k);
                let _ = self.with_cx(|cx| cx.cancel(tag));
            }
        }
    }

    /// Runs `f` with the loop's context, if the filesystem is running.
    fn with_cx<T>(&self, f: impl FnOnce(&mut Cx<'_>) -> T) -> Option<T> {
        let p = self.cur.get();
        if p.is_null() {
            return None;
        }
        // SAFETY:
        // - `cur` is set by `Async` to the `&mut Cx` of the call it is in, only for the
        //   duration of a poll or a drop of this request's future, and cleared before that
        //   call returns (`CurGuard`), so the pointer is live and its target is not used
        //   by the caller meanwhile (the caller is inside that poll or drop);
        // - the `&mut` made here ends with `f`, which calls only `Cx` methods that never
        //   reach back into tasks, so no second `&mut` to it exists at the same time.
        let cx = unsafe { &mut *p };
        Some(f(cx))
    }

    /// The loop's context pointer, to restore after a nested set (`CurGuard`).
    pub(crate) fn enter(&self, cx: &mut Cx<'_>) -> CurGuard<'_> {
        let prev = self
            .cur
            .replace(core::ptr::from_mut(cx).cast::<Cx<'static>>());
        CurGuard { acx: self, prev }
    }

    /// A completion for operation `op` of this task. Returns true if the future should be
    /// polled (it was waiting for it), false if the operation was orphaned (its slot only
    /// waited for it).
    pub(crate) fn complete(&self, op: usize, res: i32, flags: u32) -> bool {
        let Some(cell) = self.ops.get(op) else {
            return false;
        };
        match cell.state.get() {
            OpState::InFlight => {
                cell.res.set(res);
                cell.flags.set(flags);
                cell.state.set(OpState::Done);
                self.in_flight.set(self.in_flight.get().saturating_sub(1));
                true
            }
            OpState::Orphaned => {
                cell.state.set(OpState::Free);
                self.in_flight.set(self.in_flight.get().saturating_sub(1));
                false
            }
            OpState::Free | OpState::Done => false,
        }
    }

    /// Submits `build(scratch)` as operation `k`.
    fn start(&self, build: impl FnOnce(*mut u64) -> Sqe) -> Result<usize, Errno> {
        if self.cancelled.get().is_some() {
            return Err(Errno::ECANCELED);
        }
        let k = self
            .ops
            .iter()
            .position(|c| c.state.get() == OpState::Free)
            .ok_or(Errno::EBUSY)?;
        let cell = self.ops.get(k).ok_or(Errno::EBUSY)?;
        let sqe = build(cell.scratch.get().cast::<u64>());
        let tag = op_tag(self.slot, k);
        self.with_cx(|cx| cx.submit(&sqe, tag))
            .unwrap_or(Err(Errno::EOPNOTSUPP))?;
        cell.state.set(OpState::InFlight);
        self.in_flight.set(self.in_flight.get().saturating_add(1));
        Ok(k)
    }

    /// A ring operation: `sqe` is submitted when the future is first polled; it yields the
    /// completion's `res` (`>= 0`, or the error) and CQE flags. The `user_data` set on
    /// `sqe` is replaced.
    ///
    /// The memory `sqe` points at must stay valid until its completion, even if this
    /// future is dropped first (the `unsafe` constructors of [`Sqe`] say so): that is the
    /// promise made when the SQE was built. Slot buffers ([`ReadBuf`], [`WriteBuf`]) keep
    /// it by themselves; memory of the filesystem's own must outlive the operation.
    pub fn submit(&self, sqe: Sqe) -> Op<'_> {
        Op {
            cx: self,
            sqe: Some(sqe),
            k: None,
            _scratch: PhantomData,
        }
    }

    fn op_with(&self, build: BuildFn, args: Args) -> OpWith<'_> {
        OpWith {
            cx: self,
            build: Some((build, args)),
            k: None,
        }
    }

    /// `pread(fd, buf, offset)` into a slot buffer, which comes back with the result (if
    /// this future is dropped first, so is the buffer: nothing can look at it while the
    /// kernel may still write it).
    pub async fn read_at<'b>(
        &self,
        fd: BorrowedFd<'_>,
        buf: ReadBuf<'b>,
        offset: u64,
    ) -> (Result<usize, Errno>, ReadBuf<'b>) {
        self.read_at_with(fd, buf, offset, IoringSqeFlags::empty())
            .await
    }

    /// [`read_at`](Self::read_at) with SQE flags: `IOSQE_ASYNC` sends it to an io-wq
    /// worker at once instead of trying it inline first (for files whose reads can wait
    /// inside `io_uring_enter`, such as those of a FUSE filesystem opened `direct_io`).
    pub async fn read_at_with<'b>(
        &self,
        fd: BorrowedFd<'_>,
        mut buf: ReadBuf<'b>,
        offset: u64,
        flags: IoringSqeFlags,
    ) -> (Result<usize, Errno>, ReadBuf<'b>) {
        let (ptr, len) = (buf.ptr, buf.len);
        // SAFETY:
        // - `ptr..ptr + len` is a slot buffer (`ReadBuf`), which stays valid until this
        //   operation's completion is reaped even if this future is dropped (the slot is
        //   not handed back before: module docs, "The rule that keeps buffers valid");
        // - `buf` is moved into this future, so nothing else reads or writes those bytes
        //   until the completion (or ever, if the future is dropped).
        let target = unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) };
        // SAFETY: as above: the READ's target stays valid and untouched until its
        // completion is reaped.
        let sqe = unsafe { Sqe::read(fd, target, offset) }.flags(flags);
        let r = self.submit(sqe).await.map(|(n, _)| n as usize);
        if let Ok(n) = r {
            buf.filled = n.min(len);
        }
        (r, buf)
    }

    /// `pwrite(fd, buf, offset)` from a slot buffer (a WRITE's payload, or a filled
    /// [`ReadBuf`]); the kernel reads it while the operation runs, with no copy.
    ///
    /// # Errors
    ///
    /// The kernel's, as for `pwrite(2)`; see [`AsyncCx`] for `EBUSY` and `EOPNOTSUPP`.
    pub async fn write_at<B: IoBuf + ?Sized>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &B,
        offset: u64,
    ) -> Result<usize, Errno> {
        self.write_at_with(fd, buf, offset, IoringSqeFlags::empty())
            .await
    }

    /// [`write_at`](Self::write_at) with SQE flags (see
    /// [`read_at_with`](Self::read_at_with)).
    ///
    /// # Errors
    ///
    /// As for [`write_at`](Self::write_at).
    pub async fn write_at_with<B: IoBuf + ?Sized>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &B,
        offset: u64,
        flags: IoringSqeFlags,
    ) -> Result<usize, Errno> {
        let bytes = buf.io_bytes();
        // SAFETY:
        // - `bytes` is a slot buffer or `'static` (`IoBuf`'s contract), valid until this
        //   operation's completion is reaped even if this future is dropped first;
        // - the kernel only reads it, and Rust code can only read it too (`IoBuf` hands out
        //   shared bytes while borrowed).
        let sqe = unsafe { Sqe::write(fd, bytes, offset) }.flags(flags);
        self.submit(sqe).await.map(|(n, _)| n as usize)
    }

    /// `openat2(dirfd, path, how)`: `flags`, `mode` and `resolve` (`RESOLVE_BENEATH`...)
    /// as `open_how` has them. The kernel copies `path` and `how` when the SQE is submitted.
    ///
    /// # Errors
    ///
    /// As for `openat2(2)`; see [`AsyncCx`].
    pub async fn openat2(
        &self,
        dirfd: BorrowedFd<'_>,
        path: &CStr,
        flags: OFlags,
        mode: Mode,
        resolve: ResolveFlags,
    ) -> Result<OwnedFd, Errno> {
        let args = Args::Open {
            dirfd: fd_raw(dirfd),
            path: path.as_ptr(),
            flags: flags.bits(),
            mode: mode.bits(),
            resolve: resolve.bits(),
        };
        let (fd, _) = self.op_with(build_openat2, args).await?;
        // SAFETY:
        // - an OPENAT2 completion's non-negative `res` is a new descriptor that nothing
        //   else owns (io_uring_enter(2)).
        Ok(unsafe { owned_fd(fd) })
    }

    /// `statx(dirfd, path, flags, mask)`; `AT_EMPTY_PATH` with `c""` for an open
    /// descriptor. The result lands in the operation's scratch space in the slot, and is
    /// copied out when it completes.
    ///
    /// # Errors
    ///
    /// As for `statx(2)`; see [`AsyncCx`].
    pub async fn statx(
        &self,
        dirfd: BorrowedFd<'_>,
        path: &CStr,
        flags: AtFlags,
        mask: rustix::fs::StatxFlags,
    ) -> Result<Statx, Errno> {
        let args = Args::Statx {
            dirfd: fd_raw(dirfd),
            path: path.as_ptr(),
            flags: flags.bits(),
            mask: mask.bits(),
        };
        let fut = StatxOp {
            inner: self.op_with(build_statx, args),
        };
        fut.await
    }

    /// `fsync(fd)`, or `fdatasync` with `datasync`.
    ///
    /// # Errors
    ///
    /// As for `fsync(2)`; see [`AsyncCx`].
    pub async fn fsync(&self, fd: BorrowedFd<'_>, datasync: bool) -> Result<(), Errno> {
        let flags = if datasync {
            IoringFsyncFlags::DATASYNC
        } else {
            IoringFsyncFlags::empty()
        };
        self.submit(Sqe::fsync(fd, flags)).await.map(|_| ())
    }

    /// `fallocate(fd, mode, offset, len)`.
    ///
    /// # Errors
    ///
    /// As for `fallocate(2)`; see [`AsyncCx`].
    pub async fn fallocate(
        &self,
        fd: BorrowedFd<'_>,
        mode: FallocateFlags,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        self.submit(Sqe::fallocate(fd, mode, offset, len))
            .await
            .map(|_| ())
    }

    /// `close(fd)` on the ring.
    ///
    /// # Errors
    ///
    /// As for `close(2)`; see [`AsyncCx`].
    pub async fn close(&self, fd: OwnedFd) -> Result<(), Errno> {
        self.submit(Sqe::close(fd)).await.map(|_| ())
    }

    /// `unlinkat(dirfd, path, flags)` (`AT_REMOVEDIR` for a directory).
    ///
    /// # Errors
    ///
    /// As for `unlinkat(2)`; see [`AsyncCx`].
    pub async fn unlinkat(
        &self,
        dirfd: BorrowedFd<'_>,
        path: &CStr,
        flags: AtFlags,
    ) -> Result<(), Errno> {
        let args = Args::Path {
            dirfd: fd_raw(dirfd),
            path: path.as_ptr(),
            bits: flags.bits(),
            dirfd2: -1,
            path2: core::ptr::null(),
        };
        self.op_with(build_unlinkat, args).await.map(|_| ())
    }

    /// `mkdirat(dirfd, path, mode)`.
    ///
    /// # Errors
    ///
    /// As for `mkdirat(2)`; see [`AsyncCx`].
    pub async fn mkdirat(
        &self,
        dirfd: BorrowedFd<'_>,
        path: &CStr,
        mode: Mode,
    ) -> Result<(), Errno> {
        let args = Args::Path {
            dirfd: fd_raw(dirfd),
            path: path.as_ptr(),
            bits: mode.bits(),
            dirfd2: -1,
            path2: core::ptr::null(),
        };
        self.op_with(build_mkdirat, args).await.map(|_| ())
    }

    /// `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)`.
    ///
    /// # Errors
    ///
    /// As for `renameat2(2)`; see [`AsyncCx`].
    pub async fn renameat(
        &self,
        olddirfd: BorrowedFd<'_>,
        oldpath: &CStr,
        newdirfd: BorrowedFd<'_>,
        newpath: &CStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let args = Args::Path {
            dirfd: fd_raw(olddirfd),
            path: oldpath.as_ptr(),
            bits: flags.bits(),
            dirfd2: fd_raw(newdirfd),
            path2: newpath.as_ptr(),
        };
        self.op_with(build_renameat, args).await.map(|_| ())
    }

    /// `symlinkat(target, newdirfd, linkpath)`.
    ///
    /// # Errors
    ///
    /// As for `symlinkat(2)`; see [`AsyncCx`].
    pub async fn symlinkat(
        &self,
        target: &CStr,
        newdirfd: BorrowedFd<'_>,
        linkpath: &CStr,
    ) -> Result<(), Errno> {
        let args = Args::Path {
            dirfd: fd_raw(newdirfd),
            path: linkpath.as_ptr(),
            bits: 0,
            dirfd2: -1,
            path2: target.as_ptr(),
        };
        self.op_with(build_symlinkat, args).await.map(|_| ())
    }

    /// `linkat(olddirfd, oldpath, newdirfd, newpath, flags)` (`AT_EMPTY_PATH` with `c""`
    /// links the file `olddirfd` refers to).
    ///
    /// # Errors
    ///
    /// As for `linkat(2)`; see [`AsyncCx`].
    pub async fn linkat(
        &self,
        olddirfd: BorrowedFd<'_>,
        oldpath: &CStr,
        newdirfd: BorrowedFd<'_>,
        newpath: &CStr,
        flags: AtFlags,
    ) -> Result<(), Errno> {
        let args = Args::Path {
            dirfd: fd_raw(olddirfd),
            path: oldpath.as_ptr(),
            bits: flags.bits(),
            dirfd2: fd_raw(newdirfd),
            path2: newpath.as_ptr(),
        };
        self.op_with(build_linkat, args).await.map(|_| ())
    }

    /// `ftruncate(fd, len)` (Linux 6.9).
    ///
    /// # Errors
    ///
    /// As for `ftruncate(2)`; see [`AsyncCx`].
    pub async fn ftruncate(&self, fd: BorrowedFd<'_>, len: u64) -> Result<(), Errno> {
        self.submit(Sqe::ftruncate(fd, len)).await.map(|_| ())
    }

    /// Waits for `after` (`IORING_OP_TIMEOUT`: no thread, no timer descriptor).
    pub async fn sleep(&self, after: Duration) {
        let sqe = Sqe::timeout(after, 0, IoringTimeoutFlags::empty());
        // -ETIME is the normal end of a timeout; any other error ends the wait early.
        let _ = self.submit(sqe).await;
    }

    /// Tells the kernel that `node`'s attributes (and cached data from `offset` for `len`
    /// bytes when `offset >= 0`) are stale; see
    /// [`Cx::notify_inval_inode`](crate::Cx::notify_inval_inode).
    ///
    /// # Errors
    ///
    /// As [`Cx::notify_inval_inode`](crate::Cx::notify_inval_inode).
    pub fn notify_inval_inode(&self, node: NodeId, offset: i64, len: i64) -> Result<(), Errno> {
        self.with_cx(|cx| cx.notify_inval_inode(node, offset, len))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Tells the kernel to forget `parent/name`; see
    /// [`Cx::notify_inval_entry`](crate::Cx::notify_inval_entry).
    ///
    /// # Errors
    ///
    /// As [`Cx::notify_inval_entry`](crate::Cx::notify_inval_entry).
    pub fn notify_inval_entry(
        &self,
        parent: NodeId,
        name: &CStr,
        expire_only: bool,
    ) -> Result<(), Errno> {
        self.with_cx(|cx| cx.notify_inval_entry(parent, name, expire_only))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Tells the kernel that `parent/name`, which was `child`, is gone; see
    /// [`Cx::notify_delete`](crate::Cx::notify_delete).
    ///
    /// # Errors
    ///
    /// As [`Cx::notify_delete`](crate::Cx::notify_delete).
    pub fn notify_delete(&self, parent: NodeId, child: NodeId, name: &CStr) -> Result<(), Errno> {
        self.with_cx(|cx| cx.notify_delete(parent, child, name))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Wakes the pollers waiting on `kh`; see [`Cx::notify_poll`](crate::Cx::notify_poll).
    ///
    /// # Errors
    ///
    /// As [`Cx::notify_poll`](crate::Cx::notify_poll).
    pub fn notify_poll(&self, kh: u64) -> Result<(), Errno> {
        self.with_cx(|cx| cx.notify_poll(kh))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Registers a kernel passthrough backing file; see
    /// [`Cx::backing_open`](crate::Cx::backing_open).
    ///
    /// # Errors
    ///
    /// As [`Cx::backing_open`](crate::Cx::backing_open).
    pub fn backing_open(&self, file: BorrowedFd<'_>) -> Result<i32, Errno> {
        self.with_cx(|cx| cx.backing_open(file))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Releases a backing id; see [`Cx::backing_close`](crate::Cx::backing_close).
    ///
    /// # Errors
    ///
    /// As [`Cx::backing_close`](crate::Cx::backing_close).
    pub fn backing_close(&self, id: i32) -> Result<(), Errno> {
        self.with_cx(|cx| cx.backing_close(id))
            .unwrap_or(Err(Errno::EOPNOTSUPP))
    }

    /// Drops an operation's future: if it is still in flight, it becomes an orphan, is
    /// cancelled, and its SQE is submitted now if it was only queued (so the paths and
    /// structs it points at, which the kernel copies at submission, are read while they
    /// still exist).
    fn orphan(&self, k: usize) {
        let Some(cell) = self.ops.get(k) else { return };
        match cell.state.get() {
            OpState::InFlight => {
                cell.state.set(OpState::Orphaned);
                let tag = op_tag(self.slot, k);
                let _ = self.with_cx(|cx| {
                    cx.submit_now();
                    let _ = cx.cancel(tag);
                });
            }
            OpState::Done => cell.state.set(OpState::Free),
            OpState::Free | OpState::Orphaned => {}
        }
    }

    /// Takes operation `k`'s completion if it came: `(res, flags)`, with `read` run on its
    /// scratch space first.
    fn take<T>(&self, k: usize, read: impl FnOnce(*const u64) -> T) -> Option<(i32, u32, T)> {
        let cell = self.ops.get(k)?;
        if cell.state.get() != OpState::Done {
            return None;
        }
        let out = read(cell.scratch.get().cast::<u64>());
        cell.state.set(OpState::Free);
        Some((cell.res.get(), cell.flags.get(), out))
    }
}

/// Restores the loop's context pointer of an [`AsyncCx`] when a poll or drop ends.
pub(crate) struct CurGuard<'a> {
    acx: &'a AsyncCx,
    prev: *mut Cx<'static>,
}

impl Drop for CurGuard<'_> {
    fn drop(&mut self) {
        self.acx.cur.set(self.prev);
    }
}

fn fd_raw(fd: BorrowedFd<'_>) -> i32 {
    rustix::fd::AsRawFd::as_raw_fd(&fd)
}

/// # Safety
///
/// `fd` is an open descriptor nobody else owns.
unsafe fn owned_fd(fd: u32) -> OwnedFd {
    let raw = i32::try_from(fd).unwrap_or(-1);
    // SAFETY: forwarded: the caller promises `raw` is open and unowned.
    unsafe { rustix::fd::FromRawFd::from_raw_fd(raw) }
}

/// The arguments of an operation whose SQE is built when it is first polled (with its
/// scratch space), kept as plain values: descriptors as numbers, paths as pointers that
/// the borrow of the calling `async fn` keeps alive until the SQE is submitted.
#[derive(Clone, Copy)]
enum Args {
    Open {
        dirfd: i32,
        path: *const core::ffi::c_char,
        flags: u32,
        mode: u32,
        resolve: u64,
    },
    Statx {
        dirfd: i32,
        path: *const core::ffi::c_char,
        flags: u32,
        mask: u32,
    },
    Path {
        dirfd: i32,
        path: *const core::ffi::c_char,
        bits: u32,
        dirfd2: i32,
        path2: *const core::ffi::c_char,
    },
}

/// # Safety (of every `build_*`)
///
/// They run inside [`OpWith::poll`] while the `async fn` that made `args` is suspended on
/// it, so its borrowed paths and descriptors are alive; the kernel copies the paths and
/// the `open_how` when the SQE is submitted (`IORING_FEAT_SUBMIT_STABLE`; an operation
/// dropped before that submits at once, `AsyncCx::orphan`).
fn path<'p>(p: *const core::ffi::c_char) -> &'p CStr {
    // SAFETY:
    // - `p` came from `CStr::as_ptr` of a `&CStr` borrowed by the `async fn` that is
    //   suspended on this operation (see the `# Safety` above), so it points at a live,
    //   NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
}

fn dir<'d>(fd: i32) -> BorrowedFd<'d> {
    // SAFETY:
    // - `fd` came from a `BorrowedFd` borrowed by the suspended `async fn` (as for
    //   `path`), or is `AT_FDCWD`, so it is open for as long as the SQE is built.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn build_openat2(args: &Args, scratch: *mut u64) -> Sqe {
    let Args::Open {
        dirfd,
        path: p,
        flags,
        mode,
        resolve,
    } = *args
    else {
        return Sqe::nop();
    };
    let mut how = open_how::default();
    how.flags = u64::from(flags);
    how.mode = u64::from(mode);
    how.resolve = ResolveFlags::from_bits_retain(resolve);
    let how_ptr = scratch.cast::<open_how>();
    // SAFETY:
    // - `scratch` is this operation's 256-byte, 8-aligned scratch space in the slot,
    //   which only this operation uses until its completion; `open_how` is 24 bytes,
    //   8-aligned.
    unsafe { how_ptr.write(how) };
    // SAFETY:
    // - the path is alive until the SQE is submitted (`path`), and the kernel copies it
    //   and `how` then; `how` stays in the slot until the completion in any case.
    let how_ref = unsafe { &*how_ptr };
    // SAFETY: as above (the `open_how` was written just now and lives in the slot).
    unsafe { Sqe::openat2(dir(dirfd), path(p), how_ref) }
}

fn build_statx(args: &Args, scratch: *mut u64) -> Sqe {
    let Args::Statx {
        dirfd,
        path: p,
        flags,
        mask,
    } = *args
    else {
        return Sqe::nop();
    };
    let out = scratch.cast::<Statx>();
    // SAFETY: `scratch` is this operation's 256-byte, 8-aligned scratch space, which only
    // it uses until its completion: zeroed here (it starts uninitialized), so the `&mut`
    // below and the read after the completion see initialized bytes whatever the kernel
    // writes (all of it on success, nothing on failure).
    unsafe { scratch.write_bytes(0, SCRATCH_WORDS) };
    // SAFETY:
    // - `out` is this operation's scratch space (256 bytes = `size_of::<Statx>()`,
    //   8-aligned), valid until the completion is reaped even if the future is dropped
    //   (the slot rule), and read only after the completion (`StatxOp`);
    // - the path is alive until the SQE is submitted, when the kernel copies it.
    let out_ref = unsafe { &mut *out };
    // SAFETY: as above.
    unsafe {
        Sqe::statx(
            dir(dirfd),
            path(p),
            AtFlags::from_bits_retain(flags),
            rustix::fs::StatxFlags::from_bits_retain(mask),
            out_ref,
        )
    }
}

const _: () = assert!(core::mem::size_of::<Statx>() <= SCRATCH_WORDS * 8);
const _: () = assert!(core::mem::size_of::<open_how>() <= SCRATCH_WORDS * 8);

fn build_unlinkat(args: &Args, _: *mut u64) -> Sqe {
    let Args::Path {
        dirfd,
        path: p,
        bits,
        ..
    } = *args
    else {
        return Sqe::nop();
    };
    // SAFETY: the path is alive until the SQE is submitted, when the kernel copies it.
    unsafe { Sqe::unlinkat(dir(dirfd), path(p), AtFlags::from_bits_retain(bits)) }
}

fn build_mkdirat(args: &Args, _: *mut u64) -> Sqe {
    let Args::Path {
        dirfd,
        path: p,
        bits,
        ..
    } = *args
    else {
        return Sqe::nop();
    };
    // SAFETY: the path is alive until the SQE is submitted, when the kernel copies it.
    unsafe { Sqe::mkdirat(dir(dirfd), path(p), Mode::from_bits_retain(bits)) }
}

fn build_renameat(args: &Args, _: *mut u64) -> Sqe {
    let Args::Path {
        dirfd,
        path: p,
        bits,
        dirfd2,
        path2,
    } = *args
    else {
        return Sqe::nop();
    };
    // SAFETY: both paths are alive until the SQE is submitted, when the kernel copies
    // them.
    unsafe {
        Sqe::renameat(
            dir(dirfd),
            path(p),
            dir(dirfd2),
            path(path2),
            RenameFlags::from_bits_retain(bits),
        )
    }
}

fn build_symlinkat(args: &Args, _: *mut u64) -> Sqe {
    let Args::Path {
        dirfd,
        path: p,
        path2,
        ..
    } = *args
    else {
        return Sqe::nop();
    };
    // SAFETY: both paths are alive until the SQE is submitted, when the kernel copies
    // them (`io_symlinkat_prep`).
    unsafe { Sqe::symlinkat(path(path2), dir(dirfd), path(p)) }
}

fn build_linkat(args: &Args, _: *mut u64) -> Sqe {
    let Args::Path {
        dirfd,
        path: p,
        bits,
        dirfd2,
        path2,
    } = *args
    else {
        return Sqe::nop();
    };
    // SAFETY: both paths are alive until the SQE is submitted, when the kernel copies
    // them (`io_linkat_prep`).
    unsafe {
        Sqe::linkat(
            dir(dirfd),
            path(p),
            dir(dirfd2),
            path(path2),
            AtFlags::from_bits_retain(bits),
        )
    }
}

/// The future of a ring operation ([`AsyncCx::submit`]).
#[must_use = "an operation does nothing until awaited"]
pub struct Op<'c> {
    cx: &'c AsyncCx,
    sqe: Option<Sqe>,
    k: Option<usize>,
    _scratch: PhantomData<*mut u8>,
}

impl Future for Op<'_> {
    type Output = Result<(u32, u32), Errno>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        // `Op` is `Unpin` (no field is pinned), so it may be used through `&mut`.
        let this = self.get_mut();
        match this.k {
            None => {
                let Some(sqe) = this.sqe.take() else {
                    return Poll::Ready(Err(Errno::EINVAL));
                };
                match this.cx.start(|_| sqe) {
                    Ok(k) => {
                        this.k = Some(k);
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            Some(k) => match this.cx.take(k, |_| ()) {
                Some((res, flags, ())) => {
                    this.k = None;
                    Poll::Ready(result(res).map(|n| (n, flags)))
                }
                None => Poll::Pending,
            },
        }
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.k {
            self.cx.orphan(k);
        }
    }
}

/// Builds an operation's SQE from its arguments and its scratch space.
type BuildFn = fn(&Args, *mut u64) -> Sqe;

/// An operation built when first polled, with its scratch space.
struct OpWith<'c> {
    cx: &'c AsyncCx,
    build: Option<(BuildFn, Args)>,
    k: Option<usize>,
}

impl OpWith<'_> {
    fn poll_take<T>(
        &mut self,
        read: impl FnOnce(*const u64) -> T,
    ) -> Poll<Result<(u32, u32, T), Errno>> {
        match self.k {
            None => {
                let Some((build, args)) = self.build.take() else {
                    return Poll::Ready(Err(Errno::EINVAL));
                };
                match self.cx.start(|scratch| build(&args, scratch)) {
                    Ok(k) => {
                        self.k = Some(k);
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            Some(k) => match self.cx.take(k, read) {
                Some((res, flags, out)) => {
                    self.k = None;
                    Poll::Ready(result(res).map(|n| (n, flags, out)))
                }
                None => Poll::Pending,
            },
        }
    }
}

impl Future for OpWith<'_> {
    type Output = Result<(u32, u32), Errno>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .poll_take(|_| ())
            .map(|r| r.map(|(n, f, ())| (n, f)))
    }
}

impl Drop for OpWith<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.k {
            self.cx.orphan(k);
        }
    }
}

struct StatxOp<'c> {
    inner: OpWith<'c>,
}

impl Future for StatxOp<'_> {
    type Output = Result<Statx, Errno>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .inner
            .poll_take(|scratch| {
                // SAFETY:
                // - the operation completed (`take` runs this only in state `Done`), so
                //   the kernel wrote the `struct statx` into the scratch space and no
                //   longer touches it; it is 8-aligned and big enough (const asserts);
                // - every bit pattern is a valid `Statx` (plain integers).
                unsafe { scratch.cast::<Statx>().read() }
            })
            .map(|r| r.map(|(_, _, st)| st))
    }
}

fn result(res: i32) -> Result<u32, Errno> {
    match Errno::from_wire(res) {
        Some(e) => Err(e),
        None => Ok(res.unsigned_abs()),
    }
}

/// Memory an operation may point at although the future that submitted it can be dropped
/// before its completion: slot buffers ([`WriteBuf`], [`ReadBuf`]) and `'static` data.
///
/// # Safety
///
/// [`io_bytes`](Self::io_bytes) must return bytes that stay valid, and are not written
/// by anyone, until the operations of the request that borrows them have completed: the
/// slot rule of the `task` module (module docs), or `'static` immutable data.
pub unsafe trait IoBuf {
    /// The bytes.
    fn io_bytes(&self) -> &[u8];
}

// SAFETY: `'static` shared bytes are valid forever, and nobody may write them.
unsafe impl IoBuf for &'static [u8] {
    fn io_bytes(&self) -> &[u8] {
        self
    }
}

// SAFETY: as for `&'static [u8]`.
unsafe impl IoBuf for &'static str {
    fn io_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A WRITE's payload (or another request's data), in the request's slot: it stays there,
/// untouched, until the request is answered and its operations are done, so it can be
/// handed straight to [`AsyncCx::write_at`] with no copy. Derefs to `&[u8]`.
#[derive(Clone, Copy)]
pub struct WriteBuf<'t> {
    bytes: &'t [u8],
}

impl<'t> WriteBuf<'t> {
    pub(crate) fn new(bytes: &'t [u8]) -> Self {
        Self { bytes }
    }
}

impl core::ops::Deref for WriteBuf<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl core::fmt::Debug for WriteBuf<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WriteBuf")
            .field("len", &self.bytes.len())
            .finish()
    }
}

// SAFETY: a `WriteBuf` is made only from the request's own bytes in its slot (`asyncfs`),
// which the loop leaves untouched until the request is answered, and the request is
// answered only once its operations are done (the slot rule).
unsafe impl IoBuf for WriteBuf<'_> {
    fn io_bytes(&self) -> &[u8] {
        self.bytes
    }
}

/// The reply buffer of a READ (or READLINK, IOCTL) in the request's slot, lent to the
/// handler to fill: by hand ([`bytes_mut`](Self::bytes_mut), [`fill`](Self::fill)), or by the kernel with
/// [`AsyncCx::read_at`], so data goes from a backing file to the caller with no copy.
/// [`len`](Self::len) is what the request allows. The handler answers with how many bytes
/// it filled.
pub struct ReadBuf<'t> {
    ptr: NonNull<u8>,
    len: usize,
    filled: usize,
    _buf: PhantomData<&'t mut [u8]>,
}

impl ReadBuf<'_> {
    /// # Safety
    ///
    /// `ptr..ptr + len` is the reply buffer of the request whose future this goes into,
    /// in its slot, and nothing else touches it while the `ReadBuf` lives.
    pub(crate) unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Self {
        Self {
            ptr,
            len,
            filled: 0,
            _buf: PhantomData,
        }
    }

    /// The most bytes the answer may hold.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the request asked for nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Caps the buffer at `len` bytes (for a backing read that must not read past a
    /// point).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.filled = self.filled.min(self.len);
    }

    /// How many bytes the last [`AsyncCx::read_at`] into it filled.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The buffer, to fill by hand.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY:
        // - `ptr..ptr + len` is this request's reply buffer, lent to this `ReadBuf` alone
        //   (`from_raw`); the borrow is tied to `&mut self`, and while an operation has it
        //   the operation's future owns the `ReadBuf`, so no one can call this then.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Copies `bytes` (truncated to [`len`](Self::len)) to the start; returns how many.
    pub fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.len);
        if let (Some(dst), Some(src)) = (self.bytes_mut().get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.filled = n;
        n
    }
}

// SAFETY: the bytes are this request's reply buffer in its slot (`from_raw`), valid until
// its operations are done (the slot rule); while shared through `&self`, nothing writes
// them (`as_mut` needs `&mut self`, `read_at` takes the buffer by value).
unsafe impl IoBuf for ReadBuf<'_> {
    fn io_bytes(&self) -> &[u8] {
        // SAFETY: as above; a shared view of the lent buffer, tied to `&self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl core::fmt::Debug for ReadBuf<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadBuf")
            .field("len", &self.len)
            .field("filled", &self.filled)
            .finish()
    }
}

// ---- the task area -----------------------------------------------------------------------

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// No task in this slot.
    Empty,
    /// The future is alive.
    Running,
    /// The future completed with this answer, or was dropped (an INTERRUPT: `EINTR`; a
    /// stop: `EIO`); the answer goes out once the operations still in flight are done.
    Ending(Outcome),
}

/// The start of a slot's task area: the request's context and the future's erased
/// functions. Only ever reached through `&TaskHeader` (its parts are cells), because the
/// future holds a shared borrow of `acx` for its whole life.
pub(crate) struct TaskHeader {
    pub acx: AsyncCx,
    pub state: Cell<TaskState>,
    poll: Cell<Option<PollFn>>,
    drop: Cell<Option<DropFn>>,
}

type PollFn = unsafe fn(NonNull<u8>, &mut Context<'_>) -> Poll<Outcome>;
type DropFn = unsafe fn(NonNull<u8>);

/// Where the future starts in a task area: after the header, on a 64-byte boundary.
pub(crate) const FUTURE_OFFSET: usize = core::mem::size_of::<TaskHeader>().next_multiple_of(64);

/// The strictest alignment a stored future may have (the task area starts on a 64-byte
/// boundary, `state/slab.rs`).
pub(crate) const FUTURE_ALIGN: usize = 64;

/// A compile-time check that a future of `size` bytes and alignment `align` fits the
/// `limit` bytes of [`AsyncFilesystem::FUTURE_BYTES`](crate::AsyncFilesystem::FUTURE_BYTES),
/// with an error that names both sizes.
pub(crate) const fn assert_fits(size: usize, align: usize, limit: usize) {
    assert!(
        align <= FUTURE_ALIGN,
        "ringfuse: an AsyncFilesystem future is aligned to more than 64 bytes"
    );
    if size > limit {
        let (buf, len) = fit_message(size, limit);
        let (msg, _) = buf.split_at(len);
        match core::str::from_utf8(msg) {
            Ok(s) => panic!("{}", s),
            Err(_) => panic!("ringfuse: an AsyncFilesystem future does not fit FUTURE_BYTES"),
        }
    }
}

/// "ringfuse: this AsyncFilesystem method's future needs N bytes, more than FUTURE_BYTES
/// = M; set `const FUTURE_BYTES: usize = N;` (or more) in the impl".
const fn fit_message(size: usize, limit: usize) -> ([u8; 256], usize) {
    let mut buf = [0u8; 256];
    let mut n = 0;
    n = put(
        &mut buf,
        n,
        b"ringfuse: this AsyncFilesystem method's future needs ",
    );
    n = put_num(&mut buf, n, size);
    n = put(&mut buf, n, b" bytes, more than FUTURE_BYTES = ");
    n = put_num(&mut buf, n, limit);
    n = put(&mut buf, n, b"; set `const FUTURE_BYTES: usize = ");
    n = put_num(&mut buf, n, size);
    n = put(
        &mut buf,
        n,
        b";` (or more) in the impl, or make the future smaller",
    );
    (buf, n)
}

const fn put(buf: &mut [u8; 256], mut n: usize, s: &[u8]) -> usize {
    let mut i = 0;
    while i < s.len() && n < buf.len() {
        buf[n] = s[i];
        n += 1;
        i += 1;
    }
    n
}

const fn put_num(buf: &mut [u8; 256], n: usize, mut v: usize) -> usize {
    let mut digits = [0u8; 20];
    let mut k = 0;
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut out = n;
    while k > 0 && out < buf.len() {
        k -= 1;
        buf[out] = digits[k];
        out += 1;
    }
    out
}

/// # Safety
///
/// `p` holds a live `Fut` written by `TaskArea::place`, which stays where it is until
/// `drop_in_place::<Fut>` (so it is pinned), and no other reference to it exists.
unsafe fn poll_in_place<Fut: Future<Output = Outcome>>(
    p: NonNull<u8>,
    cx: &mut Context<'_>,
) -> Poll<Outcome> {
    // SAFETY:
    // - per this function's contract: a live, pinned `Fut`, and this is the only
    //   reference to it while the poll runs.
    let fut = unsafe { &mut *p.cast::<Fut>().as_ptr() };
    // SAFETY: the future never moves until it is dropped in place (this function's
    // contract), which is what pinning asks.
    let fut = unsafe { Pin::new_unchecked(fut) };
    fut.poll(cx)
}

/// # Safety
///
/// `p` holds a live `Fut` (as for `poll_in_place`), never used again after this.
unsafe fn drop_in_place<Fut>(p: NonNull<u8>) {
    // SAFETY: per this function's contract.
    unsafe { core::ptr::drop_in_place(p.cast::<Fut>().as_ptr()) }
}

/// A slot's task area (raw: it is reached from several calls, and the future in it
/// borrows its header).
#[derive(Clone, Copy)]
pub(crate) struct TaskArea {
    base: NonNull<u8>,
    len: usize,
}

impl TaskArea {
    /// # Safety
    ///
    /// `base..base + len` is a slot's task area (64-aligned, `state/slab.rs`), which only the
    /// asynchronous filesystem of this loop reaches, through `TaskArea`s of that slot.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Option<Self> {
        (len >= FUTURE_OFFSET && base.as_ptr().addr() % FUTURE_ALIGN == 0)
            .then_some(Self { base, len })
    }

    /// The header, if one was written (`state` tells whether a task runs).
    ///
    /// # Safety
    ///
    /// `init` was called for this area before (the adapter initializes every area it
    /// uses before the first task; see `Async`).
    pub(crate) unsafe fn header<'h>(&self) -> &'h TaskHeader {
        let p = self.base.cast::<TaskHeader>();
        // SAFETY:
        // - per the contract, a `TaskHeader` was written at `base` (64-aligned, `new`) and
        //   is never moved or overwritten while shared (`init` runs only when no task lives
        //   there, and a header is otherwise only reached through `&`: its parts are cells).
        unsafe { p.as_ref() }
    }

    /// Writes a fresh header (no task may live in the area).
    pub(crate) fn init(&self, acx: AsyncCx) {
        let h = TaskHeader {
            acx,
            state: Cell::new(TaskState::Empty),
            poll: Cell::new(None),
            drop: Cell::new(None),
        };
        // SAFETY:
        // - the area is at least `FUTURE_OFFSET >= size_of::<TaskHeader>()` bytes
        //   (`new`), 64-aligned, which covers `TaskHeader`'s alignment;
        // - no task lives here (the caller's promise: the adapter calls this only for an
        //   area whose state is `Empty`, or never initialized), so no reference to the
        //   old header exists; a previous header has nothing to drop (plain cells).
        let p = self.base.cast::<TaskHeader>();
        // SAFETY: as stated above.
        unsafe { p.write(h) };
    }

    /// Writes `fut` after the header and marks the task running. The caller checked at
    /// compile time that it fits ([`assert_fits`]); a future that does not fit this area
    /// (a `FUTURE_BYTES` too large for the layout, impossible by construction) is dropped
    /// and `false` returned.
    ///
    /// # Safety
    ///
    /// `init` was called for this area and its state is `Empty`.
    pub(crate) unsafe fn place<Fut: Future<Output = Outcome>>(&self, fut: Fut) -> bool {
        if FUTURE_OFFSET + core::mem::size_of::<Fut>() > self.len
            || core::mem::align_of::<Fut>() > FUTURE_ALIGN
        {
            return false;
        }
        // SAFETY: `init` was called (the caller's promise).
        let h = unsafe { self.header() };
        // SAFETY:
        // - `FUTURE_OFFSET + size_of::<Fut>() <= len` (checked), at a 64-aligned offset of
        //   a 64-aligned area, and `align_of::<Fut>() <= 64` (checked);
        // - the state is `Empty`, so no future lives there to be overwritten.
        unsafe {
            self.future_ptr().cast::<Fut>().as_ptr().write(fut);
        }
        h.poll.set(Some(poll_in_place::<Fut>));
        h.drop.set(Some(drop_in_place::<Fut>));
        h.state.set(TaskState::Running);
        true
    }

    fn future_ptr(&self) -> NonNull<u8> {
        // SAFETY: `FUTURE_OFFSET <= len` (`new`), within the area.
        unsafe { self.base.add(FUTURE_OFFSET) }
    }

    /// Polls the running future; `None` if none is running.
    ///
    /// # Safety
    ///
    /// `init` was called for this area, and this is not called from inside a poll or drop
    /// of the same future.
    pub(crate) unsafe fn poll(&self, cx: &mut Context<'_>) -> Option<Poll<Outcome>> {
        // SAFETY: `init` was called (the caller's promise).
        let h = unsafe { self.header() };
        if h.state.get() != TaskState::Running {
            return None;
        }
        let poll = h.poll.get()?;
        // SAFETY:
        // - state `Running` means `place` wrote a future of the type `poll` was made for,
        //   and it was not dropped since (`drop_future` leaves `Running`);
        // - it never moves (it lives in the slot until dropped), and no other reference
        //   to it exists: only this function and `drop_future` reach it, never nested
        //   (the caller's promise).
        Some(unsafe { poll(self.future_ptr(), cx) })
    }

    /// Drops the running future in place (its operations' futures orphan what they had
    /// in flight); the state becomes `Ending(outcome)`.
    ///
    /// # Safety
    ///
    /// As for [`poll`](Self::poll).
    pub(crate) unsafe fn drop_future(&self, outcome: Outcome) {
        // SAFETY: `init` was called (the caller's promise).
        let h = unsafe { self.header() };
        if h.state.get() != TaskState::Running {
            return;
        }
        // Mark first: a drop that panics must not leave a future marked live.
        h.state.set(TaskState::Ending(outcome));
        if let Some(drop) = h.drop.take() {
            h.poll.set(None);
            // SAFETY:
            // - the future was live (`Running`) and is never used again (the state says
            //   `Ending`, and `poll` was cleared);
            // - no other reference to it exists (as for `poll`).
            unsafe { drop(self.future_ptr()) };
        }
    }

    /// The future completed: its storage holds nothing to drop any more (polling a
    /// completed `async` block's future again would panic; it has no destructor left
    /// to run beyond its own, which `drop_future` runs).
    ///
    /// # Safety
    ///
    /// As for [`poll`](Self::poll).
    pub(crate) unsafe fn finish(&self, outcome: Outcome) {
        // SAFETY: as for `drop_future`: a completed future is still a value to drop.
        unsafe { self.drop_future(outcome) };
    }
}

// ---- wakers ------------------------------------------------------------------------------

/// Loops with asynchronous filesystems at once, per process.
const WAKE_LOOPS: usize = 64;
const WAKE_WORDS: usize = crate::state::MAX_SLOTS as usize / 64;

/// Woken slots, a bit per slot per loop: what a [`Waker`] sets.
static WOKEN: [[AtomicU64; WAKE_WORDS]; WAKE_LOOPS] =
    [const { [const { AtomicU64::new(0) }; WAKE_WORDS] }; WAKE_LOOPS];
/// Which rows of `WOKEN` belong to a live loop.
static WAKE_IDS: AtomicU64 = AtomicU64::new(0);

/// A loop's row in the wake table, released on drop.
#[derive(Debug)]
pub(crate) struct WakeId(usize);

impl WakeId {
    /// A free row, if any of the 64 is.
    pub(crate) fn acquire() -> Option<Self> {
        let mut ids = WAKE_IDS.load(Ordering::Relaxed);
        loop {
            let free = (!ids).trailing_zeros() as usize;
            if free >= WAKE_LOOPS {
                return None;
            }
            match WAKE_IDS.compare_exchange_weak(
                ids,
                ids | (1 << free),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if let Some(row) = WOKEN.get(free) {
                        for w in row {
                            w.store(0, Ordering::Relaxed);
                        }
                    }
                    return Some(Self(free));
                }
                Err(now) => ids = now,
            }
        }
    }

    /// A waker for `slot` of this loop (no allocation: the data is a number).
    pub(crate) fn waker(&self, slot: u32) -> Waker {
        let data = (self.0 << 16) | (slot as usize & 0xffff);
        // SAFETY:
        // - `WAKER_VTABLE`'s functions treat the data pointer as a number only, never
        //   dereference it, and are thread-safe (atomics), as `Waker` requires.
        unsafe {
            Waker::from_raw(RawWaker::new(
                core::ptr::without_provenance(data),
                &WAKER_VTABLE,
            ))
        }
    }

    /// Takes the woken bits of word `w` (slots `64 w .. 64 w + 63`).
    pub(crate) fn take(&self, w: usize) -> u64 {
        WOKEN
            .get(self.0)
            .and_then(|row| row.get(w))
            .map_or(0, |a| a.swap(0, Ordering::Acquire))
    }

    /// Whether any slot of this loop is woken.
    pub(crate) fn any(&self) -> bool {
        WOKEN
            .get(self.0)
            .is_some_and(|row| row.iter().any(|a| a.load(Ordering::Relaxed) != 0))
    }

    /// Wakes `slot` (as its waker would).
    pub(crate) fn wake(&self, slot: u32) {
        wake_data((self.0 << 16) | (slot as usize & 0xffff));
    }

    pub(crate) const WORDS: usize = WAKE_WORDS;
}

impl Drop for WakeId {
    fn drop(&mut self) {
        WAKE_IDS.fetch_and(!(1 << self.0), Ordering::AcqRel);
    }
}

fn wake_data(data: usize) {
    let (row, slot) = (data >> 16, data & 0xffff);
    if let Some(word) = WOKEN.get(row).and_then(|r| r.get(slot / 64)) {
        word.fetch_or(1 << (slot % 64), Ordering::Release);
    }
}

static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(
    |data| RawWaker::new(data, &WAKER_VTABLE),
    |data| wake_data(data.addr()),
    |data| wake_data(data.addr()),
    |_| {},
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_message_names_both_sizes() {
        let (buf, n) = fit_message(5120, 4096);
        let s = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(s.contains("needs 5120 bytes"), "{s}");
        assert!(s.contains("FUTURE_BYTES = 4096"), "{s}");
        assert!(s.contains("const FUTURE_BYTES: usize = 5120;"), "{s}");
        assert_fits(100, 8, 100);
    }

    #[test]
    fn wakers_set_their_slot_bit_and_are_plain_numbers() {
        let id = WakeId::acquire().unwrap();
        let w = id.waker(70);
        let w2 = w.clone();
        drop(w);
        w2.wake_by_ref();
        assert!(id.any());
        assert_eq!(id.take(0), 0);
        assert_eq!(id.take(1), 1 << 6);
        assert!(!id.any());
        w2.wake();
        assert_eq!(id.take(1), 1 << 6);
        let row = id.0;
        drop(id);
        assert_eq!(WAKE_IDS.load(Ordering::Relaxed) & (1 << row), 0);
    }

    #[test]
    fn op_states() {
        let acx = AsyncCx::new(Info::default(), 3);
        // No loop context: an operation cannot start.
        assert_eq!(acx.start(|_| Sqe::nop()), Err(Errno::EOPNOTSUPP));
        // A completion for an operation that is not in flight is ignored.
        assert!(!acx.complete(0, 0, 0));
        acx.ops[1].state.set(OpState::InFlight);
        acx.in_flight.set(1);
        assert!(acx.complete(1, 5, 0));
        assert_eq!(acx.ops_in_flight(), 0);
        assert_eq!(acx.take(1, |_| ()), Some((5, 0, ())));
        assert_eq!(acx.ops[1].state.get(), OpState::Free);
        acx.ops[2].state.set(OpState::InFlight);
        acx.in_flight.set(1);
        acx.orphan(2);
        assert_eq!(acx.ops[2].state.get(), OpState::Orphaned);
        assert!(!acx.complete(2, -125, 0));
        assert_eq!(acx.ops[2].state.get(), OpState::Free);
        assert_eq!(op_tag(3, 2), 0x302);
    }
}
