//! The slots of a loop: one request buffer, one reply buffer and (for asynchronous
//! filesystems) one task area each, carved once out of a single allocation, and the
//! bookkeeping that says who may touch which.
//!
//! A slot's buffers are shared with the kernel while an operation on them is in flight, and
//! an asynchronous filesystem's request keeps borrowing its slot's buffers (names, WRITE
//! data, the reply buffer a READ fills) across many loop passes. So the memory is never
//! reached through one `&mut [u8]` over all of it, which would assert, each time, that no
//! other reference into any slot exists: [`Slab`] keeps the base pointer and hands out the
//! bytes of one slot at a time, and references into different slots never overlap.
//!
//! The rule that makes each hand-out sound is the loop's: the bytes of a slot are touched
//! only by whoever owns the slot at the time — the loop between requests, the handler of
//! its request during the call, the filesystem while it holds the request deferred
//! (through [`SlabView`], or the asynchronous filesystem's task for as long as it lives).
//! This is the only module with `unsafe` for the slab; every block below says which part of
//! that rule it relies on.
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::NonNull;

/// Most slots a loop may have.
pub const MAX_SLOTS: u16 = 1024;

/// Memory for buffers: allocated once by the session (with `std`), or lent for the
/// program's lifetime by the caller (without). Its bytes are reached only through the base
/// pointer taken once here, never through the allocation again, so borrows handed out from
/// it stay valid for as long as their owner keeps them.
pub(crate) struct Storage {
    base: NonNull<u8>,
    len: usize,
    /// The allocation (4 KiB of slack for the alignment), freed on drop.
    #[cfg(feature = "std")]
    _heap: Option<std::vec::Vec<u8>>,
    _static: PhantomData<&'static mut [u8]>,
}

impl Storage {
    /// `len` zeroed bytes starting on a 4 KiB boundary.
    #[cfg(feature = "std")]
    pub(crate) fn heap(len: usize) -> Self {
        let mut v = std::vec![0u8; len + 4096];
        let off = v.as_ptr().align_offset(4096).min(4096);
        let usable = v.get_mut(off..off + len).unwrap_or_default();
        let base = NonNull::from(usable).cast::<u8>();
        Self {
            base,
            len,
            _heap: Some(v),
            _static: PhantomData,
        }
    }

    /// Caller-provided memory.
    pub(crate) fn from_static(mem: &'static mut [u8]) -> Self {
        let len = mem.len();
        Self {
            base: NonNull::from(mem).cast::<u8>(),
            len,
            #[cfg(feature = "std")]
            _heap: None,
            _static: PhantomData,
        }
    }

    /// The usable bytes, all at once (for memory that is never lent for longer than this
    /// borrow: the notification buffers).
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY:
        // - `base..base + len` is one live allocation (the Vec kept in `_heap`, or the
        //   caller's `'static` memory) of initialized bytes (zeroed, or a `&mut [u8]`);
        // - the returned borrow is tied to `&mut self`, and nothing else reaches these
        //   bytes while it lives: a `Storage` hands out either this whole view (notification
        //   buffers) or a `Slab` (slots), never both, and the `Slab` borrows it mutably.
        unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }

    /// The memory as slots of `layout` (as many as fit).
    #[cfg(feature = "std")]
    pub(crate) fn slab(&mut self, layout: Layout) -> Slab<'_> {
        Slab {
            base: self.base,
            slots: self.len / layout.stride.max(1),
            layout,
            _mem: PhantomData,
        }
    }

    /// How many usable bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

// SAFETY: `Storage` owns its bytes (the Vec, or the caller's `&'static mut`), like a
// `Vec<u8>`: moving it to another thread moves that ownership.
unsafe impl Send for Storage {}

/// The slots of a loop, reached one at a time through a base pointer (see the module
/// docs). Borrows the memory for `'m`.
pub(crate) struct Slab<'m> {
    base: NonNull<u8>,
    slots: usize,
    layout: Layout,
    _mem: PhantomData<&'m mut [u8]>,
}

impl<'m> Slab<'m> {
    /// `mem` as slots of `layout` (as many as fit).
    pub(crate) fn new(mem: &'m mut [u8], layout: Layout) -> Self {
        let slots = mem.len() / layout.stride.max(1);
        Self {
            base: NonNull::from(mem).cast::<u8>(),
            slots,
            layout,
            _mem: PhantomData,
        }
    }

