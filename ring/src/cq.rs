//! The completion side: [`Cqe`] (a copy of one completion), the queue logic on plain memory
//! ([`CqRing`], [`CqState`]) and the [`Ring`] methods that reap completions.
//!
//! `unsafe` here: only [`Cqe::into_owned_fd`], whose caller promises that `res` is a
//! descriptor nobody else owns.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use linux_raw_sys::io_uring::IORING_SQ_CQ_OVERFLOW;
use rustix::fd::{FromRawFd, OwnedFd};
use rustix::io::Errno;
use rustix::io_uring::IoringCqeFlags;

use crate::Ring;

/// One completion, `struct io_uring_cqe` (`include/uapi/linux/io_uring.h`), copied out of the
/// ring: its slot is free for the kernel again as soon as the head is published.
///
/// # References
/// - `io_uring(7)`, "Processing completions"; `io_uring_enter(2)` for each opcode's `res`.
#[doc(alias = "io_uring_cqe")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
    big: [u64; 2],
}

impl Cqe {
    /// Decodes the CQE words `w` (2, or 4 with `IORING_SETUP_CQE32`).
    fn from_words(w0: u64, w1: u64, big: [u64; 2]) -> Self {
        let [r0, r1, r2, r3, f0, f1, f2, f3] = w1.to_ne_bytes();
        Cqe {
            user_data: w0,
            res: i32::from_ne_bytes([r0, r1, r2, r3]),
            flags: u32::from_ne_bytes([f0, f1, f2, f3]),
            big,
        }
    }

    /// The submitting SQE's `user_data`.
    pub fn user_data(&self) -> u64 {
        self.user_data
    }

    /// `res`: the operation's result, `-errno` on failure.
    pub fn res(&self) -> i32 {
        self.res
    }

    /// `res` as a `Result`: `Ok(res)` if non-negative.
    ///
    /// # Errors
    ///
    /// The errno when `res` is negative (`EIO` for a value below -4095, which is no errno).
    pub fn result(&self) -> Result<u32, Errno> {
        u32::try_from(self.res).map_err(|_| {
            // Kernel errors are -4095..=-1. rustix asserts that range, so anything else
            // (which no opcode produces) becomes EIO instead of a panic.
            if (-4095..=-1).contains(&self.res) {
                Errno::from_raw_os_error(-self.res)
            } else {
                Errno::IO
            }
        })
    }

    /// `flags` (`IORING_CQE_F_MORE`, `IORING_CQE_F_BUFFER`, ...).
    pub fn flags(&self) -> IoringCqeFlags {
        IoringCqeFlags::from_bits_retain(self.flags)
    }

    /// `big_cqe[0..2]`: the extra 16 bytes of a CQE32 ring (zero on a 16-byte ring).
    pub fn big(&self) -> [u64; 2] {
        self.big
    }

    /// Takes ownership of the descriptor in `res` (the completion of an `openat`, for
    /// example).
    ///
    /// # Errors
    ///
    /// The errno when `res` is negative.
    ///
    /// # Safety
    ///
    /// This CQE must be the completion of an operation that returns a new descriptor
    /// (`IORING_OP_OPENAT`, `IORING_OP_ACCEPT`, ...) not installed in the fixed-file table,
    /// and `into_owned_fd` must not be called twice for it (each copy of a `Cqe` counts).
    pub unsafe fn into_owned_fd(self) -> Result<OwnedFd, Errno> {
        let fd = self.result()?;
        let fd = i32::try_from(fd).map_err(|_| Errno::BADF)?;
        // SAFETY:
        // - `fd` is an open descriptor created by the kernel for this operation (the caller's
        //   first promise), which nothing else owns (the caller's second promise).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// The completion queue's shared memory: views into the ring (or, in tests, into plain heap
/// memory). Built by `RingMem::cq` with checked bounds.
pub(crate) struct CqRing<'a> {
    /// `io_rings.cq.head`: our consumer index (we write, the kernel reads).
    pub(crate) head: &'a AtomicU32,
    /// `io_rings.cq.tail`: the kernel's producer index (it writes, we read).
    pub(crate) tail: &'a AtomicU32,
    /// `io_rings.cq_overflow`: completions the kernel had to drop.
    pub(crate) overflow: &'a AtomicU32,
    /// The CQE array, `cqe_words` words per entry.
    pub(crate) cqes: &'a [AtomicU64],
    /// `io_rings.cq_ring_mask` = entries - 1.
    pub(crate) mask: u32,
    /// 2 (16-byte CQEs) or 4 (`IORING_SETUP_CQE32`).
    pub(crate) cqe_words: usize,
}

/// Our side of the completion queue: a local head published once per batch.
#[derive(Debug, Default)]
pub(crate) struct CqState {
    /// Our copy of `io_rings.cq.head`: completions copied out so far.
    head: u32,
    /// The last `io_rings.cq.tail` we loaded.
    tail: u32,
    /// The head value last stored to `io_rings.cq.head`.
    published: u32,
}

impl CqState {
    /// Completions ready to copy out (reloads the kernel's tail).
    pub(crate) fn ready(&mut self, ring: &CqRing<'_>) -> u32 {
        // io_rings.cq.tail: Acquire, pairs with smp_store_release(&rings->cq.tail) in
        // io_commit_cqring() (io_uring/io_uring.c): the CQEs below it are written.
        self.tail = ring.tail.load(Ordering::Acquire);
        self.tail.wrapping_sub(self.head)
    }

