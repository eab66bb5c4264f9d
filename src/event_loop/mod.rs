//! The event loop: one io_uring, one thread, both transports.
//!
//! This file is the loop both transports share: [`Loop::run`] submits what is queued and
//! waits in one `io_uring_enter`, reaps the completions, and sends the replies the
//! filesystem resumed; [`Loop::drain`] lets everything in flight finish before the loop
//! returns. What a transport does with a slot is in its own file:
//! - [`classic`]: requests READ from `/dev/fuse` into a slot's request buffer and replies
//!   WRITTEN from its reply buffer;
//! - [`native`]: the kernel's FUSE-over-io_uring, one registered entry per slot, a reply
//!   and the next request in one `COMMIT_AND_FETCH`.
//!
//! Below the transports: [`request`] handles one request whichever transport brought it
//! (INIT, INTERRUPT, and everything else through [`dispatch`] to the
//! [`Filesystem`](crate::Filesystem) method), [`init`] negotiates INIT, and `forward`
//! passes INTERRUPTs between per-CPU loops. A new opcode goes into `dispatch` (after
//! `abi` parses it and `api` has its method and reply); a new transport is a file here
//! beside `classic` and `native`, with its own completion kind in
//! [`tags`](crate::state::tags).
//!
//! Everything queued while completions are drained goes to the kernel with the next single
//! `io_uring_enter`, which also waits for the next completions.
//!
//! The loop hands the kernel the addresses of slot buffers and event buffers, so this
//! module and its two transports have `unsafe`: an operation is queued only for a slot
//! whose state says nothing else touches those buffers until its completion is reaped, and
//! the loop does not return while any is in flight (see [`Loop::drain`]).
#![allow(unsafe_code)]

mod classic;
pub(crate) mod dispatch;
#[cfg(feature = "std")]
pub(crate) mod forward;
pub(crate) mod init;
mod native;
pub(crate) mod request;

use arrayvec::ArrayVec;
use rustix::fd::BorrowedFd;

use crate::abi::Errno;
use crate::abi::kernel::fuse_out_header;
use crate::abi::reply::OUT_HEADER_SIZE;
use crate::api::cx::{Cx, Env, Info, Io};
use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::event_loop::init::{clamp_max_write, request_buffer_size};
use crate::ring::{Cqe, IoringAsyncCancelFlags, Ring, Sqe};
use crate::state::notifier::Notifier;
use crate::state::tags::{
    KIND_CANCEL, KIND_ENTRY, KIND_FS, KIND_GRACE, KIND_INIT, KIND_IRQ, KIND_NOTIFY, KIND_READ,
    KIND_STOP, KIND_WRITE, push, split_user_data, user_data,
};
use crate::state::{Layout, MAX_SLOTS, Slab, SlotKind, SlotMeta, Stats};
use crate::sys::errno;

use classic::ReplyOrder;
pub(crate) use native::Native;
use request::{Action, Core};

/// The slab layout for a `max_write`. Every slot has the same stride: a request buffer
/// big enough for the largest WRITE (and a 64 KiB SETXATTR) — a native entry's payload
/// buffer — then a reply buffer for the largest READ plus the header — a native entry's
/// header page and aux page — and, for an asynchronous filesystem, a task area of `task`
/// bytes ([`Filesystem::TASK_BYTES`](crate::Filesystem)).
pub(crate) fn layout(max_write: u32, task: usize) -> Layout {
    let max_write = clamp_max_write(max_write);
    let request = request_buffer_size(max_write);
    let reply = (OUT_HEADER_SIZE + (max_write as usize).max(64 * 1024)).max(8192);
    Layout::with_task(request, reply, task)
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The filesystem was unmounted (or the connection aborted).
    Unmounted,
    /// A stop was asked for (signal or [`StopHandle`](crate::StopHandle)).
    Stopped,
}

