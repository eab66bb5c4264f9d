//! [`Async`]: an [`AsyncFilesystem`] served as a [`Filesystem`]. Each request's future is
//! placed in its slot's task area (`task`) and polled there; its answer is encoded into the
//! reply when it completes. Lending a request's bytes to its future is this file's
//! `unsafe`, each block with its proof (the rules are in the module docs of `asyncfs`).
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::future::Future;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use crate::abi::Errno;
use crate::abi::request::Forgets;
use crate::api::attr::{Attr, Entry, NodeId};
use crate::api::cx::Cx;
use crate::api::fs::{CopyRange, Filesystem, InitConfig, IoctlArgs, SetAttr};
use crate::api::open_flags::{OpenFlags, RenameFlags};
use crate::api::reply::{
    DirFill, DirPlusFill, Done, FileLock, Reply, ReplyAttr, ReplyBmap, ReplyCopied, ReplyCreate,
    ReplyData, ReplyDir, ReplyDirPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek,
    ReplyOpen, ReplyPoll, ReplyStatfs, ReplyStatx, ReplyWrite, ReplyXattr, Whose, kind,
};
use crate::asyncfs::task::{
    AsyncCx, FUTURE_OFFSET, ReadBuf, TaskArea, TaskState, WAKE_TAG, WakeId, WriteBuf, assert_fits,
};
use crate::state::Outcome;

use super::{AsyncFilesystem, Opened, XattrOut};

/// Serves an [`AsyncFilesystem`] as a [`Filesystem`]: give `Async::new(fs)` to
/// [`Session::new`](crate::Session::new) or return it from
/// [`run_per_cpu`](crate::run_per_cpu)'s factory. The filesystem is reached with
/// [`get`](Self::get).
///
/// The filesystem value lives at a fixed address for the adapter's life (boxed once by
/// [`new`](Self::new); given as `&'static mut` by [`from_static`](Self::from_static)),
/// because every running future borrows it.
pub struct Async<F: AsyncFilesystem> {
    fs: NonNull<F>,
    #[cfg(feature = "std")]
    owned: bool,
    /// This loop's row in the wake table (taken at the first request).
    wake: Option<WakeId>,
    /// A NOP is on the ring to come back for woken tasks.
    wake_queued: bool,
    /// The slot whose request is being delivered: its task is answered through that
    /// call's reply, never resumed meanwhile.
    current: Option<u32>,
    /// Which slots' task areas hold a header (`TaskArea::init` was called).
    inited: [u64; crate::asyncfs::task::WakeId::WORDS],
    _owns: PhantomData<F>,
}

// SAFETY: `Async<F>` owns its `F` (boxed, or the unique `&'static mut`) like a `Box<F>`,
// and everything else in it is plain data; futures never leave the loop's thread.
unsafe impl<F: AsyncFilesystem + Send> Send for Async<F> {}

impl<F: AsyncFilesystem> Async<F> {
    /// Serves `fs` (moved to the heap once, now; nothing is allocated per request).
    #[cfg(feature = "std")]
    pub fn new(fs: F) -> Self {
        let fs = NonNull::from(std::boxed::Box::leak(std::boxed::Box::new(fs)));
        Self::with(fs, true)
    }

    /// Serves `fs`, which lives for the program (for `no_std` programs: a `static`, or
    /// memory of the caller's).
    pub fn from_static(fs: &'static mut F) -> Self {
        Self::with(NonNull::from(fs), false)
    }

    #[cfg_attr(not(feature = "std"), allow(unused_variables))]
    fn with(fs: NonNull<F>, owned: bool) -> Self {
        Self {
            fs,
            #[cfg(feature = "std")]
            owned,
            wake: None,
            wake_queued: false,
            current: None,
            inited: [0; crate::asyncfs::task::WakeId::WORDS],
            _owns: PhantomData,
        }
    }

    /// The filesystem.
    pub fn get(&self) -> &F {
        // SAFETY:
        // - `fs` points at a live `F` for the adapter's life (boxed by `new`, or a
        //   `&'static mut` given to `from_static`), which only shared references reach.
        unsafe { self.fs.as_ref() }
    }

    /// Bytes of the task area of each slot: the header and `F::FUTURE_BYTES`.
    pub const TASK_AREA_BYTES: usize = FUTURE_OFFSET + F::FUTURE_BYTES;