    /// Copies out the next completion. When none is left, publishes the head (the end of a
    /// batch) and returns `None`.
    pub(crate) fn next(&mut self, ring: &CqRing<'_>) -> Option<Cqe> {
        if self.head == self.tail && self.ready(ring) == 0 {
            self.publish(ring);
            return None;
        }
        let words = ring.cqe_words;
        let slot = (self.head & ring.mask) as usize * words;
        // Plain loads: the acquire load of cq.tail above ordered them after the kernel's writes.
        let load = |w: &AtomicU64| w.load(Ordering::Relaxed);
        let cqe = match ring.cqes.get(slot..slot + words)? {
            [w0, w1] => Cqe::from_words(load(w0), load(w1), [0; 2]),
            [w0, w1, w2, w3] => Cqe::from_words(load(w0), load(w1), [load(w2), load(w3)]),
            _ => return None,
        };
        self.head = self.head.wrapping_add(1);
        Some(cqe)
    }

    /// Gives the copied-out slots back to the kernel, if any were.
    pub(crate) fn publish(&mut self, ring: &CqRing<'_>) {
        if self.published != self.head {
            // io_rings.cq.head: Release, pairs with the kernel's READ_ONCE/acquire of
            // cq.head when it looks for room (io_cqe_cache_refill, __io_cqring_events):
            // our reads of the slots happen before it may overwrite them.
            ring.head.store(self.head, Ordering::Release);
            self.published = self.head;
        }
    }
}

impl Ring {
    /// Copies out the next completion, or `None` when the ring is empty, in which case the
    /// consumed slots are handed back to the kernel (also done by every submit).
    ///
    /// Completions of asynchronous work appear only when the kernel has run it: with
    /// `DEFER_TASKRUN` that happens only inside [`Ring::submit_and_wait`] (or a
    /// [`Ring::submit`] that finds `IORING_SQ_TASKRUN` set), so reap after such a call.
    /// When this returns `None` while [`Ring::cq_overflow_pending`] is true, more
    /// completions wait in the kernel: the next submit moves them into the ring.
    pub fn next_completion(&mut self) -> Option<Cqe> {
        self.cq.next(&self.mem.cq())
    }

    /// Completions ready in the ring now.
    pub fn cq_ready(&mut self) -> u32 {
        self.cq.ready(&self.mem.cq())
    }

    /// `io_rings.cq_overflow`: completions the kernel *lost* because the CQ was full. With
    /// `IORING_FEAT_NODROP` (Linux 5.5+) it keeps them in an overflow list instead, so this
    /// stays 0 unless it could not even allocate that list entry.
    pub fn cq_overflow(&self) -> u32 {
        // io_rings.cq_overflow: a statistic, Relaxed.
        self.mem.cq().overflow.load(Ordering::Relaxed)
    }

    /// `IORING_SQ_CQ_OVERFLOW`: the CQ was full and completions wait in the kernel's overflow
    /// list (`IORING_FEAT_NODROP`). Reap, then submit: the next `io_uring_enter` carries
    /// `GETEVENTS` and flushes them into the ring in order.
    pub fn cq_overflow_pending(&self) -> bool {
        self.sq_flags() & IORING_SQ_CQ_OVERFLOW != 0
    }