pub(crate) struct Loop<'a, F> {
    pub core: &'a mut Core<F>,
    pub ring: &'a mut Ring,
    pub fuse: BorrowedFd<'a>,
    pub slab: Slab<'a>,
    pub layout: Layout,
    pub meta: &'a mut [SlotMeta],
    pub notifier: &'a mut Notifier,
    pub stats: &'a mut Stats,
    /// The stop eventfd and the 8 bytes its READ lands in.
    pub stop_fd: Option<BorrowedFd<'a>>,
    pub stop_buf: &'a mut [u8; 8],
    /// READs kept armed on the device at once (see [`Config::reads_in_flight`]).
    pub max_reads: usize,
    /// Whether replies may go out ahead of the READ ([`Config::replies_first`]).
    pub replies_first: bool,
    /// Slots `0..dev_slots` serve `/dev/fuse`; the rest are native entries.
    pub dev_slots: usize,
    /// The native transport's state (in per-CPU mode only the first loop answers INIT).
    pub native: Native,
    /// [`Native::WaitInit`]: the eventfd that says INIT was answered, and its READ's 8 bytes.
    pub init_event: Option<BorrowedFd<'a>>,
    pub init_buf: &'a mut [u8; 8],
    /// The other loops' INIT eventfds, written once this loop's INIT reply is written.
    pub init_notify: &'a [BorrowedFd<'a>],
    /// Per-CPU: the eventfd another loop writes when it passes on an INTERRUPT, and the 8
    /// bytes its READ lands in.
    pub irq_event: Option<BorrowedFd<'a>>,
    pub irq_buf: &'a mut [u8; 8],
    /// Tokens of this loop dropped unanswered (its id is their owner).
    pub lost: crate::state::lost::Watch,
    /// How long a stop waits for requests the filesystem still holds
    /// ([`Config::stop_grace`]).
    pub stop_grace: core::time::Duration,
}

/// Which slots are idle (no READ, no reply in flight, not held by the filesystem), which
/// have a READ armed, and how many entries are with the kernel.
struct Slots {
    idle: ArrayVec<u16, { MAX_SLOTS as usize }>,
    reading: [bool; MAX_SLOTS as usize],
    reads: usize,
    /// Native entries registered or committed and not completed yet.
    entries: usize,
    /// Whether replies go out before the next READ is armed.
    order: ReplyOrder,
}