    fn area(cx: &Cx<'_>, slot: u32) -> Option<TaskArea> {
        let (base, len) = cx.task_area(slot)?;
        // SAFETY:
        // - `base..base + len` is slot `slot`'s task area (`Cx::task_area`), which nothing
        //   but this adapter touches (the loop and the session never do).
        unsafe { TaskArea::new(base, len) }
    }

    fn is_inited(&self, slot: u32) -> bool {
        let (w, b) = ((slot / 64) as usize, slot % 64);
        self.inited.get(w).is_some_and(|x| x & (1 << b) != 0)
    }

    /// The task area of `slot` if a header was ever written there.
    fn inited_area(&self, cx: &Cx<'_>, slot: u32) -> Option<TaskArea> {
        if !self.is_inited(slot) {
            return None;
        }
        Self::area(cx, slot)
    }

    fn waker(&mut self, slot: u32) -> Waker {
        if self.wake.is_none() {
            self.wake = WakeId::acquire();
        }
        match &self.wake {
            Some(id) => id.waker(slot),
            None => Waker::noop().clone(),
        }
    }

    /// Builds the future of one request in its slot, polls it once, and answers or defers
    /// the request. `make` gets the filesystem, the request's context and where the answer
    /// goes, all borrowed for the task's life `'t`.
    fn start<'t, K, Fut, M>(&mut self, cx: &mut Cx<'_>, mut reply: Reply<'_, K>, make: M) -> Done
    where
        M: FnOnce(&'t F, &'t AsyncCx, Out) -> Fut,
        Fut: Future<Output = Outcome> + 't,
        F: 't,
    {
        const {
            assert_fits(
                core::mem::size_of::<Fut>(),
                core::mem::align_of::<Fut>(),
                F::FUTURE_BYTES,
            );
        };
        let slot = reply.slot();
        let Some(area) = Self::area(cx, slot) else {
            return reply.error(Errno::EIO);
        };
        let unique = cx.unique();
        // A request arrives only in a slot the loop owns, which it gets back only once
        // the previous task there ended: no task lives in the area.
        area.init(AsyncCx::new(cx.info, slot));
        if let Some(w) = self.inited.get_mut((slot / 64) as usize) {
            *w |= 1 << (slot % 64);
        }
        // SAFETY: `init` was just called.
        let header: &'t crate::asyncfs::task::TaskHeader = unsafe { area.header() };
        let (ptr, full, cap, limit, wide) = reply.raw_parts();
        let out = Out {
            ptr,
            full,
            cap,
            limit,
            wide,
            slot,
            unique,
        };
        // SAFETY:
        // - the filesystem lives at a fixed address for the adapter's life (`new`,
        //   `from_static`) and only shared references to it exist; the adapter outlives
        //   the loop, and no future runs after the loop returns: the loop drops every
        //   future that ends (it waits for every deferred request, up to the stop's
        //   grace), and one still pending when the grace ends is never polled or dropped
        //   again — it is leaked with its slot's memory, so it cannot use `fs` either.
        let fs = unsafe { self.fs.as_ref() };
        let fut = make(fs, &header.acx, out);
        // SAFETY: `init` was called and the state is `Empty` (a fresh header).
        if !unsafe { area.place(fut) } {
            return reply.error(Errno::EIO);
        }
        self.current = Some(slot);
        self.poll_task(cx, slot, area);
        self.current = None;
        let done = match header.state.get() {
            TaskState::Ending(o) if header.acx.ops_in_flight() == 0 => {
                header.state.set(TaskState::Empty);
                reply.finish(o)
            }
            _ => {
                // Resumed later by slot and unique (`settle`), not by this token.
                reply.hold()
            }
        };
        self.drain(cx);
        done
    }

