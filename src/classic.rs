//! The classic transport: requests read from `/dev/fuse` and replies written to it, all
//! through the loop's io_uring (DESIGN.md, "One request, classic transport").
//!
//! Every slot keeps one READ armed on the device. A completed READ is a request: it is
//! parsed, dispatched, its reply encoded into the slot's reply buffer and a WRITE queued;
//! the WRITE's completion re-arms the READ. Everything queued while draining completions
//! goes to the kernel with the next single `io_uring_enter`, which also waits for the next
//! completions: with k requests ready, one syscall serves k.
//!
//! This module hands the kernel the addresses of slot buffers, so it is one of the few
//! with `unsafe`: each READ or WRITE is queued only for a slot whose state says nothing
//! else touches that buffer until the completion is reaped, and the loop does not return
//! while any is in flight (see [`Loop::drain`]).
#![allow(unsafe_code)]

use arrayvec::ArrayVec;
use rustix::fd::BorrowedFd;

use crate::abi::Errno;
use crate::abi::kernel::fuse_out_header;
use crate::abi::pod::write_prefix;
use crate::abi::reply::{self as enc, OUT_HEADER_SIZE};
use crate::cx::{Cx, Env, Info, Io};
use crate::error::{Error, errno};
use crate::fs::Filesystem;
use crate::init::{clamp_max_write, request_buffer_size};
use crate::notifier::Notifier;
use crate::reply::Outcome;
use crate::ring::{Cqe, IoringAsyncCancelFlags, Ring, Sqe};
use crate::session::{
    Action, Config, Core, KIND_CANCEL, KIND_FS, KIND_NOTIFY, KIND_READ, KIND_STOP, KIND_WRITE,
    MAX_SLOTS, push, split_user_data, user_data,
};
use crate::slab::{Layout, SlabView, SlotMeta};
use crate::stats::Stats;

/// The slab layout for a configuration: request buffers big enough for the largest WRITE
/// (and a 64 KiB SETXATTR), reply buffers for the largest READ plus the header.
pub(crate) fn layout(config: &Config) -> Layout {
    let max_write = clamp_max_write(config.max_write);
    let request = request_buffer_size(max_write);
    let reply = OUT_HEADER_SIZE + (max_write as usize).max(64 * 1024);
    Layout::new(request, reply)
}

/// How the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The filesystem was unmounted (or the connection aborted): reads got ENODEV.
    Unmounted,
    /// A stop was asked for (signal or [`StopHandle`](crate::StopHandle)).
    Stopped,
}

pub(crate) struct Loop<'a, F> {
    pub core: &'a mut Core<F>,
    pub ring: &'a mut Ring,
    pub fuse: BorrowedFd<'a>,
    pub slab: &'a mut [u8],
    pub layout: Layout,
    pub meta: &'a mut [SlotMeta],
    pub notifier: &'a mut Notifier,
    pub stats: &'a mut Stats,
    /// The stop eventfd and the 8 bytes its READ lands in.
    pub stop_fd: Option<BorrowedFd<'a>>,
    pub stop_buf: &'a mut [u8; 8],
    /// READs kept armed on the device at once (see [`Config::reads_in_flight`]).
    pub max_reads: usize,
}

/// Which slots are idle (no READ, no reply in flight, not held by the filesystem), and
/// which have a READ armed.
struct Slots {
    idle: ArrayVec<u16, { MAX_SLOTS as usize }>,
    reading: [bool; MAX_SLOTS as usize],
    reads: usize,
}

