//! Owned memory mappings: the ring's shared memory and the registered-buffer region.
//!
//! This is the only module that holds raw pointers. [`Mmap`] owns one mapping and unmaps it
//! on drop; [`RingMem`] owns the three mappings of a ring, checks the kernel's offsets once,
//! and then hands out the queues' words as `&AtomicU32`/`&[AtomicU64]` borrowed from itself
//! ([`SqRing`], [`CqRing`]); [`FixedBuffers`] owns the memory that is registered with
//! `IORING_REGISTER_BUFFERS`. Nothing outside sees a pointer, only references whose lifetime
//! is that of the owner.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use rustix::io_uring::{IORING_OFF_SQ_RING, IORING_OFF_SQES, IoringSetupFlags, io_uring_params};
use rustix::mm::{MapFlags, ProtFlags};

use crate::cq::CqRing;
use crate::setup::SetupError;
use crate::sq::SqRing;

/// One memory mapping, unmapped on drop.
///
/// Invariants: `ptr` is the page-aligned start of a live mapping of `len > 0` bytes, readable
/// and writable, created by this type and unmapped only by its `Drop`.
pub(crate) struct Mmap {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Mmap {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset)`: one
    /// region of an `io_uring` instance (`IORING_OFF_SQ_RING`, `IORING_OFF_SQES`).
    fn shared(fd: BorrowedFd<'_>, offset: u64, len: usize) -> Result<Self, Errno> {
        if len == 0 {
            return Err(Errno::INVAL);
        }
        // SAFETY:
        // - `ptr` is null: the kernel picks an unused range ("If addr is NULL, then the kernel
        //   chooses the address", mmap(2)), so no existing memory or Rust reference is touched.
        // - References into the new region are only created by this type's methods, which keep
        //   the Rust reference rules (atomics for memory the kernel writes; see `RingMem`).
        let ptr = unsafe {
            rustix::mm::mmap(
                null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd,
                offset,
            )
        }?;
        let ptr = NonNull::new(ptr).ok_or(Errno::NOMEM)?;
        Ok(Self { ptr, len })
    }

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)`: zeroed
    /// private memory (fixed buffers, the timespec store, a temporary iovec table).
    pub(crate) fn anonymous(len: usize) -> Result<Self, Errno> {
        if len == 0 {
            return Err(Errno::INVAL);
        }
        // SAFETY:
        // - `ptr` is null: the kernel picks an unused range (mmap(2)); nothing existing is
        //   touched.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }?;
        let ptr = NonNull::new(ptr).ok_or(Errno::NOMEM)?;
        Ok(Self { ptr, len })
    }

