//! Ring setup with flag fallback ([`Builder`]), the [`Ring`] itself, and registration
//! (buffers, files, opcode probe).
//!
//! `unsafe` here: the `io_uring_setup` and `io_uring_register` calls.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::mem::size_of;

use linux_raw_sys::io_uring::IO_URING_OP_SUPPORTED;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::io_uring::{
    IoringFeatureFlags, IoringOp, IoringRegisterOp, IoringSetupFlags, io_uring_params,
    io_uring_register, io_uring_setup,
};

use crate::cq::CqState;
use crate::mmap::{FixedBuffers, Mmap, RingMem};
use crate::sq::SqState;

/// `IORING_MAX_ENTRIES`: the largest SQ the kernel accepts.
pub const MAX_ENTRIES: u32 = 32768;
/// `IORING_MAX_CQ_ENTRIES`: the largest CQ the kernel accepts.
pub const MAX_CQ_ENTRIES: u32 = 2 * MAX_ENTRIES;

/// The optional setup flags, in the order [`Builder::build`] drops them when
/// `io_uring_setup` answers `EINVAL` or `EOPNOTSUPP` (newest kernel feature first):
/// `NO_SQARRAY` (6.6), `DEFER_TASKRUN` (6.1), `TASKRUN_FLAG` (5.19), `SINGLE_ISSUER` (6.0),
/// `COOP_TASKRUN` (5.19), `SUBMIT_ALL` (5.18), `CQSIZE` (5.5). After each drop the set is made
/// consistent again: `DEFER_TASKRUN` needs `SINGLE_ISSUER`, `TASKRUN_FLAG` needs
/// `COOP_TASKRUN` or `DEFER_TASKRUN`. `SQE128` and `CQE32` are never dropped.
pub const FALLBACK_ORDER: [IoringSetupFlags; 7] = [
    IoringSetupFlags::NO_SQARRAY,
    IoringSetupFlags::DEFER_TASKRUN,
    IoringSetupFlags::TASKRUN_FLAG,
    IoringSetupFlags::SINGLE_ISSUER,
    IoringSetupFlags::COOP_TASKRUN,
    IoringSetupFlags::SUBMIT_ALL,
    IoringSetupFlags::CQSIZE,
];

/// Removes flags whose prerequisite is missing (the kernel would answer `EINVAL`).
fn sanitize(mut flags: IoringSetupFlags) -> IoringSetupFlags {
    if !flags.contains(IoringSetupFlags::SINGLE_ISSUER) {
        flags.remove(IoringSetupFlags::DEFER_TASKRUN);
    }
    if !flags.intersects(IoringSetupFlags::COOP_TASKRUN | IoringSetupFlags::DEFER_TASKRUN) {
        flags.remove(IoringSetupFlags::TASKRUN_FLAG);
    }
    flags
}

/// The flag set to try after `flags` was refused, or `None` when nothing optional is left.
fn next_fallback(flags: IoringSetupFlags) -> Option<IoringSetupFlags> {
    FALLBACK_ORDER
        .iter()
        .find(|f| flags.contains(**f))
        .map(|f| sanitize(flags - *f))
}

/// Calls `attempt` with `requested`, then with fewer optional flags while it fails with
/// `EINVAL`/`EOPNOTSUPP`. Returns its value and the flags that worked.
fn negotiate<T>(
    requested: IoringSetupFlags,
    mut attempt: impl FnMut(IoringSetupFlags) -> Result<T, Errno>,
) -> Result<(T, IoringSetupFlags), SetupError> {
    let mut flags = sanitize(requested);
    loop {
        match attempt(flags) {
            Ok(t) => return Ok((t, flags)),
            Err(errno @ (Errno::INVAL | Errno::OPNOTSUPP)) => match next_fallback(flags) {
                Some(fewer) => flags = fewer,
                None => return Err(SetupError::Refused { errno, flags }),
            },
            Err(errno) => return Err(SetupError::Refused { errno, flags }),
        }
    }
}

