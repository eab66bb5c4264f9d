//! `io_uring` for ringfuse through raw syscalls ([rustix]): ring setup with flag fallback, the
//! submission and completion queues, typed SQE builders, and registration of buffers and
//! files. `#![no_std]`, no `alloc`, no libc. It knows nothing of FUSE.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use core::time::Duration;
//! use ringfuse_ring::{Builder, IoringTimeoutFlags, Sqe};
//!
//! let mut ring = Builder::event_loop(32).build()?;
//! println!("granted {:?}", ring.setup_flags());
//! for i in 0..3 {
//!     ring.push(&Sqe::nop().user_data(i))?;
//! }
//! ring.push(&Sqe::timeout(Duration::from_millis(1), 0, IoringTimeoutFlags::empty()).user_data(9))?;
//! ring.submit_and_wait(4)?;
//! let mut seen = 0;
//! while let Some(cqe) = ring.next_completion() {
//!     match cqe.user_data() {
//!         9 => assert_eq!(cqe.res(), -62), // -ETIME
//!         _ => assert_eq!(cqe.res(), 0),
//!     }
//!     seen += 1;
//! }
//! assert_eq!(seen, 4);
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! - `mmap` — [`FixedBuffers`] and the crate-private `Mmap`/`RingMem`: owned mappings,
//!   unmapped on drop. The only module with raw pointers; the queues see the shared memory
//!   as `&AtomicU32` and `&[AtomicU64]` borrowed from the mapping, checked once at setup.
//! - `setup` — [`Builder`] (`io_uring_setup(2)` with fallback), [`Ring`], registration
//!   ([`Ring::register_buffers`], [`Ring::register_files`], [`Ring::probe`]).
//! - `sq` — [`Sqe`] and its builders, [`Ring::push`], [`Ring::submit`],
//!   [`Ring::submit_and_wait`]. All SQE bytes come from one encoder, which writes all
//!   128 bytes on an SQE128 ring (the second half zero unless the SQE is an 80-byte
//!   `uring_cmd`).
//! - `cq` — [`Cqe`] and [`Ring::next_completion`].
//!
//! The index arithmetic of both queues (wrapping `u32` head and tail, `& mask`, local copies
//! published once per batch) works on plain memory and is unit-tested on heap-backed fake
//! rings, including wrap-around past `u32::MAX`; those tests need no kernel (Miri can run
//! them).
//!
//! # Guarantees
//!
//! Nothing allocates: the ring, its queues, the timeout storage and [`FixedBuffers`] are
//! mappings made at setup; a probe uses a 2 KiB stack buffer; registering buffers maps a
//! temporary iovec table. Nothing panics on any value the kernel writes: offsets are checked
//! against the mapping sizes at setup (else [`SetupError::Layout`]), and indices are
//! masked and read through `get`.
//!
//! # Memory ordering
//!
//! We Acquire-load the indices the kernel writes (`sq.head`, `cq.tail`, `sq_flags`) and
//! Release-store ours (`sq.tail` before every `io_uring_enter`, `cq.head` when the CQ is
//! drained and before every enter), from local copies, so one batch costs one store each.
//! Each atomic names its counterpart in `io_uring/io_uring.c`. `SQPOLL` is not supported, so
//! `IORING_SQ_NEED_WAKEUP` (and its `fence(SeqCst)`) never matters.
//!
//! # Safety model
//!
//! The crate owns what it can: the ring memory and descriptor, the registered-buffer
//! region ([`FixedBuffers`], kept by the ring while registered; the kernel also pins its
//! pages), and the `__kernel_timespec` of every timeout SQE (one slot per SQ entry; the kernel
//! copies it while consuming the SQE, before the slot can be reused). So [`Sqe::nop`],
//! [`Sqe::timeout`], [`Sqe::link_timeout`], [`Sqe::async_cancel`], [`Sqe::poll_add`],
//! [`Sqe::fsync`], [`Sqe::fallocate`], [`Sqe::ftruncate`], [`Sqe::close`] (which takes
//! the `OwnedFd`) and
//! [`Ring::push`] are safe.
//!
//! Builders that give the kernel the address of caller memory ([`Sqe::read`],
//! [`Sqe::write`], [`Sqe::readv`], [`Sqe::writev`], [`Sqe::openat`], [`Sqe::openat2`],
//! [`Sqe::statx`], [`Sqe::mkdirat`], [`Sqe::symlinkat`], [`Sqe::linkat`],
//! [`Sqe::unlinkat`], [`Sqe::renameat`], [`Sqe::getxattr`], [`Sqe::setxattr`],
//! [`Sqe::uring_cmd`], [`Sqe::uring_cmd80`]) are `unsafe fn`: the caller promises, as with
//! the io-uring crate's `push`, that the memory stays valid (and unaliased where the kernel
//! writes) until the completion has been reaped. The promise sits on the builder, where the
//! reference is taken, rather than on `push`, so safe SQEs stay safe to queue.
//! [`Sqe::read_fixed`]/[`Sqe::write_fixed`] are `unsafe` only for aliasing: the memory's
//! lifetime is the ring's business. Taking ownership of caller buffers until completion
//! would need a slot table per SQE; the runtime above owns its slab and knows when a slot is
//! in flight, so the promise costs it nothing.
//!
//! # Setup flags and fallback
//!
//! [`Builder`] asks for the flags chosen; when `io_uring_setup` answers `EINVAL` or
//! `EOPNOTSUPP` it drops optional flags one at a time in [`FALLBACK_ORDER`]: `NO_SQARRAY`,
//! `DEFER_TASKRUN`, `TASKRUN_FLAG`, `SINGLE_ISSUER`, `COOP_TASKRUN`, `SUBMIT_ALL`,
//! `CQSIZE`. `SQE128` and `CQE32` are never dropped. [`Ring::setup_flags`] and
//! [`Ring::features`] say what was granted. `IORING_FEAT_SINGLE_MMAP` and
//! `IORING_FEAT_SUBMIT_STABLE` (Linux 5.5) are required. What a granted flag means for the user:
//!
//! - `SQE128`: 128-byte SQEs; needed by the kernel's FUSE-over-`io_uring` ([`Sqe::uring_cmd80`]).
//! - `CQE32`: 32-byte CQEs, [`Cqe::big`] holds the extra 16 bytes.
//! - `SINGLE_ISSUER`: only the thread that created the ring may submit (`EEXIST`
//!   otherwise). [`Ring`] is not `Send` anyway.
//! - `DEFER_TASKRUN`: completion work runs only inside [`Ring::submit_and_wait`] (or a
//!   [`Ring::submit`] that sees `IORING_SQ_TASKRUN`): the event loop must wait through the
//!   ring, and a blocking call elsewhere on its thread stalls all completions.
//! - `COOP_TASKRUN`: no IPI to run completion work; it runs at the next kernel entry.
//! - `TASKRUN_FLAG`: the kernel flags pending work, so `submit` knows to enter with
//!   `GETEVENTS`.
//! - `NO_SQARRAY`: no SQ index array (SQEs are consumed in ring order, as this crate writes
//!   them anyway).
//! - `SUBMIT_ALL`: an SQE failing early does not stop the rest of the batch.
//! - `CQSIZE`: the CQ has the asked size instead of 2 × SQ.
//!
//! # Submitting
//!
//! [`Ring::push`] only writes the SQE into the ring; [`Ring::submit`] (no wait) or
//! [`Ring::submit_and_wait`] publishes the whole batch and makes one `io_uring_enter`. A
//! loop therefore drains every completion, pushes whatever they cause, and waits once:
//! k ready requests cost one syscall. Errors: `EINTR` is retried by `submit` (it never
//! blocks) and returned by `submit_and_wait` (a signal the caller may want to see);
//! `EAGAIN`/`EBUSY` (no memory for a request, or on old kernels a CQ backlog) leave the SQEs
//! queued, so reap completions and submit again; `EEXIST` means another thread used a
//! `SINGLE_ISSUER` ring.
//!
//! # Completion queue overflow
//!
//! With `IORING_FEAT_NODROP` (5.5+) a full CQ does not lose completions: the kernel keeps
//! them in a list and sets `IORING_SQ_CQ_OVERFLOW` ([`Ring::cq_overflow_pending`]). Every
//! submit that sees the flag enters with `GETEVENTS`, which moves them into the ring, and
//! counts it ([`Ring::overflow_flushes`]). [`Ring::cq_overflow`] is the kernel's
//! `cq.overflow` field: completions really lost (only without NODROP or when the kernel
//! could not allocate the list entry; `io_uring_enter` then reports `EBADR` once).
//!
//! [rustix]: https://docs.rs/rustix
#![no_std]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

#[cfg(test)]
extern crate std;

mod cq;
mod mmap;
mod setup;
mod sq;

pub use cq::Cqe;
pub use mmap::FixedBuffers;
pub use setup::{Builder, FALLBACK_ORDER, MAX_CQ_ENTRIES, MAX_ENTRIES, Probe, Ring, SetupError};
pub use sq::{CURRENT_POSITION, PushError, Sqe, Target};

pub use rustix::io::Errno;
pub use rustix::io_uring::{
    IoringAsyncCancelFlags, IoringCqeFlags, IoringFeatureFlags, IoringFsyncFlags, IoringOp,
    IoringSetupFlags, IoringSqeFlags, IoringTimeoutFlags,
};