    /// Polls `slot`'s future if it runs; a future that completes is dropped in place.
    fn poll_task(&mut self, cx: &mut Cx<'_>, slot: u32, area: TaskArea) {
        let waker = self.waker(slot);
        let mut ctx = Context::from_waker(&waker);
        // SAFETY: the caller got `area` for a slot whose header was written.
        let header = unsafe { area.header() };
        let _cur = header.acx.enter(cx);
        // SAFETY:
        // - the header was written; polls and drops of a slot's future happen only here,
        //   in `drop_if_idle` and in `finish` below, from the adapter's entry points, which
        //   are never nested (the loop calls the filesystem from one thread, one call at a
        //   time, and the futures cannot reach the adapter).
        match unsafe { area.poll(&mut ctx) } {
            Some(Poll::Ready(outcome)) => {
                // A cancelled request gets the cancel's answer whatever its future made of
                // it, on every transport (the classic one has sent it already): a future
                // that creates state the kernel must learn of checks
                // `AsyncCx::is_cancelled` after its last await, and undoes it.
                let outcome = match header.acx.cancel_answer() {
                    Some(e) => Outcome::Error(e),
                    None => outcome,
                };
                // SAFETY: as above.
                unsafe { area.finish(outcome) };
            }
            Some(Poll::Pending) => Self::drop_if_idle(area),
            None => {}
        }
    }

    /// Drops a cancelled task's future once none of its operations is in flight: it then
    /// waits on something other than the ring, which may never come.
    fn drop_if_idle(area: TaskArea) {
        // SAFETY: the caller got `area` for a slot whose header was written.
        let header = unsafe { area.header() };
        if let Some(e) = header.acx.cancel_answer() {
            if header.state.get() == TaskState::Running && header.acx.ops_in_flight() == 0 {
                // SAFETY: as in `poll_task` (the callers run inside its entry points).
                unsafe { area.drop_future(Outcome::Error(e)) };
            }
        }
    }

    /// Cancels `slot`'s running task (INTERRUPT: `EINTR`; stop: `EIO`): its operations in
    /// flight are cancelled and its future keeps running until they end, so whatever it
    /// owns (descriptors, buffers its operations use) is released by its own code once
    /// the kernel is done with it; it is dropped as soon as none is in flight. The request
    /// is answered once the future ended.
    fn cancel_task(cx: &mut Cx<'_>, area: TaskArea, answer: Errno) {
        // SAFETY: `area` came from `inited_area`.
        let header = unsafe { area.header() };
        let _cur = header.acx.enter(cx);
        header.acx.cancel_request(answer);
        Self::drop_if_idle(area);
    }

    /// Answers `slot`'s request if its future ended and its operations are done.
    fn settle(&mut self, cx: &mut Cx<'_>, slot: u32, area: TaskArea) {
        if self.current == Some(slot) {
            return;
        }
        // SAFETY: `area` came from `inited_area` or `start`.
        let header = unsafe { area.header() };
        let TaskState::Ending(outcome) = header.state.get() else {
            return;
        };
        if header.acx.ops_in_flight() > 0 {
            return;
        }
        header.state.set(TaskState::Empty);
        // `None`: answered by the session already (EINTR on the classic transport).
        if let Some(o) = cx.resume_outcome(slot, header.acx.unique()) {
            *o = outcome;
        }
    }

    /// Polls the tasks that were woken since the last call; if some woke themselves
    /// meanwhile, queues a NOP so the loop comes back for them.
    fn drain(&mut self, cx: &mut Cx<'_>) {
        let Some(words) = self.wake.as_ref().map(|_| WakeId::WORDS) else {
            return;
        };
        for w in 0..words {
            let mut bits = self.wake.as_ref().map_or(0, |id| id.take(w));
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                let slot = (w as u32) * 64 + b;
                if self.current == Some(slot) {
                    if let Some(id) = &self.wake {
                        id.wake(slot);
                    }
                    continue;
                }
                if let Some(area) = self.inited_area(cx, slot) {
                    self.poll_task(cx, slot, area);
                    self.settle(cx, slot, area);
                }
            }
        }
        if !self.wake_queued && self.wake.as_ref().is_some_and(WakeId::any) {
            let nop = crate::ring::Sqe::nop();
            self.wake_queued = cx.submit(&nop, WAKE_TAG).is_ok();
        }
    }

    /// Every slot that ever had a task (at most `MAX_SLOTS`).
    fn inited_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.inited.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64u32)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| (w as u32) * 64 + b)
        })
    }
}

impl<F: AsyncFilesystem> Drop for Async<F> {
    fn drop(&mut self) {
        #[cfg(feature = "std")]
        if self.owned {
            // SAFETY:
            // - `fs` came from `Box::leak` in `new` (`owned`), and no future uses it any
            //   more: a session's filesystem is dropped only after its loop, which dropped
            //   every future before it returned, or (one still pending at the end of a
            //   stop's grace, `Config::stop_grace`) leaked it unpolled with the slot memory.
            drop(unsafe { std::boxed::Box::from_raw(self.fs.as_ptr()) });
        }
    }
}

