//! The event loop: one io_uring, one thread, both transports.
//!
//! **Classic** (DESIGN.md, "One request, classic transport"): requests are READ from
//! `/dev/fuse` into a slot's request buffer, and replies WRITTEN from its reply buffer.
//! One READ (by default) stays armed on the device and moves from slot to slot: as soon as
//! it completes, the next idle slot's READ is queued, before the request is even handled.
//!
//! **Native** (FUSE-over-io_uring, fuse-protocol.md §5): each entry slot is registered with
//! the kernel (`FUSE_IO_URING_CMD_REGISTER`, an 80-byte `uring_cmd`); a completion means a
//! request sits in its buffers, and one `COMMIT_AND_FETCH` both delivers the reply and
//! re-arms the entry. `/dev/fuse` stays read for INIT, FORGET, INTERRUPT and notifications.
//!
//! Everything queued while completions are drained goes to the kernel with the next single
//! `io_uring_enter`, which also waits for the next completions.
//!
//! This module hands the kernel the addresses of slot buffers, so it is one of the few with
//! `unsafe`: an operation is queued only for a slot whose state says nothing else touches
//! those buffers until its completion is reaped, and the loop does not return while any is
//! in flight (see [`Loop::drain`]).
#![allow(unsafe_code)]

use arrayvec::ArrayVec;
use rustix::fd::BorrowedFd;

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::kernel::{
    FUSE_IO_URING_CMD_COMMIT_AND_FETCH, FUSE_IO_URING_CMD_REGISTER, FUSE_URING_IN_OUT_HEADER_SZ,
    FUSE_URING_OP_IN_OUT_SZ, fuse_out_header, fuse_uring_cmd_req, fuse_uring_ent_in_out,
};
use crate::abi::pod::{as_bytes, read_prefix, write_prefix};
use crate::abi::reply::{self as enc, OUT_HEADER_SIZE};
use crate::abi::request::{Request, fixed_arg_size};
use crate::cx::{Cx, Env, Info, Io};
use crate::error::{Error, errno};
use crate::fs::Filesystem;
use crate::init::{clamp_max_write, request_buffer_size};
use crate::notifier::Notifier;
use crate::ring::{Cqe, IoringAsyncCancelFlags, Ring, Sqe};
use crate::session::{
    Action, Config, Core, KIND_CANCEL, KIND_ENTRY, KIND_FS, KIND_GRACE, KIND_INIT, KIND_IRQ,
    KIND_NOTIFY, KIND_READ, KIND_STOP, KIND_WRITE, MAX_SLOTS, push, split_user_data, user_data,
};
use crate::slab::{Layout, Slab, SlotKind, SlotMeta};
use crate::stats::Stats;

/// The slab layout for a configuration. Every slot has the same stride: a request buffer
/// big enough for the largest WRITE (and a 64 KiB SETXATTR) — a native entry's payload
/// buffer — then a reply buffer for the largest READ plus the header — a native entry's
/// header page and aux page — and, for an asynchronous filesystem, a task area of `task`
/// bytes ([`Filesystem::TASK_BYTES`](crate::Filesystem)).
pub(crate) fn layout(config: &Config, task: usize) -> Layout {
    let max_write = clamp_max_write(config.max_write);
    let request = request_buffer_size(max_write);
    let reply = (OUT_HEADER_SIZE + (max_write as usize).max(64 * 1024)).max(8192);
    Layout::with_task(request, reply, task)
}

/// Offset of `fuse_uring_ent_in_out` in an entry's header buffer.
const ENT_IN_OUT: usize = FUSE_URING_IN_OUT_HEADER_SZ + FUSE_URING_OP_IN_OUT_SZ;
/// Native request payloads up to this size (any name or xattr name: the kernel caps those
/// at 255 bytes plus NUL; two for RENAME) are copied into the aux area so the reply can be
/// built in place; above it the request stays and the reply is built in the aux area,
/// which then bounds it to 4 KiB (only IOCTL can want more after a large input).
const COPY_ASIDE_MAX: usize = 512;
/// Where the REGISTER iovecs live in an entry's header page (after the 288-byte header).
const IOVECS: usize = 2048;

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The filesystem was unmounted (or the connection aborted).
    Unmounted,
    /// A stop was asked for (signal or [`StopHandle`](crate::StopHandle)).
    Stopped,
}