    /// Slot `i`'s first byte, if it exists. Creates no reference.
    pub(crate) fn slot_ptr(&self, i: usize) -> Option<NonNull<u8>> {
        if i >= self.slots {
            return None;
        }
        // SAFETY:
        // - `i < slots`, so `i * stride` is within the memory this slab was made from
        //   (`slots * stride <= len`), which is one allocation.
        Some(unsafe { self.base.add(i * self.layout.stride) })
    }

    /// Slot `i`'s bytes (request buffer, reply buffer, task area), for the loop, which owns
    /// every slot no request holds.
    pub(crate) fn slot(&mut self, i: usize) -> Option<&mut [u8]> {
        let p = self.slot_ptr(i)?;
        // SAFETY:
        // - `p .. p + stride` lies in the slab's memory (`slot_ptr`), initialized bytes;
        // - the borrow is tied to `&mut self`, so the loop holds no two at once; and the
        //   loop calls this only for a slot it owns (idle, or whose request it is answering
        //   or re-arming), never for one the filesystem holds, so no borrow handed out by a
        //   `SlabView` or leased by a task overlaps it.
        Some(unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), self.layout.stride) })
    }

    /// Slot `i`'s request and reply buffers, lent to the handler of its request, and a view
    /// of every other slot's reply area.
    pub(crate) fn split<'s>(
        &'s mut self,
        meta: &'s mut [SlotMeta],
        i: usize,
    ) -> Option<(SlabView<'s>, &'s mut [u8], &'s mut [u8])> {
        let p = self.slot_ptr(i)?;
        let layout = self.layout;
        // SAFETY:
        // - the request buffer is the first `layout.request` bytes of slot `i`, the reply
        //   buffer the next `layout.reply` (`Layout::new`: both within the stride);
        // - they are disjoint from each other, and from every area the view hands out (the
        //   view never hands out slot `i`: its hole), and tied to `&mut self`;
        // - slot `i` holds the request being handled: the loop owns it (as `slot`).
        let request = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), layout.request) };
        // SAFETY: `layout.request < stride`: still within slot `i`.
        let reply_at = unsafe { p.add(layout.request) };
        // SAFETY: as for `request` above: the reply buffer, `layout.reply` bytes after it,
        // disjoint from the request buffer and from everything the view hands out.
        let reply = unsafe { core::slice::from_raw_parts_mut(reply_at.as_ptr(), layout.reply) };
        Some((
            SlabView {
                slab: Slab {
                    base: self.base,
                    slots: self.slots,
                    layout,
                    _mem: PhantomData,
                },
                hole: Some(i),
                meta,
            },
            request,
            reply,
        ))
    }

    /// A view of every slot's reply area, for calls outside a request.
    pub(crate) fn whole<'s>(&'s mut self, meta: &'s mut [SlotMeta]) -> SlabView<'s> {
        SlabView {
            slab: Slab {
                base: self.base,
                slots: self.slots,
                layout: self.layout,
                _mem: PhantomData,
            },
            hole: None,
            meta,
        }
    }
}

/// What a slot serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// Requests read from `/dev/fuse`, replies written to it.
    #[default]
    Dev,
    /// An entry of the kernel's FUSE-over-io_uring queue `qid`.
    Entry { qid: u16 },
}

/// Where a slot stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotMeta {
    /// What the slot serves.
    pub kind: SlotKind,
    /// Where the current request's reply payload goes, relative to the slot's start.
    pub reply_off: u32,
    /// How many payload bytes fit there.
    pub reply_len: u32,
    /// Native entries: the reply is built in the slot's aux area and copied into the
    /// payload buffer at commit (the request's own payload is still borrowed meanwhile).
    pub reply_in_aux: bool,
    /// Native entries: the id to echo in COMMIT_AND_FETCH.
    pub commit_id: u64,
    /// `unique` of the request the slot holds (0 when idle).
    pub unique: u64,
    /// The filesystem holds a [`Deferred`](crate::Deferred) token for this slot.
    pub fs_holds: bool,
    /// The request was answered (an `EINTR` after INTERRUPT, or the real answer).
    pub answered: bool,
    /// A reply write is in flight.
    pub write_in_flight: bool,
    /// What the filesystem answered (for resumed replies).
    pub outcome: Outcome,
    /// The filesystem resumed this slot during the current call: send (or release) it.
    pub resumed: bool,
    /// The in-memory transport: the deferred request's opcode and size limit, to check
    /// its reply when it comes.
    #[cfg(feature = "std")]
    pub opcode_hint: (u32, u32),
}