/// Where a request's answer goes: its reply payload area in the slot, as raw parts.
#[derive(Clone, Copy)]
struct Out {
    ptr: NonNull<u8>,
    /// The whole payload area.
    full: usize,
    /// What the request allows (READ size, directory buffer size...).
    cap: usize,
    limit: u32,
    wide: bool,
    slot: u32,
    unique: u64,
}

impl Out {
    /// Encodes an answer of kind `K` with `f`, as the synchronous reply would.
    fn encode<K>(self, f: impl FnOnce(Reply<'_, K>) -> Done) -> Outcome {
        let mut outcome = Outcome::Pending;
        // SAFETY:
        // - `ptr..ptr + full` is this request's reply payload area in its slot, which the
        //   task owns until it ends (the slot is held); this runs in the future after the
        //   handler returned, when no `ReadBuf`, `DirFill` or `XattrOut` of it lives, and
        //   the borrow ends within this call.
        let payload = unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.full) };
        // Encoding only: never deferred, so no loop owns a token of it.
        let whose = Whose {
            slot: self.slot,
            unique: self.unique,
            owner: 0,
        };
        let reply =
            Reply::<K>::new(payload, &mut outcome, whose, self.limit, None).with_wide(self.wide);
        let _ = f(reply);
        outcome
    }

    /// The reply buffer lent to a READ-like handler.
    ///
    /// # Safety
    ///
    /// Called once per request, and `encode` is not called while the `ReadBuf` lives.
    unsafe fn read_buf<'t>(self) -> ReadBuf<'t> {
        // SAFETY: forwarded: the request's payload area, capped at what it allows, lent
        // to this buffer alone.
        unsafe { ReadBuf::from_raw(self.ptr, self.cap) }
    }

    /// The reply buffer, capped at what the request allows, for a directory listing.
    ///
    /// # Safety
    ///
    /// As for [`read_buf`](Self::read_buf).
    unsafe fn listing<'t>(self) -> &'t mut [u8] {
        // SAFETY: as for `read_buf`.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// # Safety
    ///
    /// As for [`read_buf`](Self::read_buf).
    unsafe fn xattr<'t>(self) -> XattrOut<'t> {
        XattrOut {
            ptr: self.ptr,
            full: self.full,
            limit: self.limit,
            result: None,
            _buf: PhantomData,
        }
    }
}

fn filled(r: Result<usize, Errno>, cap: usize) -> Outcome {
    match r {
        Ok(n) => Outcome::Payload(n.min(cap)),
        Err(e) => Outcome::Error(e),
    }
}

fn empty(r: Result<(), Errno>) -> Outcome {
    match r {
        Ok(()) => Outcome::Payload(0),
        Err(e) => Outcome::Error(e),
    }
}

fn entry(out: Out, r: Result<Entry, Errno>) -> Outcome {
    out.encode::<kind::Entry>(|reply| match r {
        Ok(e) => reply.entry(&e),
        Err(e) => reply.error(e),
    })
}

fn attr(out: Out, r: Result<(Attr, Duration), Errno>) -> Outcome {
    out.encode::<kind::Attr>(|reply| match r {
        Ok((a, ttl)) => reply.attr(&a, ttl),
        Err(e) => reply.error(e),
    })
}

fn opened(out: Out, r: Result<Opened, Errno>) -> Outcome {
    out.encode::<kind::Open>(|reply| match r {
        Ok(Opened {
            fh,
            flags,
            backing_id: Some(id),
        }) => reply.opened_passthrough(fh, flags, id),
        Ok(o) => reply.opened(o.fh, o.flags),
        Err(e) => reply.error(e),
    })
}

fn created(out: Out, r: Result<(Entry, Opened), Errno>) -> Outcome {
    out.encode::<kind::Create>(|reply| match r {
        Ok((
            e,
            Opened {
                fh,
                flags,
                backing_id: Some(id),
            },
        )) => reply.created_passthrough(&e, fh, flags, id),
        Ok((e, o)) => reply.created(&e, o.fh, o.flags),
        Err(e) => reply.error(e),
    })
}