    /// The mapping's start address, for the kernel (an `iovec`, an SQE's `addr`).
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr().addr()
    }

    /// Whether `count` items of `size` bytes and alignment `size` fit at byte `offset`.
    fn fits(&self, offset: usize, size: usize, count: usize) -> bool {
        let Some(end) = count.checked_mul(size).and_then(|n| n.checked_add(offset)) else {
            return false;
        };
        // The mapping is page aligned, so the offset's alignment is the address's.
        end <= self.len && offset % size == 0
    }

    /// The word at byte `offset`.
    ///
    /// # Safety
    ///
    /// `self.fits(offset, 4, 1)` must hold.
    unsafe fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let p = self.ptr.as_ptr().wrapping_byte_add(offset).cast::<u32>();
        // SAFETY:
        // - `p` is 4-aligned and its 4 bytes lie inside the mapping: the caller's `fits`.
        // - The mapping stays valid for the returned lifetime (that of `&self`; it is only
        //   unmapped in `drop`, which needs `&mut self`).
        // - Every access to this memory is atomic: ours through `AtomicU32`, the kernel's through
        //   READ_ONCE/WRITE_ONCE/smp_load_acquire/smp_store_release (io_uring/io_uring.c).
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// `count` words of 4 bytes from byte `offset`.
    ///
    /// # Safety
    ///
    /// `self.fits(offset, 4, count)` must hold.
    unsafe fn u32s_at(&self, offset: usize, count: usize) -> &[AtomicU32] {
        let p = self
            .ptr
            .as_ptr()
            .wrapping_byte_add(offset)
            .cast::<AtomicU32>();
        // SAFETY:
        // - `p` is 4-aligned and `count * 4` bytes from it lie in the mapping: the caller's
        //   `fits`; `AtomicU32` has the size and alignment of `u32`.
        // - Valid and atomically accessed for the lifetime of `&self`, as in `u32_at`.
        unsafe { core::slice::from_raw_parts(p, count) }
    }

    /// `count` words of 8 bytes from byte `offset`.
    ///
    /// # Safety
    ///
    /// `self.fits(offset, 8, count)` must hold.
    unsafe fn u64s_at(&self, offset: usize, count: usize) -> &[AtomicU64] {
        let p = self
            .ptr
            .as_ptr()
            .wrapping_byte_add(offset)
            .cast::<AtomicU64>();
        // SAFETY:
        // - `p` is 8-aligned and `count * 8` bytes from it lie in the mapping: the caller's
        //   `fits`; `AtomicU64` has the size of `u64` and 8-byte alignment on every 64-bit
        //   Linux target (and `fits` checked the offset against 8 regardless).
        // - Valid and atomically accessed for the lifetime of `&self`, as in `u32_at`. SQEs and
        //   CQEs are read and written by the kernel with plain loads/stores, but only on the
        //   kernel's side of the head/tail handshake, which orders them against ours.
        unsafe { core::slice::from_raw_parts(p, count) }
    }

    /// Bytes `start..start + n`, for memory no kernel write races with (see
    /// [`FixedBuffers`]); `None` if outside the mapping. Only this range is borrowed.
    fn range(&self, start: usize, n: usize) -> Option<&[u8]> {
        if start.checked_add(n)? > self.len {
            return None;
        }
        let p = self.ptr.as_ptr().wrapping_byte_add(start).cast::<u8>();
        // SAFETY:
        // - `p..p + n` lies inside one live, readable mapping (checked just above; type
        //   invariant), valid for the lifetime of `&self`.
        // - Only used for private anonymous memory. The kernel writes into it only for a
        //   `read_fixed` in flight, and `Sqe::read_fixed`'s caller promised that no reference
        //   to that range is used meanwhile.
        Some(unsafe { core::slice::from_raw_parts(p, n) })
    }

    /// Bytes `start..start + n`, writable; see [`Mmap::range`].
    fn range_mut(&mut self, start: usize, n: usize) -> Option<&mut [u8]> {
        if start.checked_add(n)? > self.len {
            return None;
        }
        let p = self.ptr.as_ptr().wrapping_byte_add(start).cast::<u8>();
        // SAFETY:
        // - `p..p + n` lies inside one live, writable mapping (checked just above; type
        //   invariant), and `&mut self` makes this the only Rust reference into it for the
        //   returned lifetime.
        // - Kernel accesses are excluded as in `range` (`Sqe::read_fixed`/`write_fixed`).
        Some(unsafe { core::slice::from_raw_parts_mut(p, n) })
    }

    /// The whole mapping as `usize` words (an iovec table under construction).
    pub(crate) fn usizes_mut(&mut self) -> &mut [usize] {
        let count = self.len / core::mem::size_of::<usize>();
        // SAFETY:
        // - The mapping is page aligned, so aligned for `usize`, and `count` words fit in `len`.
        // - `&mut self` makes this the only reference; the memory is private and anonymous, so
        //   the kernel does not write it; zeroed pages are valid `usize` values.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<usize>(), count) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY:
        // - `ptr` is page aligned and `ptr..ptr + len` is the mapping this value created
        //   (type invariant), valid to unmap with `ptr`'s provenance.
        // - No Rust reference into it outlives `self`: every one is borrowed from `&self` or
        //   `&mut self`.
        // - The kernel may keep pinned pages of registered buffers; after munmap(2) those pages
        //   are no longer reachable from this address space, so its later writes cannot touch
        //   memory that Rust code reuses.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// The kernel's offsets, checked against the mappings (every field is inside its mapping and
/// aligned; entries are powers of two with `mask == entries - 1`).
struct Layout {
    sq_head: usize,
    sq_tail: usize,
    sq_flags: usize,
    sq_dropped: usize,
    sq_mask: u32,
    sqe_words: usize,
    cq_head: usize,
    cq_tail: usize,
    cq_overflow: usize,
    cqes: usize,
    cq_mask: u32,
    cqe_words: usize,
}

/// The three mappings of one ring plus their checked layout.
///
/// Invariant: every offset in `lay` passed `Mmap::fits` on its mapping in [`RingMem::map`]
/// (`sqes` holds `(sq_mask + 1) * sqe_words` words, `timespecs` two words per SQE, `cqes`
/// `(cq_mask + 1) * cqe_words` words at `lay.cqes`), and the mappings are never resized.
pub(crate) struct RingMem {
    /// `IORING_OFF_SQ_RING`: `struct io_rings` (both queues' indices and the CQE array) and,
    /// without `NO_SQARRAY`, the SQ index array. With `IORING_FEAT_SINGLE_MMAP` this one
    /// mapping also serves `IORING_OFF_CQ_RING`.
    rings: Mmap,
    /// `IORING_OFF_SQES`: the SQE array, 64 or 128 bytes per entry.
    sqes: Mmap,
    /// Ours: one 16-byte `__kernel_timespec` per SQ slot for timeout SQEs (see `Sqe::timeout`).
    timespecs: Mmap,
    lay: Layout,
}

/// Converts a kernel `u32` to `usize`, failing only on targets narrower than 32 bits.
fn us(v: u32) -> Result<usize, SetupError> {
    usize::try_from(v).map_err(|_| SetupError::Layout)
}

/// `a * b + c` without overflow.
fn mul_add(a: usize, b: usize, c: usize) -> Result<usize, SetupError> {
    a.checked_mul(b)
        .and_then(|n| n.checked_add(c))
        .ok_or(SetupError::Layout)
}

impl RingMem {
    /// Maps the ring described by `p` (filled by `io_uring_setup` with `flags`) and checks
    /// the layout. Sizes follow `io_uring(7)`: SQ ring `sq_off.array + sq_entries * 4`, CQ ring
    /// `cq_off.cqes + cq_entries * sizeof(cqe)`, one mapping of the larger with
    /// `IORING_FEAT_SINGLE_MMAP`; `NO_SQARRAY` drops the array (`sq_off.array` is then unset).
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        p: &io_uring_params,
        flags: IoringSetupFlags,
    ) -> Result<Self, SetupError> {
        let sqe_words = if flags.contains(IoringSetupFlags::SQE128) {
            16
        } else {
            8
        };
        let cqe_words = if flags.contains(IoringSetupFlags::CQE32) {
            4
        } else {
            2
        };
        let sq_entries = us(p.sq_entries)?;
        let cq_entries = us(p.cq_entries)?;
        let array = if flags.contains(IoringSetupFlags::NO_SQARRAY) {
            None
        } else {
            Some(us(p.sq_off.array)?)
        };

        // Every u32 field the kernel told us about must fit; so must the arrays.
        let words = [
            p.sq_off.head,
            p.sq_off.tail,
            p.sq_off.ring_mask,
            p.sq_off.ring_entries,
            p.sq_off.flags,
            p.sq_off.dropped,
            p.cq_off.head,
            p.cq_off.tail,
            p.cq_off.ring_mask,
            p.cq_off.ring_entries,
            p.cq_off.overflow,
        ];
        let mut len = mul_add(cq_entries, cqe_words * 8, us(p.cq_off.cqes)?)?;
        for w in words {
            len = len.max(mul_add(1, 4, us(w)?)?);
        }
        if let Some(array) = array {
            len = len.max(mul_add(sq_entries, 4, array)?);
        }

        let rings = Mmap::shared(fd, IORING_OFF_SQ_RING, len).map_err(SetupError::Mmap)?;
        let sqes = Mmap::shared(fd, IORING_OFF_SQES, mul_add(sq_entries, sqe_words * 8, 0)?)
            .map_err(SetupError::Mmap)?;
        let timespecs = Mmap::anonymous(mul_add(sq_entries, 16, 0)?).map_err(SetupError::Mmap)?;

        for w in words {
            if !rings.fits(us(w)?, 4, 1) {
                return Err(SetupError::Layout);
            }
        }
        let cqes = us(p.cq_off.cqes)?;
        if !rings.fits(cqes, 8, mul_add(cq_entries, cqe_words, 0)?)
            || !sqes.fits(0, 8, mul_add(sq_entries, sqe_words, 0)?)
            || !timespecs.fits(0, 8, mul_add(sq_entries, 2, 0)?)
        {
            return Err(SetupError::Layout);
        }
        // `ring_entries`/`ring_mask` are written once by the kernel at setup
        // (io_rings.sq_ring_entries, io_rings.sq_ring_mask, and the cq_ counterparts).
        let load = |off: u32| -> Result<u32, SetupError> {
            let off = us(off)?;
            if !rings.fits(off, 4, 1) {
                return Err(SetupError::Layout);
            }
            // SAFETY: `fits(off, 4, 1)` was checked just above.
            Ok(unsafe { rings.u32_at(off) }.load(Ordering::Relaxed))
        };
        let (sq_n, sq_mask) = (load(p.sq_off.ring_entries)?, load(p.sq_off.ring_mask)?);
        let (cq_n, cq_mask) = (load(p.cq_off.ring_entries)?, load(p.cq_off.ring_mask)?);
        let shape_ok =
            |n: u32, mask: u32, want: u32| n == want && n.is_power_of_two() && mask == n - 1;
        if !shape_ok(sq_n, sq_mask, p.sq_entries) || !shape_ok(cq_n, cq_mask, p.cq_entries) {
            return Err(SetupError::Layout);
        }
        if let Some(array) = array {
            if !rings.fits(array, 4, sq_entries) {
                return Err(SetupError::Layout);
            }
            // SAFETY: `fits(array, 4, sq_entries)` was checked just above.
            let slots = unsafe { rings.u32s_at(array, sq_entries) };
            // The SQ index array (io_rings' `sq_array`) maps ring position -> SQE index. An
            // identity map written once means we never touch it again; the kernel reads it
            // after its acquire load of `sq.tail`, which our first release store orders after
            // these writes.
            for (i, slot) in (0u32..).zip(slots) {
                slot.store(i, Ordering::Relaxed);
            }
        }
        let lay = Layout {
            sq_head: us(p.sq_off.head)?,
            sq_tail: us(p.sq_off.tail)?,
            sq_flags: us(p.sq_off.flags)?,
            sq_dropped: us(p.sq_off.dropped)?,
            sq_mask,
            sqe_words,
            cq_head: us(p.cq_off.head)?,
            cq_tail: us(p.cq_off.tail)?,
            cq_overflow: us(p.cq_off.overflow)?,
            cqes,
            cq_mask,
            cqe_words,
        };
        Ok(Self {
            rings,
            sqes,
            timespecs,
            lay,
        })
    }

    /// The submission queue's shared words, borrowed from the mappings.
    pub(crate) fn sq(&self) -> SqRing<'_> {
        let l = &self.lay;
        let n = l.sq_mask as usize + 1;
        // SAFETY: the offset and length passed `fits` on this mapping in `map` (type invariant:
        // `lay` is only set there), and mappings never shrink. The same holds for the five below.
        let head = unsafe { self.rings.u32_at(l.sq_head) };
        // SAFETY: as above.
        let tail = unsafe { self.rings.u32_at(l.sq_tail) };
        // SAFETY: as above.
        let flags = unsafe { self.rings.u32_at(l.sq_flags) };
        // SAFETY: as above.
        let dropped = unsafe { self.rings.u32_at(l.sq_dropped) };
        // SAFETY: as above (`sqes` holds `n * sqe_words` words).
        let sqes = unsafe { self.sqes.u64s_at(0, n * l.sqe_words) };
        // SAFETY: as above (`timespecs` holds `n * 2` words).
        let timespecs = unsafe { self.timespecs.u64s_at(0, n * 2) };
        SqRing {
            head,
            tail,
            flags,
            dropped,
            sqes,
            timespecs,
            mask: l.sq_mask,
            sqe_words: l.sqe_words,
        }
    }

    /// The completion queue's shared words, borrowed from the mappings.
    pub(crate) fn cq(&self) -> CqRing<'_> {
        let l = &self.lay;
        let n = l.cq_mask as usize + 1;
        // SAFETY: the offset and length passed `fits` on this mapping in `map` (type invariant:
        // `lay` is only set there), and mappings never shrink. The same holds for the three below.
        let head = unsafe { self.rings.u32_at(l.cq_head) };
        // SAFETY: as above.
        let tail = unsafe { self.rings.u32_at(l.cq_tail) };
        // SAFETY: as above.
        let overflow = unsafe { self.rings.u32_at(l.cq_overflow) };
        // SAFETY: as above (`n * cqe_words` words at `lay.cqes`).
        let cqes = unsafe { self.rings.u64s_at(l.cqes, n * l.cqe_words) };
        CqRing {
            head,
            tail,
            overflow,
            cqes,
            mask: l.cq_mask,
            cqe_words: l.cqe_words,
        }
    }
}