impl SlotMeta {
    /// Answers the request the filesystem holds here with `errno` now (INTERRUPT's `EINTR`,
    /// a stop's `EIO` once its grace ran out): the reply goes out with the resumed ones,
    /// and the token, when it comes back, only frees the slot.
    pub(crate) fn answer_held(&mut self, errno: crate::abi::Errno) {
        self.outcome = Outcome::Error(errno);
        self.answered = true;
        self.resumed = true;
    }

    /// The token of this slot's request (`unique` in its low 32 bits, as `lost` posts it)
    /// was dropped unresumed: lets the slot go, answering `EIO` unless it was answered
    /// already. False if the slot does not hold that request.
    pub(crate) fn release_lost(&mut self, unique: u32) -> bool {
        if !self.fs_holds || self.unique as u32 != unique {
            return false;
        }
        self.fs_holds = false;
        self.resumed = true;
        if !self.answered {
            self.outcome = Outcome::Error(crate::abi::Errno::EIO);
        }
        true
    }

    /// For a slot the filesystem resumed: clears the mark, and gives the header of the
    /// reply to send — the filesystem's answer, or `EIO` if it resumed the request and
    /// dropped the reply unanswered (the caller must not wait forever) — or `None` if
    /// there is nothing to send (it was answered already, by `EINTR` after INTERRUPT).
    pub(crate) fn take_resumed(&mut self) -> Option<crate::abi::kernel::fuse_out_header> {
        self.resumed = false;
        let outcome = core::mem::replace(&mut self.outcome, Outcome::Pending);
        match outcome {
            Outcome::Payload(n) => Some(crate::abi::reply::out_header(self.unique, n)),
            Outcome::Error(e) => Some(crate::abi::reply::error_header(self.unique, e)),
            Outcome::Pending | Outcome::Deferred if !self.answered && !self.fs_holds => Some(
                crate::abi::reply::error_header(self.unique, crate::abi::Errno::EIO),
            ),
            Outcome::Pending | Outcome::Deferred => None,
        }
    }
}

/// What happened to a request's reply, read by the loop after the filesystem returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not answered yet.
    #[default]
    Pending,
    /// A success reply with this many payload bytes.
    Payload(usize),
    /// An error reply (header only).
    Error(crate::abi::Errno),
    /// The filesystem keeps the request and answers later.
    Deferred,
}

/// How the slab is laid out: slot `j` occupies `j * stride .. (j + 1) * stride`, its
/// request buffer first, then its reply buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bytes per slot.
    pub stride: usize,
    /// Request buffer size (at the start of the slot).
    pub request: usize,
    /// Reply buffer size (after the request buffer), header included.
    pub reply: usize,
    /// Task area size (after the reply buffer): an asynchronous filesystem's future and its
    /// bookkeeping; 0 for a synchronous filesystem.
    pub task: usize,
}

impl Layout {
    /// A layout for `request`-byte request buffers and `reply`-byte reply buffers, each
    /// starting on a 4 KiB boundary.
    #[cfg(test)]
    pub(crate) const fn new(request: usize, reply: usize) -> Self {
        Self::with_task(request, reply, 0)
    }

    /// As [`new`](Self::new), with a task area of `task` bytes (rounded up to 64) after
    /// the reply buffer.
    pub(crate) const fn with_task(request: usize, reply: usize, task: usize) -> Self {
        let request = request.next_multiple_of(4096);
        let reply = reply.next_multiple_of(4096);
        let task = task.next_multiple_of(64);
        Self {
            stride: (request + reply + task).next_multiple_of(4096),
            request,
            reply,
            task,
        }
    }

    /// Bytes for `slots` slots.
    pub(crate) const fn size(&self, slots: usize) -> usize {
        self.stride * slots
    }

    /// The reply buffer of a slot, relative to the slot's start.
    pub(crate) const fn reply_in_slot(&self) -> Range<usize> {
        self.request..self.request + self.reply
    }

    /// A native entry's aux area: a page after the header, where small request payloads
    /// are copied (so the reply can go in place) or, for large ones, the reply is built.
    pub(crate) const fn entry_aux(&self) -> Range<usize> {
        self.request + 4096..self.request + 8192
    }
}

/// The reply areas of every slot but one (the request being handled, whose buffers were
/// lent separately), the task areas of all, and the metadata of all.
pub(crate) struct SlabView<'a> {
    slab: Slab<'a>,
    /// The slot whose buffers are not in this view, if any.
    hole: Option<usize>,
    pub meta: &'a mut [SlotMeta],
}

