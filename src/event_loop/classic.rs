//! The classic transport (DESIGN.md, "One request, classic transport"): requests are READ
//! from `/dev/fuse` into a slot's request buffer, and replies WRITTEN from its reply
//! buffer. One READ (by default) stays armed on the device and moves from slot to slot: as
//! soon as it completes, the next idle slot's READ is queued, before the request is even
//! handled. [`ReplyOrder`] decides whether a pass's replies go to the kernel before the
//! next READ is armed.
//!
//! `unsafe` here: the READ and WRITE of a slot's buffers, each with its proof.
#![allow(unsafe_code)]

use crate::abi::Errno;
use crate::abi::kernel::fuse_out_header;
use crate::abi::pod::write_prefix;
use crate::abi::reply::OUT_HEADER_SIZE;
use crate::api::cx::{Env, Io};
use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::ring::{Cqe, Sqe};
use crate::state::tags::{KIND_READ, KIND_WRITE, push, user_data};
use crate::state::{SlotKind, SlotMeta};

use super::request::Core;
use super::{Handled, Loop, Native, Slots, io_error};

/// Whether a pass that queued replies submits them in an `io_uring_enter` of their own,
/// before the device READ is armed (see [`Loop::run`]), decided from whether READs
/// submitted together with replies completed in that same enter.
#[derive(Debug, Default)]
pub(super) struct ReplyOrder {
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
    pub(super) fn replies_alone(&mut self, slot: Option<u16>, enter: u64) -> bool {
        if self.split && self.until_probe > 0 {
            self.until_probe -= 1;
            return true;
        }
        self.until_probe = PROBE_EVERY;
        self.probe = slot.map(|i| (i, enter));
        false
    }

    /// The READ of `slot` completed, reaped after enter number `enters`.
    pub(super) fn read_done(&mut self, slot: usize, enters: u64) {
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
    /// Arms READs on idle device slots until `max_reads` are in flight.
    pub(super) fn top_up(&mut self, slots: &mut Slots) -> Result<(), Error> {
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
    pub(super) fn slot_free(&self, i: usize) -> bool {
        i < self.dev_slots
            && self
                .meta
                .get(i)
                .is_some_and(|m| !m.fs_holds && !m.write_in_flight)
    }

    pub(super) fn arm_read(&mut self, i: usize) -> Result<(), Errno> {
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

    pub(super) fn write_reply(&mut self, i: usize, header: &fuse_out_header) -> Result<(), Errno> {
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

    pub(super) fn on_read(&mut self, i: usize, cqe: &Cqe, resumed: &mut u32) -> Handled {
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
            self.init_answered(i);
        }
        self.finish(i, action, unique)
    }

    pub(super) fn on_write(&mut self, cqe: &Cqe) {
        match Errno::from_wire(cqe.res()) {
            // Written; or the request was interrupted and already completed, or the
            // connection went away: all normal.
            None | Some(Errno::ENOENT | Errno::ENODEV | Errno::ECONNABORTED) => {}
            Some(_) => self.stats.reply_failures += 1,
        }
    }

    /// Cancels the armed READs. (Native entries are left to the ring's teardown: see
    /// [`Loop::run`].)
    pub(super) fn cancel_all(&mut self, slots: &Slots) {
        for (i, &reading) in slots.reading.iter().enumerate().take(self.dev_slots) {
            if reading {
                self.cancel(user_data(KIND_READ, i as u64));
            }
        }
    }
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