/// Why a ring could not be set up.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// `entries` not in `1..=32768`, or CQ entries below the (rounded-up) SQ entries or above
    /// 65536.
    InvalidEntries,
    /// `io_uring_setup` failed even with only the flags in `flags` (the mandatory ones, after
    /// every allowed fallback, for `EINVAL`/`EOPNOTSUPP`). `EPERM`: `io_uring` is disabled
    /// (`/proc/sys/kernel/io_uring_disabled`); `ENOMEM`: locked-memory limit.
    Refused {
        /// The kernel's answer.
        errno: Errno,
        /// The flags of the last attempt.
        flags: IoringSetupFlags,
    },
    /// The kernel lacks these required features: `IORING_FEAT_SINGLE_MMAP` (one mapping
    /// for both rings, Linux 5.4) or `IORING_FEAT_SUBMIT_STABLE` (everything an SQE points at
    /// for setup, such as a timeout's timespec, is read by the time the SQE is consumed, 5.5).
    MissingFeatures(IoringFeatureFlags),
    /// Mapping the ring failed.
    Mmap(Errno),
    /// The kernel's ring offsets do not fit the mapped sizes (never seen on a real kernel).
    Layout,
}

impl core::fmt::Display for SetupError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetupError::InvalidEntries => f.write_str(
                "invalid io_uring size: entries must be 1..=32768, cq entries sq..=65536",
            ),
            SetupError::Refused { errno, flags } => {
                write!(f, "io_uring_setup failed with flags {flags:?}: {errno}")
            }
            SetupError::MissingFeatures(missing) => {
                write!(
                    f,
                    "kernel lacks io_uring features {missing:?} (Linux 5.5+ required)"
                )
            }
            SetupError::Mmap(e) => write!(f, "mapping the io_uring failed: {e}"),
            SetupError::Layout => f.write_str("io_uring offsets from the kernel are inconsistent"),
        }
    }
}

impl core::error::Error for SetupError {}

/// Configures and creates a [`Ring`]: `io_uring_setup(2)` with the chosen flags, falling
/// back as [`FALLBACK_ORDER`] says, then the mappings.
///
/// # References
/// - `io_uring_setup(2)`, `io_uring(7)`.
#[doc(alias = "io_uring_setup")]
#[doc(alias = "io_uring_params")]
#[derive(Clone, Copy, Debug)]
pub struct Builder {
    entries: u32,
    cq_entries: u32,
    flags: IoringSetupFlags,
}

impl Builder {
    /// `entries` SQ entries (rounded up to a power of two by the kernel), kernel-default CQ
    /// (twice that), no optional flag.
    pub fn new(entries: u32) -> Self {
        Builder {
            entries,
            cq_entries: 0,
            flags: IoringSetupFlags::empty(),
        }
    }

    /// The preset for one single-threaded event loop: `SINGLE_ISSUER | DEFER_TASKRUN |
    /// TASKRUN_FLAG | SUBMIT_ALL | NO_SQARRAY` and a CQ of `2 × entries` (`CQSIZE`). Add
    /// [`Builder::sqe128`] for the native FUSE transport.
    pub fn event_loop(entries: u32) -> Self {
        Builder::new(entries)
            .cq_entries(entries.saturating_mul(2))
            .defer_taskrun(true)
            .taskrun_flag(true)
            .submit_all(true)
            .no_sqarray(true)
    }

    fn set(mut self, flag: IoringSetupFlags, on: bool) -> Self {
        self.flags.set(flag, on);
        self
    }

    /// `IORING_SETUP_SQE128`: 128-byte SQEs (80-byte `uring_cmd` area). Mandatory once
    /// asked: never dropped by the fallback.
    #[must_use]
    pub fn sqe128(self, on: bool) -> Self {
        self.set(IoringSetupFlags::SQE128, on)
    }

    /// `IORING_SETUP_CQE32`: 32-byte CQEs (see [`Cqe::big`](crate::Cqe::big)). Mandatory
    /// once asked.
    #[must_use]
    pub fn cqe32(self, on: bool) -> Self {
        self.set(IoringSetupFlags::CQE32, on)
    }

    /// `IORING_SETUP_CQSIZE` with `n` CQ entries (rounded up to a power of two).
    #[must_use]
    pub fn cq_entries(mut self, n: u32) -> Self {
        self.cq_entries = n;
        self.set(IoringSetupFlags::CQSIZE, true)
    }

    /// `IORING_SETUP_SINGLE_ISSUER`: only the thread that created the ring submits (others
    /// get `EEXIST`); lets the kernel skip locking.
    #[must_use]
    pub fn single_issuer(self, on: bool) -> Self {
        self.set(IoringSetupFlags::SINGLE_ISSUER, on)
    }