/// The native transport's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Native {
    /// Not used (classic transport, or the kernel did not offer it).
    Off,
    /// Wanted; INIT not answered yet.
    Wanted,
    /// INIT was answered with `FUSE_OVER_IO_URING`; REGISTER once its WRITE completes.
    Answered { init_slot: usize },
    /// Per-CPU: another loop answers INIT; REGISTER once its event says it did.
    #[cfg_attr(not(feature = "std"), allow(dead_code))] // per-CPU loops need std
    WaitInit,
    /// Entries registered (or being registered).
    On,
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
    pub lost: crate::lost::Watch,
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

/// Whether a pass that queued replies submits them in an `io_uring_enter` of their own,
/// before the device READ is armed (see [`Loop::run`]), decided from whether READs
/// submitted together with replies completed in that same enter.
#[derive(Debug, Default)]
struct ReplyOrder {
    /// Replies go first.
    split: bool,
    /// Passes left in split mode before one submits replies and READ together again.
    until_probe: u16,
    /// The READ watched: its slot and the number of the enter that submits it.
    probe: Option<(u16, u64)>,
    /// Watched READs that missed in a row.
    misses: u8,
}

/// In split mode, every this many passes one submits replies and READ together to see
/// whether requests now wait on the device (load), which makes the split useless.
const PROBE_EVERY: u16 = 64;
/// READs submitted with replies that must miss in a row before replies go first: under
/// load (fio QD32 on the server's CPU) one misses each time the queue drains, and the
/// split there cost 12% of the ops/s; two in a row happen at one request at a time.
const MISSES_TO_SPLIT: u8 = 2;

impl ReplyOrder {
    /// A pass queued replies and has a READ to arm: true if the replies go alone now;
    /// false if the READ, armed on `slot`, goes with them into enter number `enter`, which
    /// is then watched.
    fn replies_alone(&mut self, slot: Option<u16>, enter: u64) -> bool {
        if self.split && self.until_probe > 0 {
            self.until_probe -= 1;
            return true;
        }
        self.until_probe = PROBE_EVERY;
        self.probe = slot.map(|i| (i, enter));
        false
    }

    /// The READ of `slot` completed, reaped after enter number `enters`.
    fn read_done(&mut self, slot: usize, enters: u64) {
        let Some((watched, submitted)) = self.probe else {
            return;
        };
        if usize::from(watched) != slot {
            return;
        }
        self.probe = None;
        if submitted == enters {
            // Completed in the enter that submitted it: requests were waiting, the split
            // would only cost an enter.
            self.misses = 0;
            self.split = false;
        } else {
            self.misses = self.misses.saturating_add(1);
            self.split |= self.misses >= MISSES_TO_SPLIT;
        }
    }
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
        let mut init_armed = false;
        if let (Native::WaitInit, Some(fd)) = (self.native, self.init_event) {
            // SAFETY:
            // - `init_buf` is borrowed by this loop for its whole run, nothing else touches
            //   it, and the loop waits for this READ's completion before returning.
            let sqe = unsafe { Sqe::read(fd, self.init_buf, 0) }.user_data(user_data(KIND_INIT, 0));
            push(self.ring, &sqe, self.stats).map_err(|e| io_error("waiting for INIT", e))?;
            init_armed = true;
        }
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
                        if let Native::Answered { init_slot } = self.native {
                            if init_slot == i {
                                self.native = Native::On;
                                if cqe.res() >= 0 && end.is_none() {
                                    self.register_all(&mut slots);
                                }
                                for &fd in self.init_notify {
                                    crate::sys::signal_event(fd);
                                }
                            }
                        }
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
                        let on = self
                            .core
                            .settled()
                            .is_some_and(|n| n.flags.contains(InitFlags::OVER_IO_URING));
                        if on && end.is_none() && cqe.res() > 0 {
                            self.native = Native::On;
                            self.register_all(&mut slots);
                        } else {
                            self.native = Native::Off;
                        }
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

    /// Arms READs on idle device slots until `max_reads` are in flight.
    fn top_up(&mut self, slots: &mut Slots) -> Result<(), Error> {
        while slots.reads < self.max_reads {
            let Some(i) = slots.idle.pop() else { break };
            let i = usize::from(i);
            self.arm_read(i)
                .map_err(|e| io_error("queueing a read on /dev/fuse", e))?;
            if let Some(r) = slots.reading.get_mut(i) {
                *r = true;
            }
            slots.reads += 1;
        }
        Ok(())
    }

    /// Whether device slot `i` can take a new request: nothing in flight, not held.
    fn slot_free(&self, i: usize) -> bool {
        i < self.dev_slots
            && self
                .meta
                .get(i)
                .is_some_and(|m| !m.fs_holds && !m.write_in_flight)
    }