/// Extends a borrow of the request's own bytes to the task's life.
///
/// # Safety
///
/// `r` lies in the request's slot (its names, data, or a value copied there), which stays
/// untouched until the task ends: the slot is held by the filesystem until the adapter
/// resumes it, which it does only after the future is dropped and its operations are
/// done (the `task` module's slot rule).
unsafe fn lease<'t, T: ?Sized>(r: &T) -> &'t T {
    // SAFETY: forwarded.
    unsafe { &*core::ptr::from_ref(r) }
}

/// `Filesystem` for `Async<F>`: every method builds `F`'s future in the request's slot.
#[allow(clippy::too_many_arguments)]
impl<F: AsyncFilesystem> Filesystem for Async<F> {
    const TASK_BYTES: usize = Self::TASK_AREA_BYTES;
    const INTERRUPTS_ENTRIES: bool = true;

    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        self.get().init(cfg)
    }

    fn destroy(&mut self) {
        self.get().destroy();
    }

    fn lookup(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, out| async move {
            entry(out, fs.lookup(acx, parent, name).await)
        })
    }

    fn forget(&mut self, _cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {
        self.get().forget(node, nlookup);
    }

    fn batch_forget(&mut self, _cx: &mut Cx<'_>, forgets: Forgets<'_>) {
        self.get().batch_forget(forgets);
    }

    fn getattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            attr(out, fs.getattr(acx, node, fh).await)
        })
    }

    fn setattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        let set = *set;
        self.start(cx, reply, move |fs, acx, out| async move {
            attr(out, fs.setattr(acx, node, &set).await)
        })
    }

    fn readlink(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyData<'_>) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for data replies.
            let buf = unsafe { out.read_buf() };
            filled(fs.readlink(acx, node, buf).await, out.cap)
        })
    }

    fn symlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // SAFETY: both are in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        // SAFETY: as `name`.
        let target = unsafe { lease(target) };
        self.start(cx, reply, move |fs, acx, out| async move {
            entry(out, fs.symlink(acx, parent, name, target).await)
        })
    }

    fn mknod(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, out| async move {
            entry(out, fs.mknod(acx, parent, name, mode, umask, rdev).await)
        })
    }

    fn mkdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, out| async move {
            entry(out, fs.mkdir(acx, parent, name, mode, umask).await)
        })
    }

    fn unlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.unlink(acx, parent, name).await)
        })
    }

    fn rmdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.rmdir(acx, parent, name).await)
        })
    }

    fn rename(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: RenameFlags,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // SAFETY: both names are in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        // SAFETY: as `name`.
        let newname = unsafe { lease(newname) };
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(
                fs.rename(acx, parent, name, newparent, newname, flags)
                    .await,
            )
        })
    }

    fn link(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        // SAFETY: `newname` is in the request's slot (`lease`).
        let newname = unsafe { lease(newname) };
        self.start(cx, reply, move |fs, acx, out| async move {
            entry(out, fs.link(acx, node, newparent, newname).await)
        })
    }

    fn open(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        flags: OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            opened(out, fs.open(acx, node, flags).await)
        })
    }

    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        _size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for data replies.
            let buf = unsafe { out.read_buf() };
            filled(fs.read(acx, node, fh, offset, buf).await, out.cap)
        })
    }

    fn write(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: u32,
        reply: ReplyWrite<'_>,
    ) -> Done {
        // SAFETY: `data` is the request's payload in its slot (`lease`).
        let data = WriteBuf::new(unsafe { lease(data) });
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs
                .write(acx, node, fh, offset, data, write_flags, flags)
                .await;
            out.encode::<kind::Write>(|reply| match r {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            })
        })
    }

    fn flush(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.flush(acx, node, fh, lock_owner).await)
        })
    }

    fn release(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(
                fs.release(acx, node, fh, flags, release_flags, lock_owner)
                    .await,
            )
        })
    }

    fn fsync(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.fsync(acx, node, fh, datasync).await)
        })
    }

    fn opendir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        flags: OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            opened(out, fs.opendir(acx, node, flags).await)
        })
    }

    fn readdir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for listings.
            let mut fill = DirFill::new(unsafe { out.listing() });
            let r = fs.readdir(acx, node, fh, offset, &mut fill).await;
            filled(r.map(|()| fill.len()), out.cap)
        })
    }

    fn readdirplus(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDirPlus<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for listings.
            let mut fill = DirPlusFill::new(unsafe { out.listing() });
            let r = fs.readdirplus(acx, node, fh, offset, &mut fill).await;
            filled(r.map(|()| fill.len()), out.cap)
        })
    }

    fn releasedir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.releasedir(acx, node, fh, flags).await)
        })
    }

    fn fsyncdir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.fsyncdir(acx, node, fh, datasync).await)
        })
    }

    fn statfs(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.statfs(acx, node).await;
            out.encode::<kind::Statfs>(|reply| match r {
                Ok(st) => reply.statfs(&st),
                Err(e) => reply.error(e),
            })
        })
    }

    fn setxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // SAFETY: both are in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        // SAFETY: as `name`.
        let value = unsafe { lease(value) };
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.setxattr(acx, node, name, value, flags).await)
        })
    }

    fn getxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyXattr<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for xattr replies.
            let mut x = unsafe { out.xattr() };
            xattr(fs.getxattr(acx, node, name, &mut x).await, x)
        })
    }

    fn listxattr(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyXattr<'_>) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; `encode` is not used for xattr replies.
            let mut x = unsafe { out.xattr() };
            xattr(fs.listxattr(acx, node, &mut x).await, x)
        })
    }

    fn removexattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.removexattr(acx, node, name).await)
        })
    }

    fn access(&mut self, cx: &mut Cx<'_>, node: NodeId, mask: u32, reply: ReplyEmpty<'_>) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.access(acx, node, mask).await)
        })
    }

    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        // SAFETY: `name` is in the request's slot (`lease`).
        let name = unsafe { lease(name) };
        self.start(cx, reply, move |fs, acx, out| async move {
            created(out, fs.create(acx, parent, name, mode, umask, flags).await)
        })
    }

    fn getlk(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
        reply: ReplyLock<'_>,
    ) -> Done {
        let lock = *lock;
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.getlk(acx, node, fh, owner, &lock).await;
            out.encode::<kind::Lock>(|reply| match r {
                Ok(l) => reply.lock(&l),
                Err(e) => reply.error(e),
            })
        })
    }

    fn setlk(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
        sleep: bool,
        flock: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let lock = *lock;
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.setlk(acx, node, fh, owner, &lock, sleep, flock).await)
        })
    }

    fn bmap(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        blocksize: u32,
        block: u64,
        reply: ReplyBmap<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.bmap(acx, node, blocksize, block).await;
            out.encode::<kind::Bmap>(|reply| match r {
                Ok(b) => reply.block(b),
                Err(e) => reply.error(e),
            })
        })
    }

    fn ioctl(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        args: &IoctlArgs<'_>,
        reply: ReplyIoctl<'_>,
    ) -> Done {
        let args = IoctlArgs {
            // SAFETY: the input data is in the request's slot (`lease`).
            in_data: unsafe { lease(args.in_data) },
            ..*args
        };
        self.start(cx, reply, move |fs, acx, out| async move {
            // SAFETY: once per request; the answer's header part is written by `ioctl_out`
            // after the handler is done with the buffer.
            let buf = unsafe { out.read_buf() };
            let r = fs.ioctl(acx, node, &args, buf).await;
            ioctl_out(out, r)
        })
    }

    fn poll(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
        reply: ReplyPoll<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.poll(acx, node, fh, kh, flags, events).await;
            out.encode::<kind::Poll>(|reply| match r {
                Ok(ev) => reply.revents(ev),
                Err(e) => reply.error(e),
            })
        })
    }

    fn fallocate(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.fallocate(acx, node, fh, offset, length, mode).await)
        })
    }

    fn lseek(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        whence: u32,
        reply: ReplyLseek<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.lseek(acx, node, fh, offset, whence).await;
            out.encode::<kind::Lseek>(|reply| match r {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(e),
            })
        })
    }

    fn copy_file_range(
        &mut self,
        cx: &mut Cx<'_>,
        range: &CopyRange,
        reply: ReplyCopied<'_>,
    ) -> Done {
        let range = *range;
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.copy_file_range(acx, &range).await;
            out.encode::<kind::Copied>(|reply| match r {
                Ok(n) => reply.copied(n),
                Err(e) => reply.error(e),
            })
        })
    }

    fn statx(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: Option<u64>,
        flags: u32,
        mask: u32,
        reply: ReplyStatx<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            let r = fs.statx(acx, node, fh, flags, mask).await;
            out.encode::<kind::Statx>(|reply| match r {
                Ok((a, ttl)) => reply.statx(&a, ttl),
                Err(e) => reply.error(e),
            })
        })
    }

    fn tmpfile(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        self.start(cx, reply, move |fs, acx, out| async move {
            created(out, fs.tmpfile(acx, parent, mode, umask, flags).await)
        })
    }

    fn syncfs(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyEmpty<'_>) -> Done {
        self.start(cx, reply, move |fs, acx, _| async move {
            empty(fs.syncfs(acx, node).await)
        })
    }

    fn retrieve_reply(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        notify_unique: u64,
        offset: u64,
        data: &[u8],
    ) {
        self.get().retrieve_reply(node, notify_unique, offset, data);
    }

    fn interrupted(&mut self, cx: &mut Cx<'_>, unique: u64) {
        let slots = cx.slot_count() as u32;
        for slot in 0..slots {
            let Some(area) = self.inited_area(cx, slot) else {
                continue;
            };
            // SAFETY: `area` came from `inited_area`.
            let header = unsafe { area.header() };
            if header.state.get() == TaskState::Running && header.acx.unique() == unique {
                Self::cancel_task(cx, area, Errno::EINTR);
                self.settle(cx, slot, area);
                break;
            }
        }
        self.drain(cx);
    }

    fn stopping(&mut self, cx: &mut Cx<'_>) {
        let slots: arrayvec::ArrayVec<u32, { crate::state::MAX_SLOTS as usize }> =
            self.inited_slots().collect();
        for slot in slots {
            let Some(area) = self.inited_area(cx, slot) else {
                continue;
            };
            // SAFETY: `area` came from `inited_area`.
            let header = unsafe { area.header() };
            match header.state.get() {
                TaskState::Running => Self::cancel_task(cx, area, Errno::EIO),
                // The future ended; the operations left are orphans: cancel them too.
                TaskState::Ending(_) => {
                    let _cur = header.acx.enter(cx);
                    header.acx.cancel_request(Errno::EIO);
                }
                TaskState::Empty => {}
            }
            self.settle(cx, slot, area);
        }
    }

    fn completion(&mut self, cx: &mut Cx<'_>, tag: u64, result: i32, flags: u32) {
        if tag == WAKE_TAG {
            self.wake_queued = false;
            self.drain(cx);
            return;
        }
        let (slot, op) = ((tag >> 8) as u32, (tag & 0xff) as usize);
        let Some(area) = self.inited_area(cx, slot) else {
            return;
        };
        // SAFETY: `area` came from `inited_area`.
        let header = unsafe { area.header() };
        if header.acx.complete(op, result, flags) && header.state.get() == TaskState::Running {
            self.poll_task(cx, slot, area);
        }
        self.settle(cx, slot, area);
        self.drain(cx);
    }
}