    /// `IORING_SETUP_DEFER_TASKRUN` (turning it on also asks for `SINGLE_ISSUER`, which it
    /// requires): completion work runs only when the ring's thread enters the kernel with
    /// `GETEVENTS`, i.e. in [`Ring::submit_and_wait`]. The loop must wait through the ring,
    /// never in another blocking call.
    #[must_use]
    pub fn defer_taskrun(self, on: bool) -> Self {
        let b = self.set(IoringSetupFlags::DEFER_TASKRUN, on);
        if on { b.single_issuer(true) } else { b }
    }

    /// `IORING_SETUP_COOP_TASKRUN`: completion work is not forced on the task with an IPI
    /// but runs at its next kernel entry (less interruption; completions may appear later).
    #[must_use]
    pub fn coop_taskrun(self, on: bool) -> Self {
        self.set(IoringSetupFlags::COOP_TASKRUN, on)
    }

    /// `IORING_SETUP_TASKRUN_FLAG`: the kernel sets `IORING_SQ_TASKRUN` when work waits, and
    /// [`Ring::submit`] then enters with `GETEVENTS` to run it (needs `COOP_TASKRUN` or
    /// `DEFER_TASKRUN`).
    #[must_use]
    pub fn taskrun_flag(self, on: bool) -> Self {
        self.set(IoringSetupFlags::TASKRUN_FLAG, on)
    }

    /// `IORING_SETUP_NO_SQARRAY`: no SQ index array; SQEs are taken in ring order.
    #[must_use]
    pub fn no_sqarray(self, on: bool) -> Self {
        self.set(IoringSetupFlags::NO_SQARRAY, on)
    }

    /// `IORING_SETUP_SUBMIT_ALL`: keep submitting the batch past an SQE that fails early
    /// (its error arrives as a CQE).
    #[must_use]
    pub fn submit_all(self, on: bool) -> Self {
        self.set(IoringSetupFlags::SUBMIT_ALL, on)
    }

    /// The flags that will be asked for first.
    pub fn requested_flags(&self) -> IoringSetupFlags {
        sanitize(self.flags)
    }

    /// Creates the ring. Requires `IORING_FEAT_SINGLE_MMAP` and `IORING_FEAT_SUBMIT_STABLE`
    /// (Linux 5.5+).
    ///
    /// # Errors
    ///
    /// See [`SetupError`].
    pub fn build(&self) -> Result<Ring, SetupError> {
        let rounded = self.entries.checked_next_power_of_two().unwrap_or(0);
        if self.entries == 0 || self.entries > MAX_ENTRIES {
            return Err(SetupError::InvalidEntries);
        }
        if self.flags.contains(IoringSetupFlags::CQSIZE)
            && (self.cq_entries < rounded || self.cq_entries > MAX_CQ_ENTRIES)
        {
            return Err(SetupError::InvalidEntries);
        }
        let ((fd, p), flags) = negotiate(self.flags, |flags| {
            let mut p = io_uring_params::default();
            p.flags = flags;
            if flags.contains(IoringSetupFlags::CQSIZE) {
                p.cq_entries = self.cq_entries;
            }
            // SAFETY:
            // - The only precondition: with `IORING_SETUP_ATTACH_WQ`, `wq_fd` must be open.
            //   `flags` comes from the builder, which cannot set ATTACH_WQ.
            let fd = unsafe { io_uring_setup(self.entries, &mut p) }?;
            Ok((fd, p))
        })?;
        let required = IoringFeatureFlags::SINGLE_MMAP | IoringFeatureFlags::SUBMIT_STABLE;
        if !p.features.contains(required) {
            return Err(SetupError::MissingFeatures(required - p.features));
        }
        let mem = RingMem::map(fd.as_fd(), &p, flags)?;
        Ok(Ring {
            mem,
            sq: SqState::default(),
            cq: CqState::default(),
            overflow_flushes: 0,
            fixed: None,
            flags,
            features: p.features,
            sq_entries: p.sq_entries,
            cq_entries: p.cq_entries,
            fd,
        })
    }
}

/// One `io_uring` instance: its descriptor, its mapped queues, and what it owns for the kernel
/// (registered buffers, timeout storage). Unmaps and closes on drop.
///
/// Not `Send`: create it on the thread that uses it (with `SINGLE_ISSUER` or `DEFER_TASKRUN`
/// the kernel refuses other threads anyway).
///
/// ```compile_fail
/// fn needs_send<T: Send>() {}
/// needs_send::<ringfuse_ring::Ring>();
/// ```
///
/// # References
/// - `io_uring(7)`, `io_uring_setup(2)`, `io_uring_enter(2)`, `io_uring_register(2)`.
#[doc(alias = "io_uring")]
pub struct Ring {
    // Field order is drop order: unmap first, close last.
    pub(crate) mem: RingMem,
    pub(crate) sq: SqState,
    pub(crate) cq: CqState,
    pub(crate) overflow_flushes: u64,
    fixed: Option<FixedBuffers>,
    flags: IoringSetupFlags,
    features: IoringFeatureFlags,
    sq_entries: u32,
    cq_entries: u32,
    pub(crate) fd: OwnedFd,
}