    fn slot_bytes(&mut self, i: usize) -> Option<&mut [u8]> {
        self.slab.slot(i)
    }

    fn arm_read(&mut self, i: usize) -> Result<(), Errno> {
        let layout = self.layout;
        if let Some(m) = self.meta.get_mut(i) {
            *m = SlotMeta {
                kind: SlotKind::Dev,
                reply_off: (layout.request + OUT_HEADER_SIZE) as u32,
                reply_len: (layout.reply - OUT_HEADER_SIZE) as u32,
                ..SlotMeta::default()
            };
        }
        let fuse = self.fuse;
        let buf = self
            .slot_bytes(i)
            .and_then(|s| s.get_mut(..layout.request))
            .ok_or(Errno::EINVAL)?;
        // SAFETY:
        // - `buf` is slot `i`'s request buffer in the slab, which this loop borrows for its
        //   whole run and which outlives it (`drain` waits for every READ's completion);
        // - slot `i` was idle (no READ, no reply in flight, not held by the filesystem), and
        //   the loop reads the buffer only after this READ completes.
        let sqe = unsafe { Sqe::read(fuse, buf, 0) }.user_data(user_data(KIND_READ, i as u64));
        push(self.ring, &sqe, self.stats)
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

    fn write_reply(&mut self, i: usize, header: &fuse_out_header) -> Result<(), Errno> {
        let layout = self.layout;
        let fuse = self.fuse;
        let buf = self
            .slot_bytes(i)
            .and_then(|s| s.get_mut(layout.reply_in_slot()))
            .ok_or(Errno::EINVAL)?;
        write_prefix(buf, header).ok_or(Errno::EINVAL)?;
        let msg = buf.get(..header.len as usize).ok_or(Errno::EINVAL)?;
        // SAFETY:
        // - `msg` is slot `i`'s reply buffer, borrowed by this loop for its whole run;
        // - the slot is marked `write_in_flight` below, and nothing writes a slot's reply
        //   buffer while that is set (a new request needs a new READ, armed only once the
        //   slot is idle again; resumed replies go only to slots the filesystem holds, which
        //   have no write in flight); `drain` waits for the completion.
        let sqe = unsafe { Sqe::write(fuse, msg, 0) }.user_data(user_data(KIND_WRITE, i as u64));
        push(self.ring, &sqe, self.stats)?;
        if let Some(m) = self.meta.get_mut(i) {
            m.write_in_flight = true;
        }
        Ok(())
    }

    fn on_read(&mut self, i: usize, cqe: &Cqe, resumed: &mut u32) -> Handled {
        let res = cqe.res();
        if res < 0 {
            return match Errno::from_wire(res) {
                // The connection is gone: unmounted, or aborted.
                Some(Errno::ENODEV | Errno::ECONNABORTED) => Handled::Gone,
                // Cancelled by our own stop, interrupted, or retryable (ENOENT: the request
                // was aborted while being copied): the slot is idle again.
                _ => Handled::Idle,
            };
        }
        self.stats.requests_dev += 1;
        let n = usize::try_from(res).unwrap_or(0);
        let Some((view, request, reply)) = self.slab.split(self.meta, i) else {
            return Handled::Idle;
        };
        let bytes = request.get(..n).unwrap_or_default();
        let payload = reply.get_mut(OUT_HEADER_SIZE..).unwrap_or_default();
        let want_native = self.native == Native::Wanted;
        let (action, unique, is_init) = match self.core.parse(bytes) {
            Ok(req) => {
                let env = Env {
                    slab: view,
                    resumed,
                    io: Some(Io {
                        ring: self.ring,
                        fuse: self.fuse,
                        notifier: self.notifier,
                    }),
                    stats: self.stats,
                    owner: self.lost.id,
                };
                let is_init = matches!(req.op, crate::abi::request::Operation::Init { .. });
                (
                    self.core.handle(env, i as u32, &req, payload, want_native),
                    req.header.unique,
                    is_init,
                )
            }
            Err(e) => (Core::<F>::malformed(bytes, e, self.stats), 0, false),
        };
        if is_init && want_native {
            let on = self
                .core
                .negotiated
                .is_some_and(|n| n.flags.contains(InitFlags::OVER_IO_URING));
            self.native = if on {
                Native::Answered { init_slot: i }
            } else {
                Native::Off
            };
        }
        self.finish(i, action, unique)
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

    fn on_write(&mut self, cqe: &Cqe) {
        match Errno::from_wire(cqe.res()) {
            // Written; or the request was interrupted and already completed, or the
            // connection went away: all normal.
            None | Some(Errno::ENOENT | Errno::ENODEV | Errno::ECONNABORTED) => {}
            Some(_) => self.stats.reply_failures += 1,
        }
    }

    /// Registers every native entry.
    fn register_all(&mut self, slots: &mut Slots) {
        for i in self.dev_slots..self.meta.len() {
            self.register(i, slots);
        }
    }

    /// `FUSE_IO_URING_CMD_REGISTER` of entry slot `i`: its header page and its payload
    /// buffer, as an `iovec[2]` kept in the header page.
    fn register(&mut self, i: usize, slots: &mut Slots) {
        let Some(SlotKind::Entry { qid }) = self.meta.get(i).map(|m| m.kind) else {
            return;
        };
        let (layout, fuse) = (self.layout, self.fuse);
        let Some(slot) = self.slot_bytes(i) else {
            return;
        };
        let (payload, rest) = slot.split_at_mut(layout.request);
        let payload_addr = payload.as_mut_ptr() as u64;
        let Some(header) = rest.get_mut(..4096) else {
            return;
        };
        let header_addr = header.as_mut_ptr() as u64;
        let iov = [header_addr, 4096, payload_addr, layout.request as u64];
        let Some(iov_area) = header.get_mut(IOVECS..IOVECS + 32) else {
            return;
        };
        for (chunk, v) in iov_area.chunks_exact_mut(8).zip(iov) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        let iov_addr = iov_area.as_ptr() as u64;
        let cmd = cmd_req(0, qid);
        // SAFETY:
        // - the command designates the `iovec[2]` at `iov_addr` (read during the REGISTER)
        //   and the two buffers it describes, which the kernel keeps using for every later
        //   request of this entry: all three lie in slot `i` of the slab, which this loop
        //   borrows for its whole run, and which no other slot or operation uses;
        // - the loop touches those buffers only between a completion of this entry and
        //   its next COMMIT_AND_FETCH, when the kernel does not, and `drain` waits for
        //   the entry's last completion (unmount, abort or cancel) before returning.
        let sqe = unsafe { Sqe::uring_cmd80(fuse, FUSE_IO_URING_CMD_REGISTER, iov_addr, 2, &cmd) }
            .user_data(user_data(KIND_ENTRY, i as u64));
        if push(self.ring, &sqe, self.stats).is_ok() {
            slots.entries += 1;
        }
    }

    /// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` of entry slot `i`: the out header into its
    /// header buffer, the payload length into `ent_in_out`, the payload (copied from the
    /// aux area if it was built there) into its payload buffer.
    fn commit(&mut self, i: usize, qid: u16, header: &fuse_out_header) -> Result<(), Errno> {
        let (layout, fuse) = (self.layout, self.fuse);
        let (commit_id, in_aux) = self
            .meta
            .get(i)
            .map(|m| (m.commit_id, m.reply_in_aux))
            .ok_or(Errno::EINVAL)?;
        let payload_len = (header.len as usize).saturating_sub(OUT_HEADER_SIZE);
        let slot = self.slot_bytes(i).ok_or(Errno::EINVAL)?;
        let (payload, rest) = slot.split_at_mut(layout.request);
        let (hdr, aux) = rest.split_at_mut_checked(4096).ok_or(Errno::EINVAL)?;
        if in_aux && payload_len > 0 {
            let src = aux.get(..payload_len).ok_or(Errno::EINVAL)?;
            payload
                .get_mut(..payload_len)
                .ok_or(Errno::EINVAL)?
                .copy_from_slice(src);
        }
        write_prefix(hdr, header).ok_or(Errno::EINVAL)?;
        let ent = fuse_uring_ent_in_out {
            commit_id,
            payload_sz: payload_len as u32,
            ..Default::default()
        };
        write_prefix(hdr.get_mut(ENT_IN_OUT..).ok_or(Errno::EINVAL)?, &ent).ok_or(Errno::EINVAL)?;
        if in_aux {
            self.stats.reply_bytes_copied += payload_len as u64;
        }
        let cmd = cmd_req(commit_id, qid);
        // SAFETY:
        // - COMMIT_AND_FETCH reads the reply from the entry's registered buffers (slot `i`,
        //   borrowed by this loop for its whole run) and later writes the next request
        //   there; the loop does not touch them again until this command completes.
        let sqe = unsafe { Sqe::uring_cmd80(fuse, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, 0, 0, &cmd) }
            .user_data(user_data(KIND_ENTRY, i as u64));
        push(self.ring, &sqe, self.stats)
    }

    /// A native entry completed: a request is in its buffers (`res == 0`), or the entry
    /// ended.
    fn on_entry(&mut self, i: usize, cqe: &Cqe, resumed: &mut u32) -> Handled {
        if let Some(m) = self.meta.get_mut(i) {
            m.answered = false;
        }
        match Errno::from_wire(cqe.res()) {
            None => {}
            // The connection is gone (unmount, abort, daemon cancel).
            Some(Errno::ENOTCONN | Errno::ECONNABORTED | Errno::ECANCELED | Errno::ENODEV) => {
                return Handled::Gone;
            }
            // REGISTER before INIT was complete: register again.
            Some(Errno::EAGAIN | Errno::EINTR) => return Handled::Idle,
            // The kernel refused the entry (it then falls back to /dev/fuse) or the commit.
            Some(_) => {
                self.stats.reply_failures += 1;
                return Handled::Busy;
            }
        }
        self.stats.requests_uring += 1;
        let layout = self.layout;
        let Some((view, request, reply)) = self.slab.split(self.meta, i) else {
            return Handled::Busy;
        };
        let Some((hdr, rest)) = reply.split_at_mut_checked(4096) else {
            return Handled::Busy;
        };
        let Some(aux) = rest.get_mut(..4096) else {
            return Handled::Busy;
        };
        let Some((ent, _)) = hdr
            .get(ENT_IN_OUT..)
            .and_then(read_prefix::<fuse_uring_ent_in_out>)
        else {
            return Handled::Busy;
        };
        let payload_sz = (ent.payload_sz as usize).min(request.len());
        // Small payloads (names) are copied aside so the reply can be built in place in the
        // payload buffer; larger ones (WRITE data, SETXATTR values, symlink targets) stay,
        // and the reply, small for every such request, is built in the aux area and copied
        // at commit: copying a 4 KiB WRITE aside cost 0.7 µs per request (perf, 4 KiB
        // random writes), copying its 8-byte reply costs nothing.
        let in_aux = payload_sz > COPY_ASIDE_MAX;
        let parse_cfg = self.core.parse;
        let (in_out, op_area) = hdr.split_at(FUSE_URING_IN_OUT_HEADER_SZ);
        let op_in = op_area.get(..FUSE_URING_OP_IN_OUT_SZ).unwrap_or_default();
        let (reply_area, parsed): (&mut [u8], _) = if in_aux {
            let var = request.get(..payload_sz).unwrap_or_default();
            (aux, parse_split(in_out, op_in, var, parse_cfg))
        } else {
            let (copy, _) = aux.split_at_mut(payload_sz);
            copy.copy_from_slice(request.get(..payload_sz).unwrap_or_default());
            self.stats.request_bytes_copied += payload_sz as u64;
            (request, parse_split(in_out, op_in, copy, parse_cfg))
        };
        if let Some(m) = view.meta.get_mut(i) {
            m.commit_id = ent.commit_id;
            m.reply_in_aux = in_aux;
            m.reply_off = if in_aux {
                layout.entry_aux().start as u32
            } else {
                0
            };
            m.reply_len = reply_area.len() as u32;
        }
        let (action, unique) = match parsed {
            Ok(req) => {
                let unique = req.header.unique;
                let env = Env {
                    slab: view,
                    resumed,
                    io: Some(Io {
                        ring: self.ring,
                        fuse: self.fuse,
                        notifier: self.notifier,
                    }),
                    stats: self.stats,
                    owner: self.lost.id,
                };
                (
                    self.core.handle(env, i as u32, &req, reply_area, false),
                    unique,
                )
            }
            Err((unique, e)) => {
                self.stats.malformed += 1;
                // Every ring request must be committed; without a readable unique, commit
                // an EIO under the kernel's commit id (which 6.18 sets to the unique).
                let u = unique.unwrap_or(ent.commit_id);
                (Action::Reply(enc::error_header(u, e.errno())), u)
            }
        };
        // Every request that arrives through the ring must be committed, even those that
        // take no reply (FORGET, NOTIFY_REPLY): commit an empty success.
        let action = match action {
            Action::Nothing => Action::Reply(enc::out_header(unique, 0)),
            other => other,
        };
        self.finish(i, action, unique)
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
            crate::lost::warn_lost();
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
        crate::lost::warn_abandoned(held, self.stop_grace);
    }

    fn cancel(&mut self, target: u64) {
        let sqe = Sqe::async_cancel(target, IoringAsyncCancelFlags::empty())
            .user_data(user_data(KIND_CANCEL, 0));
        let _ = push(self.ring, &sqe, self.stats);
    }

    /// Cancels the armed READs. (Native entries are left to the ring's teardown: see
    /// [`Loop::run`].)
    fn cancel_all(&mut self, slots: &Slots) {
        for (i, &reading) in slots.reading.iter().enumerate().take(self.dev_slots) {
            if reading {
                self.cancel(user_data(KIND_READ, i as u64));
            }
        }
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

/// The 80-byte command area of a FUSE `uring_cmd`: `struct fuse_uring_cmd_req`.
fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let req = fuse_uring_cmd_req {
        flags: 0,
        commit_id,
        qid,
        padding: [0; 6],
    };
    let mut cmd = [0u8; 80];
    if let Some(dst) = cmd.get_mut(..size_of::<fuse_uring_cmd_req>()) {
        dst.copy_from_slice(as_bytes(&req));
    }
    cmd
}

/// Parses an entry's request: the header area, the opcode's fixed part of `op_in`, the
/// payload. On error, the request's `unique` if its header was readable.
fn parse_split<'b>(
    in_out: &'b [u8],
    op_in: &'b [u8],
    payload: &'b [u8],
    cfg: crate::abi::request::ParseConfig,
) -> Result<Request<'b>, (Option<u64>, crate::abi::request::ParseError)> {
    let header = crate::abi::request::parse_header(in_out).map_err(|e| (None, e))?;
    let fixed = fixed_arg_size(crate::abi::Opcode::from(header.opcode), &cfg).min(op_in.len());
    let op_in = op_in.get(..fixed).unwrap_or_default();
    Request::parse_split(in_out, op_in, payload, &cfg).map_err(|e| (Some(header.unique), e))
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

#[cfg(test)]
mod tests {
    use super::{MISSES_TO_SPLIT, PROBE_EVERY, ReplyOrder};

    /// One pass that queues replies with the READ on slot 3, submitted in enter `enter`;
    /// the READ completes in that enter (`hit`) or a later one. Returns whether the
    /// replies went alone.
    fn pass(order: &mut ReplyOrder, enter: u64, hit: bool) -> bool {
        let alone = order.replies_alone(Some(3), enter);
        if !alone {
            order.read_done(3, if hit { enter } else { enter + 1 });
        }
        alone
    }

    #[test]
    fn two_misses_in_a_row_split_and_a_hit_ends_it() {
        let mut o = ReplyOrder::default();
        let mut enter = 1;
        // A miss alone (a drained queue under load) does not split.
        assert!(!pass(&mut o, enter, false));
        enter += 2;
        assert!(!pass(&mut o, enter, true));
        enter += 1;
        for _ in 0..MISSES_TO_SPLIT {
            assert!(!pass(&mut o, enter, false));
            enter += 2;
        }
        // Split: PROBE_EVERY passes alone, then one probe with the replies.
        for _ in 0..PROBE_EVERY {
            assert!(pass(&mut o, enter, false));
            enter += 1;
        }
        // The probe misses again: stay split.
        assert!(!pass(&mut o, enter, false));
        enter += 2;
        assert!(pass(&mut o, enter, false));
        // The next probe hits (requests queued): back to together at once.
        for _ in 1..PROBE_EVERY {
            assert!(pass(&mut o, enter, false));
        }
        assert!(!pass(&mut o, enter, true));
        enter += 1;
        assert!(!pass(&mut o, enter, true));
        assert!(!pass(&mut o, enter + 1, false));
        assert!(
            !pass(&mut o, enter + 3, true),
            "one miss after a hit must not split"
        );
    }

    #[test]
    fn only_the_watched_read_counts() {
        let mut o = ReplyOrder::default();
        assert!(!o.replies_alone(Some(5), 10));
        // Another slot's READ (armed earlier, reads_in_flight > 1) says nothing.
        o.read_done(4, 12);
        assert_eq!(o.misses, 0);
        o.read_done(5, 12);
        assert_eq!(o.misses, 1);
        // Seen once: a second completion of slot 5 is another READ.
        o.read_done(5, 20);
        assert_eq!(o.misses, 1);
        // No idle slot: nothing is watched.
        assert!(!o.replies_alone(None, 30));
        o.read_done(5, 31);
        assert_eq!(o.misses, 1);
    }
}