impl SlabView<'_> {
    /// The reply payload area of slot `j` (as its metadata places it) and its metadata;
    /// `None` for the hole or an index out of range.
    pub(crate) fn reply_of(&mut self, j: usize) -> Option<(&mut [u8], &mut SlotMeta)> {
        if self.hole == Some(j) {
            return None;
        }
        let layout = self.slab.layout;
        let p = self.slab.slot_ptr(j)?;
        let meta = self.meta.get_mut(j)?;
        let start = meta.reply_off as usize;
        let end = start.checked_add(meta.reply_len as usize)?;
        // The reply area ends before the task area (an entry's aux page is in the reply
        // buffer).
        if end > layout.request + layout.reply {
            return None;
        }
        // SAFETY:
        // - `start..end` lies within slot `j`'s request and reply buffers (checked above),
        //   in the slab's memory;
        // - `j` is not the hole, so this does not overlap the buffers lent to the current
        //   handler; the borrow is tied to `&mut self`, so the view hands out one at a time;
        // - the view is handed to the filesystem (through `Cx`) for the slots it holds
        //   deferred, whose bytes nobody else touches until it resumes them; an
        //   asynchronous filesystem asks only for slots whose task has ended (`asyncfs`).
        let at = unsafe { p.add(start) };
        // SAFETY: as above: `end - start` bytes from `at` are within slot `j`, and nothing
        // else has a reference to them.
        let area = unsafe { core::slice::from_raw_parts_mut(at.as_ptr(), end - start) };
        Some((area, meta))
    }

    /// Slot `j`'s task area (after its reply buffer), for an asynchronous filesystem's task
    /// of that slot; creates no reference. `None` for a slot out of range or a layout
    /// without task areas.
    pub(crate) fn task_area(&self, j: usize) -> Option<(NonNull<u8>, usize)> {
        let layout = self.slab.layout;
        if layout.task == 0 {
            return None;
        }
        let p = self.slab.slot_ptr(j)?;
        // SAFETY:
        // - the task area is the last `layout.task` bytes of the stride (`Layout`), within
        //   slot `j` of the slab's memory.
        Some((unsafe { p.add(layout.request + layout.reply) }, layout.task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_disjoint_and_cover_every_other_slot() {
        let layout = Layout::new(4096, 4096);
        let mut slab = vec![0u8; 4 * 8192];
        let mut meta = [SlotMeta::default(); 4];
        for m in &mut meta {
            m.reply_off = 4096;
            m.reply_len = 4096;
        }
        {
            let mut s = Slab::new(&mut slab, layout);
            let (mut view, req, reply) = s.split(&mut meta, 2).unwrap();
            req.fill(0xa2);
            reply.fill(0xb2);
            assert!(view.reply_of(2).is_none());
            assert!(view.reply_of(4).is_none());
            for j in [0, 1, 3] {
                let (area, m) = view.reply_of(j).unwrap();
                assert_eq!(area.len(), 4096);
                area.fill(0xb0 + j as u8);
                m.unique = j as u64;
            }
        }
        for j in 0..4 {
            let slot = &slab[j * 8192..(j + 1) * 8192];
            assert!(
                slot[4096..].iter().all(|&b| b == 0xb0 + j as u8),
                "reply of {j}"
            );
        }
        assert!(slab[2 * 8192..2 * 8192 + 4096].iter().all(|&b| b == 0xa2));
        assert_eq!(meta[3].unique, 3);
    }

    #[test]
    fn whole_view() {
        let layout = Layout::new(100, 100);
        assert_eq!(layout.stride, 8192);
        let mut slab = [0u8; 2 * 8192];
        let mut meta = [SlotMeta {
            reply_off: 4096,
            reply_len: 4096,
            ..SlotMeta::default()
        }; 2];
        let mut s = Slab::new(&mut slab, layout);
        let mut view = s.whole(&mut meta);
        assert_eq!(view.reply_of(1).unwrap().0.len(), 4096);
        assert!(view.task_area(1).is_none());
        let mut small = [0u8; 10];
        assert!(Slab::new(&mut small, layout).split(&mut [], 0).is_none());
    }

    #[test]
    fn task_areas_follow_the_reply_buffer() {
        let layout = Layout::with_task(4096, 8192, 100);
        assert_eq!((layout.task, layout.stride), (128, 16384));
        let mut mem = vec![0u8; 3 * layout.stride];
        let base = mem.as_ptr() as usize;
        let mut meta = [SlotMeta::default(); 3];
        let mut s = Slab::new(&mut mem, layout);
        let view = s.whole(&mut meta);
        let (p, len) = view.task_area(2).unwrap();
        assert_eq!((p.as_ptr() as usize - base, len), (2 * 16384 + 12288, 128));
        assert!(view.task_area(3).is_none());
    }
}