impl core::fmt::Debug for Ring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.fd)
            .field("flags", &self.flags)
            .field("features", &self.features)
            .field("sq_entries", &self.sq_entries)
            .field("cq_entries", &self.cq_entries)
            .finish_non_exhaustive()
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Ring {
    /// Shorthand for [`Builder::new`].
    pub fn builder(entries: u32) -> Builder {
        Builder::new(entries)
    }

    /// The setup flags the kernel accepted (after any fallback): log them.
    pub fn setup_flags(&self) -> IoringSetupFlags {
        self.flags
    }

    /// `io_uring_params.features` as reported by the kernel.
    pub fn features(&self) -> IoringFeatureFlags {
        self.features
    }

    /// SQ entries (a power of two).
    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// CQ entries (a power of two).
    pub fn cq_entries(&self) -> u32 {
        self.cq_entries
    }

    /// `IORING_REGISTER_BUFFERS`: registers every buffer of `bufs` (index `i` = buffer `i`)
    /// and keeps `bufs` until [`Ring::unregister_buffers`] or drop. `EBUSY` if buffers are
    /// already registered; on error `bufs` is unmapped.
    ///
    /// # Errors
    ///
    /// `EBUSY` (already registered), `ENOMEM`/`EFAULT`/`EINVAL` from the kernel (too many or
    /// too large buffers, memory-lock limit).
    ///
    /// # References
    /// - `io_uring_register(2)`.
    #[doc(alias = "IORING_REGISTER_BUFFERS")]
    pub fn register_buffers(&mut self, bufs: FixedBuffers) -> Result<(), Errno> {
        if self.fixed.is_some() {
            return Err(Errno::BUSY);
        }
        let n = usize::from(bufs.count());
        let mut table = Mmap::anonymous(n * 2 * size_of::<usize>())?;
        let iovecs = table.usizes_mut();
        bufs.fill_iovecs(iovecs);
        // SAFETY:
        // - `arg` points to `count` `struct iovec`s (`{base, len}` as two `usize`s, their C
        //   layout on Linux), written just above and alive for the call.
        // - Each iovec covers one buffer inside `bufs`' mapping, which `self` keeps mapped
        //   while registered; the kernel pins the pages (io_uring_register(2)), so even after
        //   an unmap its writes cannot reach memory Rust code reuses.
        unsafe {
            io_uring_register(
                &self.fd,
                IoringRegisterOp::RegisterBuffers,
                iovecs.as_ptr().cast::<c_void>(),
                u32::from(bufs.count()),
            )
        }?;
        self.fixed = Some(bufs);
        Ok(())
    }

    /// `IORING_UNREGISTER_BUFFERS`: returns the buffers (`None` if none were registered).
    /// Operations still in flight keep their pages pinned in the kernel.
    ///
    /// # Errors
    ///
    /// The kernel's errno; the buffers then stay registered and owned by the ring.
    #[doc(alias = "IORING_UNREGISTER_BUFFERS")]
    pub fn unregister_buffers(&mut self) -> Result<Option<FixedBuffers>, Errno> {
        if self.fixed.is_none() {
            return Ok(None);
        }
        // SAFETY:
        // - UNREGISTER_BUFFERS reads no argument (`arg` null, `nr_args` 0).
        unsafe {
            io_uring_register(
                &self.fd,
                IoringRegisterOp::UnregisterBuffers,
                core::ptr::null(),
                0,
            )
        }?;
        Ok(self.fixed.take())
    }

    /// The registered buffers, if any.
    pub fn fixed_buffers(&self) -> Option<&FixedBuffers> {
        self.fixed.as_ref()
    }

    /// The registered buffers, writable (see the promise of [`Sqe::read_fixed`](crate::Sqe::read_fixed)).
    pub fn fixed_buffers_mut(&mut self) -> Option<&mut FixedBuffers> {
        self.fixed.as_mut()
    }

    /// `IORING_REGISTER_FILES`: slot `i` of the fixed-file table refers to the file of
    /// `fds[i]` (the kernel takes its own reference, so the descriptors may be closed after).
    /// Use with [`Target::Fixed`](crate::Target::Fixed).
    ///
    /// # Errors
    ///
    /// `EBUSY` if files are already registered, `EBADF`, `EMFILE`, `EINVAL` from the kernel.
    #[doc(alias = "IORING_REGISTER_FILES")]
    pub fn register_files(&mut self, fds: &[BorrowedFd<'_>]) -> Result<(), Errno> {
        let n = u32::try_from(fds.len()).map_err(|_| Errno::INVAL)?;
        // SAFETY:
        // - `arg` points to `n` readable `int`s: `BorrowedFd` is `repr(transparent)` over the
        //   descriptor number; the slice lives for the call.
        // - Each is an open descriptor (`BorrowedFd`); the kernel takes its own reference.
        unsafe {
            io_uring_register(
                &self.fd,
                IoringRegisterOp::RegisterFiles,
                fds.as_ptr().cast::<c_void>(),
                n,
            )
        }?;
        Ok(())
    }

    /// `IORING_UNREGISTER_FILES`.
    ///
    /// # Errors
    ///
    /// `ENXIO` if no files are registered.
    #[doc(alias = "IORING_UNREGISTER_FILES")]
    pub fn unregister_files(&mut self) -> Result<(), Errno> {
        // SAFETY:
        // - UNREGISTER_FILES reads no argument (`arg` null, `nr_args` 0).
        unsafe {
            io_uring_register(
                &self.fd,
                IoringRegisterOp::UnregisterFiles,
                core::ptr::null(),
                0,
            )
        }?;
        Ok(())
    }

    /// `IORING_REGISTER_PROBE`: which opcodes this kernel supports.
    ///
    /// # Errors
    ///
    /// `EINVAL` on kernels before 5.6, which lack the probe.
    #[doc(alias = "IORING_REGISTER_PROBE")]
    pub fn probe(&self) -> Result<Probe, Errno> {
        // `struct io_uring_probe` (16 bytes) + 256 `struct io_uring_probe_op` (8 bytes each),
        // zeroed as the kernel requires.
        let mut buf = [0u64; 2 + 256];
        // SAFETY:
        // - `arg` points to a writable, zeroed `io_uring_probe` with room for 256 ops, and
        //   `nr_args` = 256; the kernel clamps it to IORING_OP_LAST and writes only that much.
        // - `buf` lives for the call.
        unsafe {
            io_uring_register(
                &self.fd,
                IoringRegisterOp::RegisterProbe,
                buf.as_mut_ptr().cast::<c_void>().cast_const(),
                256,
            )
        }?;
        Ok(Probe::parse(&buf))
    }
}

/// The answer of `IORING_REGISTER_PROBE`: is opcode X supported by this kernel?
///
/// # References
/// - `io_uring_register(2)`, `IORING_REGISTER_PROBE`.
#[doc(alias = "io_uring_probe")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    last_op: u8,
    supported: [u64; 4],
}