impl<F: Filesystem> Loop<'_, F> {
    /// Serves requests until unmount or stop, then waits for everything in flight.
    #[allow(clippy::too_many_lines)] // one match over the completion kinds reads best whole
    pub(crate) fn run(mut self) -> Result<End, Error> {
        let mut slots = Slots {
            idle: ArrayVec::new(),
            reading: [false; MAX_SLOTS as usize],
            reads: 0,
            entries: 0,
            order: ReplyOrder::default(),
        };
        // Device slots are idle; entry slots carry their queue (set by the session).
        for i in (0..self.dev_slots).rev() {
            slots.idle.push(i as u16);
        }
        if let Some(fd) = self.stop_fd {
            // SAFETY:
            // - `stop_buf` is borrowed by this loop for its whole run, nothing else reads or
            //   writes it, and `drain` waits for this READ's completion before returning.
            let sqe = unsafe { Sqe::read(fd, self.stop_buf, 0) }.user_data(user_data(KIND_STOP, 0));
            push(self.ring, &sqe, self.stats)
                .map_err(|e| io_error("watching the stop event", e))?;
        }
        let mut stop_armed = self.stop_fd.is_some();
        let mut init_armed = self.arm_init_event()?;
        if self.native == Native::On {
            // INIT was answered before the loop (`Session::new`): register now.
            self.register_all(&mut slots);
        }
        let mut irq_armed = self.arm_irq();
        let mut irq_cancelled = false;
        let mut end = None;
        let mut told_stopping = false;
        let mut resumed = 0u32;
        self.top_up(&mut slots)?;
        // Replies first, READ next. A reply wakes its client; when the client shares this
        // CPU it runs only once this thread leaves the kernel, so a device READ submitted in
        // the same enter as the reply finds no request yet and takes io_uring's slow path:
        // EAGAIN, a poll armed, the client's next request waking it through task work, the
        // READ issued again (perf, both on one CPU: the loop then spent 0.2-0.5 µs more per
        // request than fuser's blocking read(), which finds the request already queued).
        // Submitting the replies in an enter of their own lets the client run at its return
        // and the READ armed next completes at once. Under load, requests already wait on
        // the device and the split only adds an enter and a context switch, so it is used
        // only after two READs submitted with replies missed in a row, and every
        // `PROBE_EVERY` passes one READ goes with the replies again to check.
        let mut replies_before = self.stats.replies;
        // Once ending, wait for the device READs and the INIT event, not for idle native
        // entries: the kernel completes those only on unmount, and dropping the ring (after
        // this loop) cancels them through FUSE's own cancel path, which ASYNC_CANCEL does
        // not reach.
        while end.is_none() || slots.reads > 0 || init_armed || irq_armed {
            let replied = self.stats.replies != replies_before;
            replies_before = self.stats.replies;
            let may_split =
                self.replies_first && end.is_none() && replied && slots.reads < self.max_reads;
            let next_enter = self.stats.enters + 1;
            let entered = if may_split
                && slots
                    .order
                    .replies_alone(slots.idle.last().copied(), next_enter)
            {
                // No wait: the next pass reaps the replies' completions, arms the READ and
                // waits.
                self.stats.replies_first += 1;
                self.ring.submit()
            } else {
                if end.is_none() {
                    self.top_up(&mut slots)?;
                }
                self.ring.submit_and_wait(1)
            };
            match entered {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(Error::Io {
                        what: "io_uring_enter",
                        errno: errno(e),
                    });
                }
            }
            self.stats.enters += 1;
            while let Some(cqe) = self.ring.next_completion() {
                self.stats.completions += 1;
                let (kind, index) = split_user_data(cqe.user_data());
                let i = index as usize;
                match kind {
                    KIND_READ => {
                        if let Some(r) = slots.reading.get_mut(i) {
                            *r = false;
                        }
                        slots.order.read_done(i, self.stats.enters);
                        slots.reads -= 1;
                        match self.on_read(i, &cqe, &mut resumed) {
                            Handled::Idle => slots.idle.push(i as u16),
                            Handled::Busy => {}
                            Handled::Gone => {
                                slots.idle.push(i as u16);
                                end.get_or_insert(End::Unmounted);
                            }
                        }
                    }
                    KIND_WRITE => {
                        if let Some(m) = self.meta.get_mut(i) {
                            m.write_in_flight = false;
                        }
                        self.on_write(&cqe);
                        self.init_written(i, cqe.res(), end.is_some(), &mut slots);
                        if self.slot_free(i) {
                            slots.idle.push(i as u16);
                        }
                    }
                    KIND_ENTRY => {
                        slots.entries -= 1;
                        match self.on_entry(i, &cqe, &mut resumed) {
                            Handled::Idle => {
                                if end.is_none() {
                                    self.register(i, &mut slots);
                                }
                            }
                            Handled::Busy => {
                                // Answered: the commit handed the entry back to the kernel.
                                if self.meta.get(i).is_some_and(|m| m.answered) {
                                    slots.entries += 1;
                                }
                            }
                            Handled::Gone => {
                                end.get_or_insert(End::Unmounted);
                            }
                        }
                    }
                    KIND_NOTIFY => self.notifier.completed(i, cqe.res(), self.stats),
                    KIND_INIT => {
                        init_armed = false;
                        self.init_elsewhere(cqe.res(), end.is_some(), &mut slots);
                    }
                    KIND_STOP => {
                        stop_armed = false;
                        if end.is_none() && cqe.res() > 0 {
                            end = Some(End::Stopped);
                            self.cancel_all(&slots);
                            if init_armed {
                                self.cancel(user_data(KIND_INIT, 0));
                            }
                        }
                    }
                    KIND_FS => {
                        self.stats.fs_ops_in_flight = self.stats.fs_ops_in_flight.saturating_sub(1);
                        self.on_fs_completion(index, &cqe, &mut resumed);
                    }
                    KIND_IRQ => {
                        irq_armed = false;
                        if cqe.res() > 0 {
                            for unique in self.core.forwarded() {
                                if unique != 0 {
                                    self.with_core(&mut resumed, |core, env| {
                                        core.interrupt_forwarded(env, unique);
                                    });
                                }
                            }
                        }
                        if end.is_none() {
                            irq_armed = self.arm_irq();
                        }
                    }
                    _ => {} // KIND_CANCEL and anything unknown need no action.
                }
                if end.is_some() && irq_armed && !irq_cancelled {
                    irq_cancelled = true;
                    self.cancel(user_data(KIND_IRQ, 0));
                }
                if end.is_some() && !told_stopping {
                    told_stopping = true;
                    self.tell_stopping(&mut resumed);
                }
                if end.is_some() && slots.reads > 0 {
                    self.cancel_all(&slots);
                }
            }
            self.collect_lost(&mut resumed);
            // Once per pass, not per completion: `send_resumed` looks at every slot, and a
            // pass may reap dozens of completions that each resume one (a batch of timers
            // expiring: 7 % of the loop's CPU went into these scans at 128 slots).
            if resumed > 0 {
                resumed = 0;
                self.send_resumed(&mut slots);
            }
            if end == Some(End::Unmounted) && stop_armed {
                // The device is gone; stop watching the event so nothing stays in flight.
                self.cancel(user_data(KIND_STOP, 0));
                stop_armed = false;
            }
        }
        self.drain(stop_armed)?;
        Ok(end.unwrap_or(End::Unmounted))
    }

    fn slot_bytes(&mut self, i: usize) -> Option<&mut [u8]> {
        self.slab.slot(i)
    }

    /// Queues the reply of slot `i`, whose payload is already in place.
    fn send(&mut self, i: usize, header: &fuse_out_header) -> Result<(), Errno> {
        let kind = self.meta.get(i).map(|m| m.kind).ok_or(Errno::EINVAL)?;
        match kind {
            SlotKind::Dev => self.write_reply(i, header)?,
            SlotKind::Entry { qid } => self.commit(i, qid, header)?,
        }
        if let Some(m) = self.meta.get_mut(i) {
            m.answered = true;
        }
        self.stats.replies += 1;
        if header.error != 0 {
            self.stats.errors += 1;
        }
        Ok(())
    }

    /// What to do with slot `i` after the filesystem handled its request.
    fn finish(&mut self, i: usize, action: Action, unique: u64) -> Handled {
        match action {
            Action::Reply(h) => {
                if self.send(i, &h).is_err() {
                    self.stats.reply_failures += 1;
                    return Handled::Idle;
                }
                Handled::Busy
            }
            Action::Nothing => Handled::Idle,
            Action::Deferred => {
                self.stats.deferred += 1;
                if let Some(m) = self.meta.get_mut(i) {
                    // Resumed in the same call: `send_resumed` sends it after the pass.
                    m.fs_holds = !m.resumed;
                    m.unique = unique;
                }
                Handled::Busy
            }
        }
    }

    /// Arms the READ of the INTERRUPT eventfd (per-CPU); whether it is armed.
    fn arm_irq(&mut self) -> bool {
        let Some(fd) = self.irq_event else {
            return false;
        };
        // SAFETY:
        // - `irq_buf` is borrowed by this loop for its whole run, nothing else touches it,
        //   and the loop does not end while this READ is in flight (`irq_armed`).
        let sqe = unsafe { Sqe::read(fd, self.irq_buf, 0) }.user_data(user_data(KIND_IRQ, 0));
        push(self.ring, &sqe, self.stats).is_ok()
    }

    /// Calls `f` with the core and an environment reaching every slot (outside a request).
    fn with_core(&mut self, resumed: &mut u32, f: impl FnOnce(&mut Core<F>, Env<'_>)) {
        let env = Env {
            slab: self.slab.whole(self.meta),
            resumed,
            io: Some(Io {
                ring: self.ring,
                fuse: self.fuse,
                notifier: self.notifier,
            }),
            stats: self.stats,
            owner: self.lost.id,
        };
        f(self.core, env);
    }

    /// Calls the filesystem outside any request (`Cx::unique() == 0`), with every slot's
    /// reply buffer reachable for [`Cx::resume`].
    fn with_fs(&mut self, resumed: &mut u32, f: impl FnOnce(&mut F, &mut Cx<'_>)) {
        self.with_core(resumed, |core, env| {
            let mut cx = Cx {
                info: Info::default(),
                env,
                lent: None,
            };
            f(&mut core.fs, &mut cx);
        });
    }

    /// Tells the filesystem the loop is ending, so it can cancel its own operations and
    /// resume what it holds.
    fn tell_stopping(&mut self, resumed: &mut u32) {
        self.with_fs(resumed, F::stopping);
    }

    fn on_fs_completion(&mut self, tag: u64, cqe: &Cqe, resumed: &mut u32) {
        let (res, flags) = (cqe.res(), cqe.flags().bits());
        self.with_fs(resumed, |fs, cx| fs.completion(cx, tag, res, flags));
    }

    /// Sends the replies the filesystem resumed, and frees slots it let go of.
    fn send_resumed(&mut self, slots: &mut Slots) {
        for i in 0..self.meta.len() {
            let Some(m) = self.meta.get_mut(i) else {
                continue;
            };
            if !m.resumed {
                continue;
            }
            let kind = m.kind;
            if let Some(h) = m.take_resumed() {
                if self.send(i, &h).is_err() {
                    self.stats.reply_failures += 1;
                } else if let SlotKind::Entry { .. } = kind {
                    slots.entries += 1;
                }
            }
            if self.slot_free(i)
                && !slots.idle.contains(&(i as u16))
                && !slots.reading.get(i).copied().unwrap_or(false)
            {
                slots.idle.push(i as u16);
            }
        }
    }

    /// Answers `EIO` to the requests whose token the filesystem dropped unanswered (see
    /// `lost`); counts resumed slots in `resumed`.
    fn collect_lost(&mut self, resumed: &mut u32) {
        let (meta, stats) = (&mut *self.meta, &mut *self.stats);
        let before = stats.lost_deferred;
        self.lost.take(|slot, unique| {
            if meta
                .get_mut(slot as usize)
                .is_some_and(|m| m.release_lost(unique))
            {
                stats.lost_deferred += 1;
                *resumed += 1;
            }
        });
        if stats.lost_deferred != before {
            crate::state::lost::warn_lost();
        }
    }

    /// At the end of a stop's grace: answers `EIO` to every `/dev/fuse` request the
    /// filesystem still holds. Native entries are not committed (the kernel could refill
    /// one while the filesystem's own operations still use its buffers): the connection's
    /// end answers them once the session lets go of the device.
    fn abandon_held(&mut self, resumed: &mut u32) {
        let mut held = 0u64;
        for m in self.meta.iter_mut().filter(|m| m.fs_holds && !m.answered) {
            held += 1;
            if m.kind == SlotKind::Dev {
                m.answer_held(Errno::EIO);
                *resumed += 1;
            }
        }
        self.stats.abandoned += held;
        crate::state::lost::warn_abandoned(held, self.stop_grace);
    }

    fn cancel(&mut self, target: u64) {
        let sqe = Sqe::async_cancel(target, IoringAsyncCancelFlags::empty())
            .user_data(user_data(KIND_CANCEL, 0));
        let _ = push(self.ring, &sqe, self.stats);
    }

    /// Waits until no operation of the loop is in flight: replies being written, deferred
    /// requests (the filesystem still resumes them), notifications, the filesystem's own
    /// operations, the stop event's READ.
    fn drain(&mut self, mut stop_armed: bool) -> Result<(), Error> {
        if stop_armed {
            self.cancel(user_data(KIND_STOP, 0));
        }
        // Requests the filesystem holds get `stop_grace` to be answered; a timeout (which
        // points at no memory of ours, so it may still be pending when the ring goes) ends
        // the wait.
        let mut resumed = 0u32;
        let mut grace_over = false;
        if self.meta.iter().any(|m| m.fs_holds) {
            let sqe = Sqe::timeout(self.stop_grace, 0, crate::ring::IoringTimeoutFlags::empty())
                .user_data(user_data(KIND_GRACE, 0));
            if push(self.ring, &sqe, self.stats).is_err() {
                // No way to wait a bounded time: no wait at all.
                grace_over = true;
                self.abandon_held(&mut resumed);
            }
        }
        let mut slots = Slots {
            idle: ArrayVec::new(),
            reading: [false; MAX_SLOTS as usize],
            reads: 0,
            entries: 0,
            order: ReplyOrder::default(),
        };
        loop {
            let writes = self.meta.iter().any(|m| m.write_in_flight);
            let held = !grace_over && self.meta.iter().any(|m| m.fs_holds);
            if !writes
                && !held
                && !stop_armed
                && !self.notifier.busy()
                && self.stats.fs_ops_in_flight == 0
            {
                // Hand the kernel what is still queued (a last COMMIT_AND_FETCH delivers its
                // reply when submitted; its fetch half is then cancelled with the ring).
                let _ = self.ring.submit();
                return Ok(());
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(Error::Io {
                        what: "io_uring_enter",
                        errno: errno(e),
                    });
                }
            }
            self.stats.enters += 1;
            while let Some(cqe) = self.ring.next_completion() {
                let (kind, index) = split_user_data(cqe.user_data());
                let i = index as usize;
                match kind {
                    KIND_WRITE => {
                        if let Some(m) = self.meta.get_mut(i) {
                            m.write_in_flight = false;
                        }
                    }
                    // An entry completed while ending: a request arrived in it, or the
                    // connection went away. Nothing more is served.
                    KIND_ENTRY => slots.entries = slots.entries.saturating_sub(1),
                    KIND_NOTIFY => self.notifier.completed(i, cqe.res(), self.stats),
                    KIND_STOP => stop_armed = false,
                    KIND_FS => {
                        self.stats.fs_ops_in_flight = self.stats.fs_ops_in_flight.saturating_sub(1);
                        self.on_fs_completion(index, &cqe, &mut resumed);
                    }
                    KIND_GRACE if !grace_over => {
                        grace_over = true;
                        self.abandon_held(&mut resumed);
                    }
                    _ => {}
                }
            }
            self.collect_lost(&mut resumed);
            if resumed > 0 {
                resumed = 0;
                self.send_resumed(&mut slots);
            }
        }
    }
}

enum Handled {
    /// The slot is free again (no reply needed, or the operation failed harmlessly).
    Idle,
    /// The slot is busy (a reply in flight, or deferred).
    Busy,
    /// The connection is gone.
    Gone,
}

fn io_error(what: &'static str, errno: Errno) -> Error {
    Error::Io { what, errno }
}