impl<F: Filesystem> Loop<'_, F> {
    /// Serves requests until unmount or stop, then waits for everything in flight.
    pub(crate) fn run(mut self) -> Result<End, Error> {
        let mut slots = Slots {
            idle: ArrayVec::new(),
            reading: [false; MAX_SLOTS as usize],
            reads: 0,
        };
        // Pop order: slot 0 first.
        for i in (0..self.meta.len()).rev() {
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
        let mut end = None;
        let mut resumed = 0u32;
        self.top_up(&mut slots)?;
        while end.is_none() || slots.reads > 0 {
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
                self.stats.completions += 1;
                let (kind, index) = split_user_data(cqe.user_data());
                let i = index as usize;
                match kind {
                    KIND_READ => {
                        if let Some(r) = slots.reading.get_mut(i) {
                            *r = false;
                        }
                        slots.reads -= 1;
                        match self.on_read(i, &cqe, &mut resumed) {
                            ReadResult::Idle => slots.idle.push(i as u16),
                            ReadResult::Busy => {}
                            ReadResult::Gone => {
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
                        if self.slot_free(i) {
                            slots.idle.push(i as u16);
                        }
                    }
                    KIND_NOTIFY => self.notifier.completed(i, cqe.res(), self.stats),
                    KIND_STOP => {
                        stop_armed = false;
                        if end.is_none() && cqe.res() > 0 {
                            end = Some(End::Stopped);
                            self.cancel_reads(&slots);
                        }
                    }
                    KIND_FS => {
                        self.stats.fs_ops_in_flight = self.stats.fs_ops_in_flight.saturating_sub(1);
                        self.on_fs_completion(index, &cqe, &mut resumed);
                    }
                    _ => {} // KIND_CANCEL and anything unknown need no action.
                }
                if resumed > 0 {
                    resumed = 0;
                    self.send_resumed(&mut slots.idle);
                }
                if end.is_none() {
                    // Keep the device read: arm the next READ as soon as a request arrives,
                    // before its reply goes out, so queued requests keep flowing.
                    self.top_up(&mut slots)?;
                }
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

    /// Arms READs on idle slots until `max_reads` are in flight.
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

    /// Whether slot `i` can take a new request: nothing in flight, not held.
    fn slot_free(&self, i: usize) -> bool {
        self.meta
            .get(i)
            .is_some_and(|m| !m.fs_holds && !m.write_in_flight)
    }

    fn arm_read(&mut self, i: usize) -> Result<(), Errno> {
        if let Some(m) = self.meta.get_mut(i) {
            *m = SlotMeta::default();
        }
        let start = i * self.layout.stride;
        let buf = self
            .slab
            .get_mut(start..start + self.layout.request)
            .ok_or(Errno::EINVAL)?;
        // SAFETY:
        // - `buf` is slot `i`'s request buffer in the slab, which this loop borrows for its
        //   whole run and which outlives it (`drain` waits for every READ's completion);
        // - slot `i` has no READ in flight (each slot arms one READ at a time: at start, and
        //   again only after its previous READ completed and its reply, if any, was
        //   written), and the loop touches the buffer only after this READ completes.
        let sqe = unsafe { Sqe::read(self.fuse, buf, 0) }.user_data(user_data(KIND_READ, i as u64));
        push(self.ring, &sqe, self.stats)
    }

    /// Queues the reply of slot `i`: `header` into its reply buffer, the payload already
    /// behind it.
    fn send(&mut self, i: usize, header: &fuse_out_header) -> Result<(), Errno> {
        let start = i * self.layout.stride + self.layout.request;
        let buf = self
            .slab
            .get_mut(start..start + self.layout.reply)
            .ok_or(Errno::EINVAL)?;
        let len = header.len as usize;
        write_prefix(buf, header).ok_or(Errno::EINVAL)?;
        let msg = buf.get(..len).ok_or(Errno::EINVAL)?;
        // SAFETY:
        // - `msg` is slot `i`'s reply buffer, borrowed by this loop for its whole run;
        // - the slot is marked `write_in_flight` below, and nothing writes a slot's reply
        //   buffer while that is set (a new request needs a new READ, armed only after this
        //   WRITE completes; resumed replies go only to slots the filesystem holds, which
        //   have no write in flight); `drain` waits for the completion.
        let sqe =
            unsafe { Sqe::write(self.fuse, msg, 0) }.user_data(user_data(KIND_WRITE, i as u64));
        push(self.ring, &sqe, self.stats)?;
        if let Some(m) = self.meta.get_mut(i) {
            m.write_in_flight = true;
            m.answered = true;
        }
        self.stats.replies += 1;
        if header.error != 0 {
            self.stats.errors += 1;
        }
        Ok(())
    }

    fn on_read(&mut self, i: usize, cqe: &Cqe, resumed: &mut u32) -> ReadResult {
        let res = cqe.res();
        if res < 0 {
            return match Errno::from_wire(res) {
                // The connection is gone: unmounted, or aborted.
                Some(Errno::ENODEV | Errno::ECONNABORTED) => ReadResult::Gone,
                // Cancelled by our own stop, interrupted, or retryable (ENOENT: the request
                // was aborted while being copied): the slot is idle again.
                _ => ReadResult::Idle,
            };
        }
        self.stats.requests_dev += 1;
        let n = usize::try_from(res).unwrap_or(0);
        let Some((view, request, reply)) = SlabView::split(self.slab, self.layout, self.meta, i)
        else {
            return ReadResult::Idle;
        };
        let bytes = request.get(..n).unwrap_or_default();
        let (header_area, payload) = reply.split_at_mut(OUT_HEADER_SIZE);
        let _ = header_area;
        let (action, unique) = match self.core.parse(bytes) {
            Ok(req) => {
                let env = Env {
                    slab: view,
                    resumed,
                    header_room: OUT_HEADER_SIZE,
                    io: Some(Io {
                        ring: self.ring,
                        fuse: self.fuse,
                        notifier: self.notifier,
                    }),
                    stats: self.stats,
                };
                (
                    self.core.handle(env, i as u32, &req, payload),
                    req.header.unique,
                )
            }
            Err(e) => (Core::<F>::malformed(bytes, e, self.stats), 0),
        };
        match action {
            Action::Reply(h) => {
                if self.send(i, &h).is_err() {
                    self.stats.reply_failures += 1;
                    return ReadResult::Idle;
                }
                ReadResult::Busy
            }
            Action::Nothing => ReadResult::Idle,
            Action::Deferred => {
                if let Some(m) = self.meta.get_mut(i) {
                    m.fs_holds = true;
                    m.unique = unique;
                }
                ReadResult::Busy
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

    fn on_fs_completion(&mut self, tag: u64, cqe: &Cqe, resumed: &mut u32) {
        let view = SlabView::whole(self.slab, self.layout, self.meta);
        let env = Env {
            slab: view,
            resumed,
            header_room: OUT_HEADER_SIZE,
            io: Some(Io {
                ring: self.ring,
                fuse: self.fuse,
                notifier: self.notifier,
            }),
            stats: self.stats,
        };
        let mut cx = Cx {
            info: Info::default(),
            env,
        };
        self.core
            .fs
            .completion(&mut cx, tag, cqe.res(), cqe.flags().bits());
    }

    /// Sends the replies the filesystem resumed, and frees slots it let go of.
    fn send_resumed(&mut self, idle: &mut ArrayVec<u16, { MAX_SLOTS as usize }>) {
        for i in 0..self.meta.len() {
            let Some(m) = self.meta.get_mut(i) else {
                continue;
            };
            if !m.resumed {
                continue;
            }
            m.resumed = false;
            let outcome = core::mem::replace(&mut m.outcome.0, Outcome::Pending);
            let (unique, answered, fs_holds) = (m.unique, m.answered, m.fs_holds);
            let header = match outcome {
                Outcome::Payload(n) => Some(enc::out_header(unique, n)),
                Outcome::Error(e) => Some(enc::error_header(unique, e)),
                // Resumed but dropped without an answer: never leave the caller waiting.
                Outcome::Pending | Outcome::Deferred if !answered && !fs_holds => {
                    Some(enc::error_header(unique, Errno::EIO))
                }
                Outcome::Pending | Outcome::Deferred => None,
            };
            if let Some(h) = header {
                if self.send(i, &h).is_err() {
                    self.stats.reply_failures += 1;
                }
            }
            if self.slot_free(i) && !idle.contains(&(i as u16)) {
                idle.push(i as u16);
            }
        }
    }

    fn cancel(&mut self, target: u64) {
        let sqe = Sqe::async_cancel(target, IoringAsyncCancelFlags::empty())
            .user_data(user_data(KIND_CANCEL, 0));
        let _ = push(self.ring, &sqe, self.stats);
    }

    fn cancel_reads(&mut self, slots: &Slots) {
        for (i, &reading) in slots.reading.iter().enumerate().take(self.meta.len()) {
            if reading {
                self.cancel(user_data(KIND_READ, i as u64));
            }
        }
    }

    /// Waits until no operation of the loop is in flight: replies being written, deferred
    /// requests (answered `ECONNABORTED`-free: the filesystem still resumes them),
    /// notifications, the filesystem's own operations, the stop event's READ.
    fn drain(&mut self, mut stop_armed: bool) -> Result<(), Error> {
        if stop_armed {
            self.cancel(user_data(KIND_STOP, 0));
        }
        let mut resumed = 0u32;
        loop {
            let writes = self.meta.iter().any(|m| m.write_in_flight);
            let held = self.meta.iter().any(|m| m.fs_holds);
            if !writes
                && !held
                && !stop_armed
                && !self.notifier.busy()
                && self.stats.fs_ops_in_flight == 0
            {
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
                    KIND_NOTIFY => self.notifier.completed(i, cqe.res(), self.stats),
                    KIND_STOP => stop_armed = false,
                    KIND_FS => {
                        self.stats.fs_ops_in_flight = self.stats.fs_ops_in_flight.saturating_sub(1);
                        self.on_fs_completion(index, &cqe, &mut resumed);
                    }
                    _ => {}
                }
                if resumed > 0 {
                    resumed = 0;
                    let mut idle = ArrayVec::new();
                    self.send_resumed(&mut idle);
                }
            }
        }
    }
}

enum ReadResult {
    /// The slot is idle again (no reply needed, or the READ failed harmlessly).
    Idle,
    /// The slot is busy (a reply in flight, or deferred).
    Busy,
    /// The device is gone.
    Gone,
}

fn io_error(what: &'static str, errno: Errno) -> Error {
    Error::Io { what, errno }
}