impl Probe {
    /// Reads `struct io_uring_probe` from its words (native endian, so memory order).
    fn parse(buf: &[u64]) -> Self {
        let mut probe = Probe::default();
        let Some(head) = buf.first() else {
            return probe;
        };
        let [last_op, ops_len, ..] = head.to_ne_bytes();
        probe.last_op = last_op;
        // ops[] starts at byte 16; each is {u8 op, u8 resv, u16 flags, u32 resv2}.
        for word in buf.iter().skip(2).take(usize::from(ops_len)) {
            let [op, _, f0, f1, ..] = word.to_ne_bytes();
            if u32::from(u16::from_ne_bytes([f0, f1])) & IO_URING_OP_SUPPORTED != 0 {
                if let Some(w) = probe.supported.get_mut(usize::from(op / 64)) {
                    *w |= 1 << (op % 64);
                }
            }
        }
        probe
    }

    /// Whether `op` is supported.
    pub fn is_supported(&self, op: IoringOp) -> bool {
        self.is_supported_raw(op as u8)
    }

    /// Whether opcode number `op` is supported (false for numbers the kernel does not know).
    pub fn is_supported_raw(&self, op: u8) -> bool {
        self.supported
            .get(usize::from(op / 64))
            .is_some_and(|w| w >> (op % 64) & 1 == 1)
    }