/// Memory owned by the crate for `IORING_REGISTER_BUFFERS`: `count` buffers of `len` bytes,
/// back to back in one page-aligned anonymous mapping (buffer `i` starts at `i * len`).
///
/// Hand it to [`Ring::register_buffers`](crate::Ring::register_buffers); the ring then owns it
/// until [`Ring::unregister_buffers`](crate::Ring::unregister_buffers) or drop, so the
/// addresses the kernel knows stay mapped. Read it with [`FixedBuffers::get`] and fill it
/// with [`FixedBuffers::get_mut`] while no `read_fixed`/`write_fixed` on that range is in
/// flight (the promise made by [`Sqe::read_fixed`](crate::Sqe::read_fixed)).
///
/// # References
/// - `io_uring_register(2)`, `IORING_REGISTER_BUFFERS`.
#[doc(alias = "IORING_REGISTER_BUFFERS")]
pub struct FixedBuffers {
    map: Mmap,
    count: u16,
    len: usize,
}

impl core::fmt::Debug for FixedBuffers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FixedBuffers")
            .field("count", &self.count)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl FixedBuffers {
    /// Maps `count` zeroed buffers of `len` bytes each. The kernel limits registration to
    /// 16384 buffers of at most 1 GiB each.
    ///
    /// # Errors
    ///
    /// `EINVAL` when either is 0 or the total overflows; `ENOMEM` from mmap(2).
    pub fn new(count: u16, len: usize) -> Result<Self, Errno> {
        if count == 0 || len == 0 {
            return Err(Errno::INVAL);
        }
        let total = len.checked_mul(usize::from(count)).ok_or(Errno::INVAL)?;
        Ok(Self {
            map: Mmap::anonymous(total)?,
            count,
            len,
        })
    }

    /// Number of buffers (the valid `buf_index` values are `0..count`).
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Length of each buffer in bytes.
    pub fn buffer_len(&self) -> usize {
        self.len
    }

    /// Buffer `index`; `None` if out of range.
    pub fn get(&self, index: u16) -> Option<&[u8]> {
        if index >= self.count {
            return None;
        }
        self.map
            .range(usize::from(index).checked_mul(self.len)?, self.len)
    }

    /// Buffer `index`, writable; `None` if out of range.
    pub fn get_mut(&mut self, index: u16) -> Option<&mut [u8]> {
        if index >= self.count {
            return None;
        }
        let len = self.len;
        self.map
            .range_mut(usize::from(index).checked_mul(len)?, len)
    }

    /// Address of bytes `start..start + n` of buffer `index`, if the range lies inside it.
    pub(crate) fn range_addr(&self, index: u16, start: usize, n: usize) -> Option<u64> {
        if index >= self.count || start.checked_add(n)? > self.len {
            return None;
        }
        let off = usize::from(index)
            .checked_mul(self.len)?
            .checked_add(start)?;
        u64::try_from(self.map.addr().checked_add(off)?).ok()
    }

    /// Writes the `iovec` table `{base, len}` for every buffer into `table` (2 words each).
    pub(crate) fn fill_iovecs(&self, table: &mut [usize]) {
        let mut base = self.map.addr();
        for pair in table.chunks_exact_mut(2).take(usize::from(self.count)) {
            if let [b, l] = pair {
                *b = base;
                *l = self.len;
            }
            base = base.wrapping_add(self.len);
        }
    }
}