    /// How many times a submit found `IORING_SQ_CQ_OVERFLOW` set and entered with
    /// `GETEVENTS` to flush the overflow list: a count of "the CQ was too small" events.
    pub fn overflow_flushes(&self) -> u64 {
        self.overflow_flushes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    struct Fake {
        words: [AtomicU32; 3],
        cqes: Vec<AtomicU64>,
        n: u32,
        w: usize,
    }

    impl Fake {
        fn new(n: u32, w: usize, start: u32) -> Self {
            Fake {
                words: [
                    AtomicU32::new(start),
                    AtomicU32::new(start),
                    AtomicU32::new(0),
                ],
                cqes: (0..n as usize * w).map(|_| AtomicU64::new(0)).collect(),
                n,
                w,
            }
        }
        fn ring(&self) -> CqRing<'_> {
            CqRing {
                head: &self.words[0],
                tail: &self.words[1],
                overflow: &self.words[2],
                cqes: &self.cqes,
                mask: self.n - 1,
                cqe_words: self.w,
            }
        }
        /// The kernel posts a CQE; false if the ring is full (by the published head).
        fn post(&self, user_data: u64, res: i32, flags: u32) -> bool {
            let head = self.words[0].load(Ordering::Acquire);
            let tail = self.words[1].load(Ordering::Relaxed);
            if tail.wrapping_sub(head) >= self.n {
                return false;
            }
            let slot = (tail & (self.n - 1)) as usize * self.w;
            self.cqes[slot].store(user_data, Ordering::Relaxed);
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&res.to_ne_bytes());
            b[4..].copy_from_slice(&flags.to_ne_bytes());
            self.cqes[slot + 1].store(u64::from_ne_bytes(b), Ordering::Relaxed);
            if self.w == 4 {
                self.cqes[slot + 2].store(!user_data, Ordering::Relaxed);
                self.cqes[slot + 3].store(7, Ordering::Relaxed);
            }
            self.words[1].store(tail.wrapping_add(1), Ordering::Release);
            true
        }
    }

    #[test]
    fn drains_in_order_across_u32_wrap_and_publishes_once_empty() {
        let f = Fake::new(4, 2, u32::MAX - 1);
        let ring = f.ring();
        let mut st = CqState {
            head: u32::MAX - 1,
            tail: u32::MAX - 1,
            published: u32::MAX - 1,
        };
        let mut seen = Vec::new();
        let mut next_ud = 0u64;
        for _round in 0..5 {
            while f.post(next_ud, -i32::try_from(next_ud).unwrap(), 1) {
                next_ud += 1;
            }
            // The ring is full by the kernel's view until we publish.
            assert_eq!(st.ready(&ring), 4);
            let first = st.next(&ring).unwrap();
            assert!(
                !f.post(99, 0, 0),
                "slot reused before the head was published"
            );
            seen.push(first);
            while let Some(c) = st.next(&ring) {
                seen.push(c);
            }
            // `next` returned None: the head is published.
            assert_eq!(f.words[0].load(Ordering::Relaxed), st.head);
        }
        assert_eq!(seen.len(), 20);
        for (i, c) in seen.iter().enumerate() {
            assert_eq!(c.user_data(), i as u64);
            assert_eq!(c.res(), -i32::try_from(i).unwrap());
            assert_eq!(c.flags().bits(), 1);
            assert_eq!(c.big(), [0, 0]);
        }
        assert_eq!(st.head, (u32::MAX - 1).wrapping_add(20));
    }

    #[test]
    fn cqe32_big_words() {
        let f = Fake::new(2, 4, 0);
        let ring = f.ring();
        let mut st = CqState::default();
        assert!(f.post(5, 3, 0));
        let c = st.next(&ring).unwrap();
        assert_eq!(c.user_data(), 5);
        assert_eq!(c.result(), Ok(3));
        assert_eq!(c.big(), [!5, 7]);
        assert_eq!(st.next(&ring), None);
    }

    #[test]
    fn result_maps_negative_res_to_errno() {
        let w1 = |res: i32| {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&res.to_ne_bytes());
            u64::from_ne_bytes(b)
        };
        let c = Cqe::from_words(1, w1(-62), [0; 2]);
        assert_eq!(c.result(), Err(Errno::TIME));
        let c = Cqe::from_words(1, w1(i32::MIN), [0; 2]);
        assert_eq!(c.result(), Err(Errno::IO));
        assert_eq!(
            Cqe::from_words(1, w1(-4096), [0; 2]).result(),
            Err(Errno::IO)
        );
        assert_eq!(
            Cqe::from_words(1, w1(-4095), [0; 2])
                .result()
                .unwrap_err()
                .raw_os_error(),
            4095
        );
        assert_eq!(Cqe::from_words(1, w1(9), [0; 2]).result(), Ok(9));
    }
}
