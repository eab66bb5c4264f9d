//! The slots of a loop: one request buffer and one reply buffer each, carved once out of a
//! single allocation, and the bookkeeping that says who may touch which.
//!
//! A slot's buffers are shared with the kernel while an operation on them is in flight, so
//! Rust code reaches them only through a [`SlabView`], which hands out the reply area of
//! any slot *other* than the one being handled (that one is lent to the handler directly).
//! Everything here is safe code: views are built with `split_at_mut`.

use core::ops::Range;

use crate::reply::Outcome;

/// Memory for buffers: allocated once by the session (with `std`), or lent for the
/// program's lifetime by the caller (without).
pub(crate) enum Storage {
    /// A heap allocation and the offset of its first 4 KiB-aligned byte.
    #[cfg(feature = "std")]
    Heap(std::vec::Vec<u8>, usize),
    /// Caller-provided memory.
    #[cfg_attr(feature = "std", allow(dead_code))]
    Static(&'static mut [u8]),
}

impl Storage {
    /// `len` zeroed bytes starting on a 4 KiB boundary.
    #[cfg(feature = "std")]
    pub(crate) fn heap(len: usize) -> Self {
        let v = std::vec![0u8; len + 4096];
        let off = v.as_ptr().align_offset(4096).min(4096);
        Storage::Heap(v, off)
    }

    /// The usable bytes.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        match self {
            #[cfg(feature = "std")]
            Storage::Heap(v, off) => {
                let len = v.len() - 4096;
                v.get_mut(*off..*off + len).unwrap_or_default()
            }
            Storage::Static(s) => s,
        }
    }

    /// How many usable bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            #[cfg(feature = "std")]
            Storage::Heap(v, _) => v.len() - 4096,
            Storage::Static(s) => s.len(),
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
    pub outcome: OutcomeCell,
    /// The filesystem resumed this slot during the current call: send (or release) it.
    pub resumed: bool,
    /// The in-memory transport: the deferred request's opcode and size limit, to check
    /// its reply when it comes.
    #[cfg(feature = "std")]
    pub opcode_hint: (u32, u32),
}

impl SlotMeta {
    /// For a slot the filesystem resumed: clears the mark, and gives the header of the
    /// reply to send — the filesystem's answer, or `EIO` if it resumed the request and
    /// dropped the reply unanswered (the caller must not wait forever) — or `None` if
    /// there is nothing to send (it was answered already, by `EINTR` after INTERRUPT).
    pub(crate) fn take_resumed(&mut self) -> Option<crate::abi::kernel::fuse_out_header> {
        self.resumed = false;
        let outcome = core::mem::replace(&mut self.outcome.0, Outcome::Pending);
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

/// `Outcome` with a `Default` (kept out of `reply.rs`'s public surface).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutcomeCell(pub Outcome);

impl Default for OutcomeCell {
    fn default() -> Self {
        Self(Outcome::Pending)
    }
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
}

impl Layout {
    /// A layout for `request`-byte request buffers and `reply`-byte reply buffers, each
    /// starting on a 4 KiB boundary.
    pub(crate) const fn new(request: usize, reply: usize) -> Self {
        let request = request.next_multiple_of(4096);
        let reply = reply.next_multiple_of(4096);
        Self {
            stride: request + reply,
            request,
            reply,
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

/// The reply areas of every slot but one, and the metadata of all.
pub(crate) struct SlabView<'a> {
    before: &'a mut [u8],
    after: &'a mut [u8],
    /// The slot whose bytes are not in this view, if any.
    hole: Option<usize>,
    layout: Layout,
    pub meta: &'a mut [SlotMeta],
}

impl<'a> SlabView<'a> {
    /// A view of all slots but `hole`, whose buffers are returned separately as
    /// `(request, reply)`.
    pub(crate) fn split(
        slab: &'a mut [u8],
        layout: Layout,
        meta: &'a mut [SlotMeta],
        hole: usize,
    ) -> Option<(Self, &'a mut [u8], &'a mut [u8])> {
        let start = hole.checked_mul(layout.stride)?;
        let (before, rest) = slab.split_at_mut_checked(start)?;
        let (slot, after) = rest.split_at_mut_checked(layout.stride)?;
        let (request, reply) = slot.split_at_mut_checked(layout.request)?;
        Some((
            Self {
                before,
                after,
                hole: Some(hole),
                layout,
                meta,
            },
            request,
            reply,
        ))
    }

    /// A view of all slots.
    pub(crate) fn whole(slab: &'a mut [u8], layout: Layout, meta: &'a mut [SlotMeta]) -> Self {
        Self {
            before: slab,
            after: &mut [],
            hole: None,
            layout,
            meta,
        }
    }

    /// The reply payload area of slot `j` (as its metadata places it) and its metadata;
    /// `None` for the hole or an index out of range.
    pub(crate) fn reply_of(&mut self, j: usize) -> Option<(&mut [u8], &mut SlotMeta)> {
        let meta = self.meta.get_mut(j)?;
        let start = meta.reply_off as usize;
        let range = start..start + meta.reply_len as usize;
        let area = match self.hole {
            Some(h) if j == h => return None,
            Some(h) if j > h => {
                let base = (j - h - 1) * self.layout.stride;
                self.after.get_mut(base + range.start..base + range.end)?
            }
            _ => {
                let base = j * self.layout.stride;
                self.before.get_mut(base + range.start..base + range.end)?
            }
        };
        Some((area, meta))
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
            let (mut view, req, reply) = SlabView::split(&mut slab, layout, &mut meta, 2).unwrap();
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
        let mut view = SlabView::whole(&mut slab, layout, &mut meta);
        assert_eq!(view.reply_of(1).unwrap().0.len(), 4096);
        assert!(SlabView::split(&mut [0u8; 10], layout, &mut [], 0).is_none());
    }
}