    /// `last_op`: the highest opcode number this kernel knows.
    pub fn last_op(&self) -> u8 {
        self.last_op
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    type F = IoringSetupFlags;

    #[test]
    fn fallback_drops_in_documented_order_and_keeps_mandatory() {
        let all = F::SQE128
            | F::CQE32
            | F::CQSIZE
            | F::SUBMIT_ALL
            | F::COOP_TASKRUN
            | F::TASKRUN_FLAG
            | F::SINGLE_ISSUER
            | F::DEFER_TASKRUN
            | F::NO_SQARRAY;
        let mut tried = Vec::new();
        let r = negotiate(all, |f| {
            tried.push(f);
            Err::<(), _>(Errno::INVAL)
        });
        assert_eq!(
            r,
            Err(SetupError::Refused {
                errno: Errno::INVAL,
                flags: F::SQE128 | F::CQE32
            })
        );
        let dropped: Vec<F> = tried.windows(2).map(|w| w[0] - w[1]).collect();
        assert_eq!(
            dropped,
            [
                F::NO_SQARRAY,
                F::DEFER_TASKRUN,
                F::TASKRUN_FLAG,
                F::SINGLE_ISSUER,
                F::COOP_TASKRUN,
                F::SUBMIT_ALL,
                F::CQSIZE
            ]
        );
        assert!(tried.iter().all(|f| f.contains(F::SQE128 | F::CQE32)));
    }

    #[test]
    fn fallback_stops_at_first_accepted_and_keeps_prerequisites() {
        // A kernel that knows everything but DEFER_TASKRUN and NO_SQARRAY (5.19-like).
        let req = F::SINGLE_ISSUER | F::DEFER_TASKRUN | F::TASKRUN_FLAG | F::NO_SQARRAY | F::SQE128;
        let (n, got) = negotiate(req, |f| {
            if f.intersects(F::DEFER_TASKRUN | F::NO_SQARRAY) {
                Err(Errno::INVAL)
            } else {
                Ok(7)
            }
        })
        .unwrap();
        assert_eq!(n, 7);
        // TASKRUN_FLAG went with DEFER_TASKRUN (no COOP_TASKRUN to carry it).
        assert_eq!(got, F::SINGLE_ISSUER | F::SQE128);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let r = negotiate(F::SINGLE_ISSUER, |_| {
            calls += 1;
            Err::<(), _>(Errno::PERM)
        });
        assert_eq!(calls, 1);
        assert!(matches!(
            r,
            Err(SetupError::Refused {
                errno: Errno::PERM,
                ..
            })
        ));
    }

    #[test]
    fn sanitize_enforces_kernel_prerequisites() {
        assert_eq!(sanitize(F::DEFER_TASKRUN | F::TASKRUN_FLAG), F::empty());
        assert_eq!(
            sanitize(F::COOP_TASKRUN | F::TASKRUN_FLAG),
            F::COOP_TASKRUN | F::TASKRUN_FLAG
        );
        assert_eq!(
            Builder::new(8).defer_taskrun(true).requested_flags(),
            F::DEFER_TASKRUN | F::SINGLE_ISSUER
        );
    }

    #[test]
    fn probe_parse() {
        let mut buf = [0u64; 2 + 256];
        buf[0] = u64::from_ne_bytes([62, 3, 0, 0, 0, 0, 0, 0]);
        buf[2] = u64::from_ne_bytes([0, 0, 1, 0, 0, 0, 0, 0]); // op 0 supported
        buf[3] = u64::from_ne_bytes([1, 0, 0, 0, 0, 0, 0, 0]); // op 1 not
        buf[4] = u64::from_ne_bytes([2, 0, 1, 0, 0, 0, 0, 0]); // op 2 supported
        buf[5] = u64::from_ne_bytes([3, 0, 1, 0, 0, 0, 0, 0]); // beyond ops_len: ignored
        let p = Probe::parse(&buf);
        assert_eq!(p.last_op(), 62);
        assert!(p.is_supported_raw(0));
        assert!(!p.is_supported_raw(1));
        assert!(p.is_supported_raw(2));
        assert!(!p.is_supported_raw(3));
        assert!(!p.is_supported_raw(255));
    }

    #[test]
    fn entries_are_checked_before_any_syscall() {
        assert_eq!(
            Builder::new(0).build().err(),
            Some(SetupError::InvalidEntries)
        );
        assert_eq!(
            Builder::new(40000).build().err(),
            Some(SetupError::InvalidEntries)
        );
        assert_eq!(
            Builder::new(64).cq_entries(32).build().err(),
            Some(SetupError::InvalidEntries)
        );
    }
}