fn xattr(r: Result<(), Errno>, mut x: XattrOut<'_>) -> Outcome {
    match r {
        Ok(()) => {
            if x.result.is_none() {
                x.set(&[]);
            }
            match x.result {
                Some(Ok(n)) => Outcome::Payload(n),
                Some(Err(e)) => Outcome::Error(e),
                None => Outcome::Error(Errno::EIO),
            }
        }
        Err(e) => Outcome::Error(e),
    }
}

/// The IOCTL answer: `fuse_ioctl_out` then the output bytes, which the handler wrote at
/// the start of the buffer: move them after the header.
fn ioctl_out(out: Out, r: Result<(i32, usize), Errno>) -> Outcome {
    let (result, n) = match r {
        Ok(v) => v,
        Err(e) => return Outcome::Error(e),
    };
    let head = core::mem::size_of::<crate::abi::kernel::fuse_ioctl_out>();
    let n = n.min(out.cap).min(out.full.saturating_sub(head));
    // SAFETY:
    // - `ptr..ptr + full` is this request's payload area, which the task owns; the
    //   handler's `ReadBuf` is gone (it returned), and the borrow ends within this call.
    let buf = unsafe { core::slice::from_raw_parts_mut(out.ptr.as_ptr(), out.full) };
    buf.copy_within(..n, head);
    let ioctl = crate::abi::kernel::fuse_ioctl_out {
        result,
        flags: 0,
        in_iovs: 0,
        out_iovs: 0,
    };
    match crate::abi::pod::write_prefix(buf, &ioctl) {
        Some(_) => Outcome::Payload(head + n),
        None => Outcome::Error(Errno::EIO),
    }
}
