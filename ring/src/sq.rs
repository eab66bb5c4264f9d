//! The submission side: [`Sqe`] (every SQE is built here and encoded by one function),
//! [`Target`], the queue logic on plain memory ([`SqRing`], [`SqState`]) and the
//! [`Ring`] methods that push and submit.
//!
//! `unsafe` here: the `io_uring_enter` call, and the `unsafe fn` builders whose callers promise
//! that memory they point the kernel at stays valid (see the crate docs, "Safety model").
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use linux_raw_sys::io_uring::io_uring_op as op;
use linux_raw_sys::io_uring::{IORING_SQ_CQ_OVERFLOW, IORING_SQ_TASKRUN};
use rustix::event::PollFlags;
use rustix::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use rustix::fs::{
    AtFlags, FallocateFlags, Mode, OFlags, RenameFlags, Statx, StatxFlags, XattrFlags,
};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::io_uring::{
    IoringAsyncCancelFlags, IoringEnterFlags, IoringFsyncFlags, IoringSqeFlags, IoringTimeoutFlags,
    io_uring_enter, open_how,
};

use crate::Ring;
use crate::mmap::FixedBuffers;

/// `off` value meaning "the file's current position, advanced by the transfer" (`-1` in
/// `io_uring_enter(2)` for `IORING_OP_READ`/`WRITE`/`READV`/`WRITEV`); pipes and other
/// streams ignore the offset.
pub const CURRENT_POSITION: u64 = u64::MAX;

/// The file an SQE acts on: an open descriptor, or a slot of the table registered with
/// [`Ring::register_files`] (sets `IOSQE_FIXED_FILE`).
///
/// A [`BorrowedFd`] proves the descriptor is open while the SQE is built. The kernel looks
/// it up when it consumes the SQE (at the next submit), so keep it open until then; closing it
/// later makes the operation fail with `EBADF` or act on whatever file reuses the number, it
/// never touches memory.
#[derive(Clone, Copy, Debug)]
pub enum Target<'fd> {
    /// A descriptor (`sqe->fd`).
    Fd(BorrowedFd<'fd>),
    /// Index into the registered file table (`sqe->fd` with `IOSQE_FIXED_FILE`).
    Fixed(u32),
}

impl<'fd> From<BorrowedFd<'fd>> for Target<'fd> {
    fn from(fd: BorrowedFd<'fd>) -> Self {
        Target::Fd(fd)
    }
}

impl Target<'_> {
    /// `(sqe->fd, extra sqe->flags)`.
    fn encode(self) -> (i32, u8) {
        match self {
            Target::Fd(fd) => (fd.as_raw_fd(), 0),
            // An index beyond i32::MAX cannot be registered; -1 makes the kernel say EBADF.
            Target::Fixed(i) => (
                i32::try_from(i).unwrap_or(-1),
                IoringSqeFlags::FIXED_FILE.bits(),
            ),
        }
    }
}

/// What an [`Sqe`] needs beyond its 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extra {
    /// Nothing.
    None,
    /// Uses bytes 64..128: only a ring set up with `IORING_SETUP_SQE128` takes it.
    Sqe128,
    /// A `__kernel_timespec` the ring stores in its own per-slot memory; `addr` is pointed at
    /// it when pushed.
    Timespec { sec: u64, nsec: u64 },
}

/// One submission queue entry, `struct io_uring_sqe` (`include/uapi/linux/io_uring.h`), built
/// by the constructors below and copied into the ring by [`Ring::push`].
///
/// Constructors that only carry numbers are safe. Constructors that hand the kernel the
/// address of caller memory are `unsafe fn` and say in `# Safety` for how long that memory
/// must stay valid. Fields are private, so every `Sqe` comes from one of them.
///
/// # References
/// - `io_uring_enter(2)` (one section per opcode), `io_uring(7)`.
#[doc(alias = "io_uring_sqe")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    /// `off`/`addr2`/`cmd_op`.
    off: u64,
    /// `addr`/`splice_off_in`.
    addr: u64,
    len: u32,
    /// The per-opcode flags union (`rw_flags`, `fsync_flags`, `poll32_events`, ...).
    op_flags: u32,
    user_data: u64,
    /// `buf_index`/`buf_group`.
    buf_index: u16,
    personality: u16,
    /// `file_index`/`splice_fd_in`/`addr_len`.
    file_index: u32,
    /// Bytes 48..128: `addr3`, `__pad2` and, on an SQE128 ring, the rest of `cmd`.
    cmd: [u64; 10],
    extra: Extra,
}

// The encoding in `Sqe::encode` follows these offsets; a different kernel layout fails the build.
const _: () = {
    use core::mem::{offset_of, size_of};
    use linux_raw_sys::io_uring::{io_uring_cqe, io_uring_sqe as S};
    assert!(size_of::<S>() == 64);
    assert!(offset_of!(S, opcode) == 0);
    assert!(offset_of!(S, flags) == 1);
    assert!(offset_of!(S, ioprio) == 2);
    assert!(offset_of!(S, fd) == 4);
    assert!(offset_of!(S, __bindgen_anon_1) == 8); // off / addr2 / cmd_op
    assert!(offset_of!(S, __bindgen_anon_2) == 16); // addr
    assert!(offset_of!(S, len) == 24);
    assert!(offset_of!(S, __bindgen_anon_3) == 28); // op flags
    assert!(offset_of!(S, user_data) == 32);
    assert!(offset_of!(S, __bindgen_anon_4) == 40); // buf_index
    assert!(offset_of!(S, personality) == 42);
    assert!(offset_of!(S, __bindgen_anon_5) == 44); // file_index
    assert!(offset_of!(S, __bindgen_anon_6) == 48); // addr3 / cmd
    assert!(size_of::<io_uring_cqe>() == 16);
    assert!(offset_of!(io_uring_cqe, res) == 8);
    assert!(offset_of!(io_uring_cqe, flags) == 12);
};

/// Two native-endian `u32`s as the `u64` that holds them in memory, first one first.
fn join32(first: u32, second: u32) -> u64 {
    let [x0, x1, x2, x3] = first.to_ne_bytes();
    let [y0, y1, y2, y3] = second.to_ne_bytes();
    u64::from_ne_bytes([x0, x1, x2, x3, y0, y1, y2, y3])
}

/// A buffer length as the kernel's `u32`. Longer buffers are described as `u32::MAX` bytes:
/// the kernel then never touches more than the buffer holds.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Address of a slice's first element as the kernel's `u64`.
fn addr64<T>(s: &[T]) -> u64 {
    s.as_ptr().addr() as u64
}

impl Sqe {
    /// The common start of every SQE: opcode, target, `addr`, `len`, `off`. All else is 0.
    fn prep(opcode: op, fd: i32, flags: u8, addr: u64, len: u32, off: u64) -> Self {
        Sqe {
            opcode: opcode as u8,
            flags,
            ioprio: 0,
            fd,
            off,
            addr,
            len,
            op_flags: 0,
            user_data: 0,
            buf_index: 0,
            personality: 0,
            file_index: 0,
            cmd: [0; 10],
            extra: Extra::None,
        }
    }

    /// Same, acting on `target`.
    fn on(opcode: op, target: Target<'_>, addr: u64, len: u32, off: u64) -> Self {
        let (fd, flags) = target.encode();
        Self::prep(opcode, fd, flags, addr, len, off)
    }

    /// The SQE as 16 native-endian words, in the kernel's layout. The only place an SQE's
    /// bytes are produced: [`SqState::push`] copies 8 words (64-byte ring) or all 16 (SQE128
    /// ring; words 8..16 are zero unless this is an 80-byte `uring_cmd`).
    fn encode(&self) -> [u64; 16] {
        let [p0, p1] = self.ioprio.to_ne_bytes();
        let [f0, f1, f2, f3] = self.fd.to_ne_bytes();
        let [b0, b1] = self.buf_index.to_ne_bytes();
        let [q0, q1] = self.personality.to_ne_bytes();
        let [i0, i1, i2, i3] = self.file_index.to_ne_bytes();
        let c = self.cmd;
        [
            u64::from_ne_bytes([self.opcode, self.flags, p0, p1, f0, f1, f2, f3]),
            self.off,
            self.addr,
            join32(self.len, self.op_flags),
            self.user_data,
            u64::from_ne_bytes([b0, b1, q0, q1, i0, i1, i2, i3]),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
            c[9],
        ]
    }

    /// Sets `user_data`, returned untouched in this SQE's completion.
    #[must_use]
    pub fn user_data(mut self, user_data: u64) -> Self {
        self.user_data = user_data;
        self
    }

    /// Adds `IOSQE_*` flags (`IO_LINK`, `IO_HARDLINK`, `IO_DRAIN`, `ASYNC`,
    /// `CQE_SKIP_SUCCESS`, ...). `FIXED_FILE` is set by [`Target::Fixed`].
    #[must_use]
    pub fn flags(mut self, flags: IoringSqeFlags) -> Self {
        self.flags |= flags.bits();
        self
    }

    /// The `user_data` set so far.
    pub fn get_user_data(&self) -> u64 {
        self.user_data
    }

    /// The opcode (`IORING_OP_*`).
    pub fn opcode(&self) -> u8 {
        self.opcode
    }

    /// The `IOSQE_*` flags set so far.
    pub fn get_flags(&self) -> IoringSqeFlags {
        IoringSqeFlags::from_bits_retain(self.flags)
    }

    /// Whether this SQE needs a ring set up with `IORING_SETUP_SQE128`.
    pub fn needs_sqe128(&self) -> bool {
        self.extra == Extra::Sqe128
    }

    /// `IORING_OP_NOP`: completes with `res = 0`.
    #[doc(alias = "IORING_OP_NOP")]
    pub fn nop() -> Self {
        Self::prep(op::IORING_OP_NOP, -1, 0, 0, 0, 0)
    }

    /// `IORING_OP_READ`: read into `buf` at file offset `offset` ([`CURRENT_POSITION`] for the
    /// file position). `res` = bytes read.
    ///
    /// # Safety
    ///
    /// `buf` must stay valid, and must not be read or written by anything else, until this
    /// SQE's completion has been taken from the ring (the kernel writes it at any time until
    /// then, possibly from an io-wq thread).
    #[doc(alias = "IORING_OP_READ")]
    pub unsafe fn read<'fd>(target: impl Into<Target<'fd>>, buf: &mut [u8], offset: u64) -> Self {
        Self::on(
            op::IORING_OP_READ,
            target.into(),
            addr64(buf),
            len32(buf.len()),
            offset,
        )
    }

    /// `IORING_OP_WRITE`: write `buf` at file offset `offset` ([`CURRENT_POSITION`] for the
    /// file position). `res` = bytes written.
    ///
    /// # Safety
    ///
    /// `buf` must stay valid and unmodified until this SQE's completion has been taken from
    /// the ring.
    #[doc(alias = "IORING_OP_WRITE")]
    pub unsafe fn write<'fd>(target: impl Into<Target<'fd>>, buf: &[u8], offset: u64) -> Self {
        Self::on(
            op::IORING_OP_WRITE,
            target.into(),
            addr64(buf),
            len32(buf.len()),
            offset,
        )
    }

    /// `IORING_OP_READV`: scatter read into `bufs`.
    ///
    /// # Safety
    ///
    /// The `bufs` array and every buffer it describes must stay valid, and the buffers must not
    /// be accessed by anything else, until this SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_READV")]
    pub unsafe fn readv<'fd>(
        target: impl Into<Target<'fd>>,
        bufs: &mut [IoSliceMut<'_>],
        offset: u64,
    ) -> Self {
        Self::on(
            op::IORING_OP_READV,
            target.into(),
            addr64(bufs),
            len32(bufs.len()),
            offset,
        )
    }

    /// `IORING_OP_WRITEV`: gather write from `bufs`.
    ///
    /// # Safety
    ///
    /// The `bufs` array and every buffer it describes must stay valid and unmodified until this
    /// SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_WRITEV")]
    pub unsafe fn writev<'fd>(
        target: impl Into<Target<'fd>>,
        bufs: &[IoSlice<'_>],
        offset: u64,
    ) -> Self {
        Self::on(
            op::IORING_OP_WRITEV,
            target.into(),
            addr64(bufs),
            len32(bufs.len()),
            offset,
        )
    }

    /// `IORING_OP_READ_FIXED`: read into bytes `start..start + len` of registered buffer
    /// `index` of `bufs`, the ring's [`Ring::fixed_buffers`]. `None` if the range is not
    /// inside that buffer. (Other memory is refused by the kernel with `-EFAULT`: it checks
    /// the address against the registered buffer.)
    ///
    /// The memory itself is owned by the ring (registered buffers stay mapped until
    /// unregistered, and the kernel pins their pages), so only aliasing is left to promise.
    ///
    /// # Safety
    ///
    /// Until this SQE's completion has been taken from the ring, that byte range must not be
    /// read or written through [`FixedBuffers::get`]/[`FixedBuffers::get_mut`] (or any
    /// reference obtained from them before), and no other operation may write it.
    #[doc(alias = "IORING_OP_READ_FIXED")]
    pub unsafe fn read_fixed<'fd>(
        target: impl Into<Target<'fd>>,
        bufs: &FixedBuffers,
        index: u16,
        start: usize,
        len: u32,
        offset: u64,
    ) -> Option<Self> {
        let addr = bufs.range_addr(index, start, usize::try_from(len).ok()?)?;
        let mut sqe = Self::on(op::IORING_OP_READ_FIXED, target.into(), addr, len, offset);
        sqe.buf_index = index;
        Some(sqe)
    }

    /// `IORING_OP_WRITE_FIXED`: write bytes `start..start + len` of registered buffer `index`.
    /// `None` if the range is not inside that buffer.
    ///
    /// # Safety
    ///
    /// Until this SQE's completion has been taken from the ring, that byte range must not be
    /// written (through [`FixedBuffers::get_mut`] or by another operation).
    #[doc(alias = "IORING_OP_WRITE_FIXED")]
    pub unsafe fn write_fixed<'fd>(
        target: impl Into<Target<'fd>>,
        bufs: &FixedBuffers,
        index: u16,
        start: usize,
        len: u32,
        offset: u64,
    ) -> Option<Self> {
        let addr = bufs.range_addr(index, start, usize::try_from(len).ok()?)?;
        let mut sqe = Self::on(op::IORING_OP_WRITE_FIXED, target.into(), addr, len, offset);
        sqe.buf_index = index;
        Some(sqe)
    }

    /// `IORING_OP_URING_CMD` on a 64-byte SQE: `cmd_op` at offset 8, `addr`/`len` as the
    /// driver defines them, and the 16-byte command area at offset 48. `res` is the driver's
    /// answer; files without a `uring_cmd` handler give `-EOPNOTSUPP`.
    ///
    /// # Safety
    ///
    /// Whatever memory the command designates (through `addr`/`len` or addresses inside
    /// `cmd`) must be valid for the driver's accesses until this SQE's completion has been
    /// taken from the ring, as the driver documents.
    #[doc(alias = "IORING_OP_URING_CMD")]
    pub unsafe fn uring_cmd<'fd>(
        target: impl Into<Target<'fd>>,
        cmd_op: u32,
        addr: u64,
        len: u32,
        cmd: &[u8; 16],
    ) -> Self {
        let mut sqe = Self::on(
            op::IORING_OP_URING_CMD,
            target.into(),
            addr,
            len,
            join32(cmd_op, 0),
        );
        copy_cmd(&mut sqe.cmd, cmd);
        sqe
    }

    /// `IORING_OP_URING_CMD` with the 80-byte command area (offset 48 to 128) of a 128-byte
    /// SQE, as the kernel's FUSE-over-`io_uring` needs. [`Ring::push`] refuses it with
    /// [`PushError::Sqe128Required`] on a ring without `IORING_SETUP_SQE128`.
    ///
    /// # Safety
    ///
    /// As for [`Sqe::uring_cmd`].
    #[doc(alias = "IORING_OP_URING_CMD")]
    pub unsafe fn uring_cmd80<'fd>(
        target: impl Into<Target<'fd>>,
        cmd_op: u32,
        addr: u64,
        len: u32,
        cmd: &[u8; 80],
    ) -> Self {
        let mut sqe = Self::on(
            op::IORING_OP_URING_CMD,
            target.into(),
            addr,
            len,
            join32(cmd_op, 0),
        );
        copy_cmd(&mut sqe.cmd, cmd);
        sqe.extra = Extra::Sqe128;
        sqe
    }

    /// `IORING_OP_POLL_ADD` (one shot): completes when `target` has one of `events`; `res` is
    /// the ready mask.
    #[doc(alias = "IORING_OP_POLL_ADD")]
    pub fn poll_add<'fd>(target: impl Into<Target<'fd>>, events: PollFlags) -> Self {
        let mut sqe = Self::on(op::IORING_OP_POLL_ADD, target.into(), 0, 0, 0);
        let mask = u32::from(events.bits());
        // `poll32_events` is read halfword-swapped on big-endian kernels
        // (io_poll_parse_events: `swahw32`), which liburing mirrors.
        sqe.op_flags = if cfg!(target_endian = "big") {
            mask.rotate_left(16)
        } else {
            mask
        };
        sqe
    }

    /// `IORING_OP_OPENAT`: `openat(dirfd, path, flags, mode)`; `res` is the new descriptor,
    /// which [`Cqe::into_owned_fd`](crate::Cqe::into_owned_fd) takes ownership of. Use
    /// `rustix::fs::CWD` for the current directory.
    ///
    /// # Safety
    ///
    /// `path` must stay valid until this SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_OPENAT")]
    pub unsafe fn openat(dirfd: BorrowedFd<'_>, path: &CStr, flags: OFlags, mode: Mode) -> Self {
        let mut sqe = Self::prep(
            op::IORING_OP_OPENAT,
            dirfd.as_raw_fd(),
            0,
            path.as_ptr().addr() as u64,
            mode.bits(),
            0,
        );
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_CLOSE`: closes `fd`, whose ownership moves into the SQE (if the SQE is never
    /// submitted, the descriptor leaks open). `res` is 0 or `-errno`.
    #[doc(alias = "IORING_OP_CLOSE")]
    pub fn close(fd: OwnedFd) -> Self {
        Self::prep(op::IORING_OP_CLOSE, fd.into_raw_fd(), 0, 0, 0, 0)
    }

    /// `IORING_OP_CLOSE` of registered-file slot `index` (`file_index = index + 1`).
    #[doc(alias = "IORING_OP_CLOSE")]
    pub fn close_fixed(index: u32) -> Self {
        let mut sqe = Self::prep(op::IORING_OP_CLOSE, 0, 0, 0, 0, 0);
        sqe.file_index = index.saturating_add(1);
        sqe
    }

    /// `IORING_OP_STATX`: `statx(dirfd, path, flags, mask, out)`.
    ///
    /// # Safety
    ///
    /// `path` and `out` must stay valid, and `out` must not be accessed by anything else,
    /// until this SQE's completion has been taken from the ring (the kernel writes `out` when
    /// the operation runs).
    #[doc(alias = "IORING_OP_STATX")]
    pub unsafe fn statx(
        dirfd: BorrowedFd<'_>,
        path: &CStr,
        flags: AtFlags,
        mask: StatxFlags,
        out: &mut Statx,
    ) -> Self {
        let out = core::ptr::from_mut(out).addr() as u64;
        let mut sqe = Self::prep(
            op::IORING_OP_STATX,
            dirfd.as_raw_fd(),
            0,
            path.as_ptr().addr() as u64,
            mask.bits(),
            out,
        );
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_OPENAT2`: `openat2(dirfd, path, how)` (Linux 5.6). `how` holds the open
    /// flags, the mode and the `RESOLVE_*` flags that confine the lookup
    /// (`RESOLVE_BENEATH`, `RESOLVE_NO_SYMLINKS`, `RESOLVE_NO_MAGICLINKS`, ...); `res` is the
    /// new descriptor, as for [`Sqe::openat`].
    ///
    /// # Safety
    ///
    /// `path` and `how` must stay valid until this SQE's completion has been taken from the
    /// ring.
    #[doc(alias = "IORING_OP_OPENAT2")]
    pub unsafe fn openat2(dirfd: BorrowedFd<'_>, path: &CStr, how: &open_how) -> Self {
        Self::prep(
            op::IORING_OP_OPENAT2,
            dirfd.as_raw_fd(),
            0,
            path.as_ptr().addr() as u64,
            len32(core::mem::size_of::<open_how>()),
            core::ptr::from_ref(how).addr() as u64,
        )
    }

    /// `IORING_OP_MKDIRAT`: `mkdirat(dirfd, path, mode)` (Linux 5.15). `res` is 0 or
    /// `-errno`.
    ///
    /// # Safety
    ///
    /// `path` must stay valid until this SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_MKDIRAT")]
    pub unsafe fn mkdirat(dirfd: BorrowedFd<'_>, path: &CStr, mode: Mode) -> Self {
        Self::prep(
            op::IORING_OP_MKDIRAT,
            dirfd.as_raw_fd(),
            0,
            path.as_ptr().addr() as u64,
            mode.bits(),
            0,
        )
    }

    /// `IORING_OP_SYMLINKAT`: `symlinkat(target, newdirfd, linkpath)` (Linux 5.15): creates
    /// `linkpath` (relative to `newdirfd`) pointing to `target`. `res` is 0 or `-errno`.
    ///
    /// # Safety
    ///
    /// `target` and `linkpath` must stay valid until this SQE's completion has been taken
    /// from the ring.
    #[doc(alias = "IORING_OP_SYMLINKAT")]
    pub unsafe fn symlinkat(target: &CStr, newdirfd: BorrowedFd<'_>, linkpath: &CStr) -> Self {
        Self::prep(
            op::IORING_OP_SYMLINKAT,
            newdirfd.as_raw_fd(),
            0,
            target.as_ptr().addr() as u64,
            0,
            linkpath.as_ptr().addr() as u64,
        )
    }

    /// `IORING_OP_LINKAT`: `linkat(olddirfd, oldpath, newdirfd, newpath, flags)` (Linux
    /// 5.15); `flags` may hold `SYMLINK_FOLLOW` and `EMPTY_PATH` (link the file `olddirfd`
    /// itself refers to, with an empty `oldpath`). `res` is 0 or `-errno`.
    ///
    /// # Safety
    ///
    /// `oldpath` and `newpath` must stay valid until this SQE's completion has been taken
    /// from the ring.
    #[doc(alias = "IORING_OP_LINKAT")]
    pub unsafe fn linkat(
        olddirfd: BorrowedFd<'_>,
        oldpath: &CStr,
        newdirfd: BorrowedFd<'_>,
        newpath: &CStr,
        flags: AtFlags,
    ) -> Self {
        // The kernel reads the new directory's descriptor from `len` (an int).
        let new_dfd = u32::from_ne_bytes(newdirfd.as_raw_fd().to_ne_bytes());
        let mut sqe = Self::prep(
            op::IORING_OP_LINKAT,
            olddirfd.as_raw_fd(),
            0,
            oldpath.as_ptr().addr() as u64,
            new_dfd,
            newpath.as_ptr().addr() as u64,
        );
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_UNLINKAT`: `unlinkat(dirfd, path, flags)` (Linux 5.11); `AtFlags::REMOVEDIR`
    /// removes an empty directory (`rmdir`). `res` is 0 or `-errno`.
    ///
    /// # Safety
    ///
    /// `path` must stay valid until this SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_UNLINKAT")]
    pub unsafe fn unlinkat(dirfd: BorrowedFd<'_>, path: &CStr, flags: AtFlags) -> Self {
        let mut sqe = Self::prep(
            op::IORING_OP_UNLINKAT,
            dirfd.as_raw_fd(),
            0,
            path.as_ptr().addr() as u64,
            0,
            0,
        );
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_RENAMEAT`: `renameat2(olddirfd, oldpath, newdirfd, newpath, flags)` (Linux
    /// 5.11); `flags` may hold `NOREPLACE`, `EXCHANGE` or `WHITEOUT`. `res` is 0 or `-errno`.
    ///
    /// # Safety
    ///
    /// `oldpath` and `newpath` must stay valid until this SQE's completion has been taken
    /// from the ring.
    #[doc(alias = "IORING_OP_RENAMEAT")]
    pub unsafe fn renameat(
        olddirfd: BorrowedFd<'_>,
        oldpath: &CStr,
        newdirfd: BorrowedFd<'_>,
        newpath: &CStr,
        flags: RenameFlags,
    ) -> Self {
        // As for linkat: the new directory's descriptor travels in `len`.
        let new_dfd = u32::from_ne_bytes(newdirfd.as_raw_fd().to_ne_bytes());
        let mut sqe = Self::prep(
            op::IORING_OP_RENAMEAT,
            olddirfd.as_raw_fd(),
            0,
            oldpath.as_ptr().addr() as u64,
            new_dfd,
            newpath.as_ptr().addr() as u64,
        );
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_FTRUNCATE`: `ftruncate(fd, len)` (Linux 6.9); the file must be open for
    /// writing. `res` is 0 or `-errno` (`-EINVAL` from older kernels, which lack the opcode).
    #[doc(alias = "IORING_OP_FTRUNCATE")]
    pub fn ftruncate<'fd>(target: impl Into<Target<'fd>>, len: u64) -> Self {
        Self::on(op::IORING_OP_FTRUNCATE, target.into(), 0, 0, len)
    }

    /// `IORING_OP_GETXATTR`: `getxattr(path, name, value)` (Linux 5.19), following a
    /// trailing symlink (so `/proc/self/fd/N` reaches the file descriptor `N` refers to).
    /// `res` is the value's length; an empty `value` asks for the length only.
    ///
    /// # Safety
    ///
    /// `path`, `name` and `value` must stay valid, and `value` must not be read or written
    /// by anything else, until this SQE's completion has been taken from the ring.
    #[doc(alias = "IORING_OP_GETXATTR")]
    pub unsafe fn getxattr(path: &CStr, name: &CStr, value: &mut [u8]) -> Self {
        let mut sqe = Self::prep(
            op::IORING_OP_GETXATTR,
            0,
            0,
            name.as_ptr().addr() as u64,
            len32(value.len()),
            addr64(value),
        );
        // addr3: the path.
        sqe.cmd[0] = path.as_ptr().addr() as u64;
        sqe
    }

    /// `IORING_OP_SETXATTR`: `setxattr(path, name, value, flags)` (Linux 5.19), following a
    /// trailing symlink; `flags` may hold `CREATE` or `REPLACE`. `res` is 0 or `-errno`.
    ///
    /// # Safety
    ///
    /// `path`, `name` and `value` must stay valid and unmodified until this SQE's completion
    /// has been taken from the ring.
    #[doc(alias = "IORING_OP_SETXATTR")]
    pub unsafe fn setxattr(path: &CStr, name: &CStr, value: &[u8], flags: XattrFlags) -> Self {
        let mut sqe = Self::prep(
            op::IORING_OP_SETXATTR,
            0,
            0,
            name.as_ptr().addr() as u64,
            len32(value.len()),
            addr64(value),
        );
        sqe.op_flags = flags.bits();
        // addr3: the path.
        sqe.cmd[0] = path.as_ptr().addr() as u64;
        sqe
    }

    /// `IORING_OP_FSYNC` (`IoringFsyncFlags::DATASYNC` for fdatasync).
    #[doc(alias = "IORING_OP_FSYNC")]
    pub fn fsync<'fd>(target: impl Into<Target<'fd>>, flags: IoringFsyncFlags) -> Self {
        let mut sqe = Self::on(op::IORING_OP_FSYNC, target.into(), 0, 0, 0);
        sqe.op_flags = flags.bits();
        sqe
    }

    /// `IORING_OP_FALLOCATE`: `fallocate(fd, mode, offset, len)`.
    #[doc(alias = "IORING_OP_FALLOCATE")]
    pub fn fallocate<'fd>(
        target: impl Into<Target<'fd>>,
        mode: FallocateFlags,
        offset: u64,
        len: u64,
    ) -> Self {
        // The kernel reads the length from `addr` and the mode from `len`.
        Self::on(
            op::IORING_OP_FALLOCATE,
            target.into(),
            len,
            mode.bits(),
            offset,
        )
    }

    /// `IORING_OP_TIMEOUT`: completes with `-ETIME` after `after`, or with 0 once `count`
    /// other completions have been posted (`count = 0`: time only). `flags` may select
    /// `ABS`, `BOOTTIME`/`REALTIME`, `ETIME_SUCCESS`.
    ///
    /// Safe: the ring copies the time into memory it owns (one slot per SQ entry), and the
    /// kernel has read it once it has consumed the SQE (`IORING_FEAT_SUBMIT_STABLE`, required
    /// at setup; `io_timeout_prep` copies it), before that slot can be reused.
    #[doc(alias = "IORING_OP_TIMEOUT")]
    pub fn timeout(after: Duration, count: u32, flags: IoringTimeoutFlags) -> Self {
        let mut sqe = Self::prep(op::IORING_OP_TIMEOUT, -1, 0, 0, 1, u64::from(count));
        sqe.op_flags = flags.bits();
        sqe.extra = timespec(after);
        sqe
    }

    /// `IORING_OP_LINK_TIMEOUT`: push right after an SQE flagged `IO_LINK`; cancels it
    /// (`-ECANCELED`) if it has not completed after `after` (this SQE then completes with
    /// `-ETIME`, or `-EALREADY` if the cancel raced with completion). Safe as
    /// [`Sqe::timeout`] is.
    #[doc(alias = "IORING_OP_LINK_TIMEOUT")]
    pub fn link_timeout(after: Duration, flags: IoringTimeoutFlags) -> Self {
        let mut sqe = Self::prep(op::IORING_OP_LINK_TIMEOUT, -1, 0, 0, 1, 0);
        sqe.op_flags = flags.bits();
        sqe.extra = timespec(after);
        sqe
    }

    /// `IORING_OP_ASYNC_CANCEL` of the request whose `user_data` is `target`. `res`: 0 if
    /// found and cancelled, `-ENOENT` if not found, `-EALREADY` if it was already running.
    #[doc(alias = "IORING_OP_ASYNC_CANCEL")]
    pub fn async_cancel(target: u64, flags: IoringAsyncCancelFlags) -> Self {
        let mut sqe = Self::prep(op::IORING_OP_ASYNC_CANCEL, -1, 0, target, 0, 0);
        sqe.op_flags = flags.bits();
        sqe
    }
}

/// `Duration` as a `__kernel_timespec`, saturating past `i64::MAX` seconds.
fn timespec(d: Duration) -> Extra {
    Extra::Timespec {
        sec: d.as_secs().min(i64::MAX as u64),
        nsec: u64::from(d.subsec_nanos()),
    }
}

/// Copies command bytes into the words of the command area (native endian, so memory order).
fn copy_cmd(dst: &mut [u64; 10], src: &[u8]) {
    for (w, chunk) in dst.iter_mut().zip(src.chunks_exact(8)) {
        if let Ok(bytes) = <[u8; 8]>::try_from(chunk) {
            *w = u64::from_ne_bytes(bytes);
        }
    }
}

/// Why an SQE was not queued.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// No free SQ slot (or not enough for the whole group): [`Ring::submit`] first.
    Full,
    /// The SQE uses the 80-byte command area but the ring has 64-byte SQEs.
    Sqe128Required,
}

impl core::fmt::Display for PushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PushError::Full => "submission queue full; submit first",
            PushError::Sqe128Required => "128-byte SQE on a ring without IORING_SETUP_SQE128",
        })
    }
}

impl core::error::Error for PushError {}

/// The submission queue's shared memory: views into the ring (or, in tests, into plain heap
/// memory). Built by `RingMem::sq` with checked bounds.
pub(crate) struct SqRing<'a> {
    /// `io_rings.sq.head`: the kernel's consumer index (it writes, we read).
    pub(crate) head: &'a AtomicU32,
    /// `io_rings.sq.tail`: our producer index (we write, it reads).
    pub(crate) tail: &'a AtomicU32,
    /// `io_rings.sq_flags`: `IORING_SQ_NEED_WAKEUP`, `IORING_SQ_CQ_OVERFLOW`,
    /// `IORING_SQ_TASKRUN` (the kernel sets them with `atomic_or/andnot`).
    pub(crate) flags: &'a AtomicU32,
    /// `io_rings.sq_dropped`: SQEs the kernel skipped as invalid.
    pub(crate) dropped: &'a AtomicU32,
    /// The SQE array, `sqe_words` words per entry.
    pub(crate) sqes: &'a [AtomicU64],
    /// Ours: two words (`tv_sec`, `tv_nsec`) per slot for timeout SQEs.
    pub(crate) timespecs: &'a [AtomicU64],
    /// `io_rings.sq_ring_mask` = entries - 1.
    pub(crate) mask: u32,
    /// 8 (64-byte SQEs) or 16 (`IORING_SETUP_SQE128`).
    pub(crate) sqe_words: usize,
}

/// Our side of the submission queue: a local tail published once per batch.
#[derive(Debug, Default)]
pub(crate) struct SqState {
    /// Our copy of `io_rings.sq.tail`: SQEs written so far, published by `publish`.
    tail: u32,
    /// The last `io_rings.sq.head` we loaded.
    head: u32,
}

impl SqState {
    /// Free slots, reloading the kernel's head only when our cached copy says full.
    pub(crate) fn space(&mut self, ring: &SqRing<'_>) -> u32 {
        let entries = ring.mask.wrapping_add(1);
        if self.tail.wrapping_sub(self.head) >= entries {
            // io_rings.sq.head: Acquire, pairs with the kernel's smp_store_release in
            // io_commit_sqring() (io_uring/io_uring.c): it has finished reading those SQEs.
            self.head = ring.head.load(Ordering::Acquire);
        }
        entries.saturating_sub(self.tail.wrapping_sub(self.head))
    }

    /// Writes `sqe` into the next slot; not visible to the kernel until `publish`.
    pub(crate) fn push(&mut self, ring: &SqRing<'_>, sqe: &Sqe) -> Result<(), PushError> {
        if sqe.extra == Extra::Sqe128 && ring.sqe_words < 16 {
            return Err(PushError::Sqe128Required);
        }
        if self.space(ring) == 0 {
            return Err(PushError::Full);
        }
        self.write(ring, sqe);
        Ok(())
    }

    /// Writes all of `sqes` or none (a linked chain must reach the kernel in one submit).
    pub(crate) fn push_all(&mut self, ring: &SqRing<'_>, sqes: &[Sqe]) -> Result<(), PushError> {
        if ring.sqe_words < 16 && sqes.iter().any(|s| s.extra == Extra::Sqe128) {
            return Err(PushError::Sqe128Required);
        }
        if usize::try_from(self.space(ring)).is_ok_and(|n| n < sqes.len()) {
            return Err(PushError::Full);
        }
        for sqe in sqes {
            self.write(ring, sqe);
        }
        Ok(())
    }

    /// Copies `sqe` into slot `tail & mask` and advances the local tail. The caller checked
    /// that the slot is free.
    fn write(&mut self, ring: &SqRing<'_>, sqe: &Sqe) {
        let slot = (self.tail & ring.mask) as usize;
        let mut words = sqe.encode();
        if let Extra::Timespec { sec, nsec } = sqe.extra {
            if let Some([s, n]) = ring.timespecs.get(slot * 2..slot * 2 + 2) {
                // Ordered before the kernel's read by the release store of sq.tail.
                s.store(sec, Ordering::Relaxed);
                n.store(nsec, Ordering::Relaxed);
                // sqe->addr = &timespec[slot].
                words[2] = core::ptr::from_ref(s).addr() as u64;
            }
        }
        let w = ring.sqe_words;
        if let Some(dst) = ring.sqes.get(slot * w..slot * w + w) {
            // Plain stores: the kernel reads the SQE only after its acquire load of sq.tail,
            // which our release store in `publish` orders after these.
            for (d, v) in dst.iter().zip(words) {
                d.store(v, Ordering::Relaxed);
            }
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the local tail; returns how many SQEs the kernel has not consumed yet.
    pub(crate) fn publish(&mut self, ring: &SqRing<'_>) -> u32 {
        // io_rings.sq.tail: Release, pairs with smp_load_acquire(&rings->sq.tail) in
        // io_sqring_entries(): the SQE writes above become visible before the new tail.
        ring.tail.store(self.tail, Ordering::Release);
        // io_rings.sq.head: Acquire, pairs with smp_store_release in io_commit_sqring().
        self.head = ring.head.load(Ordering::Acquire);
        self.tail
            .wrapping_sub(self.head)
            .min(ring.mask.wrapping_add(1))
    }
}

impl Ring {
    /// Queues one SQE (not yet visible to the kernel: [`Ring::submit`] publishes the batch).
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when no slot is free; [`PushError::Sqe128Required`] for an
    /// 80-byte `uring_cmd` on a ring without `SQE128`.
    pub fn push(&mut self, sqe: &Sqe) -> Result<(), PushError> {
        self.sq.push(&self.mem.sq(), sqe)
    }

    /// Queues all of `sqes` or none: for linked chains (`IO_LINK` + `link_timeout`), which
    /// must reach the kernel in the same submit.
    ///
    /// # Errors
    ///
    /// As [`Ring::push`], when any of them would fail (then none is queued).
    pub fn push_all(&mut self, sqes: &[Sqe]) -> Result<(), PushError> {
        self.sq.push_all(&self.mem.sq(), sqes)
    }

    /// Free SQ slots.
    pub fn sq_space_left(&mut self) -> u32 {
        self.sq.space(&self.mem.sq())
    }

    /// `io_rings.sq_dropped`: SQEs the kernel skipped as invalid (an SQ array index out of
    /// range; cannot happen with this crate's identity array).
    pub fn sq_dropped(&self) -> u32 {
        // io_rings.sq_dropped: a statistic, Relaxed.
        self.mem.sq().dropped.load(Ordering::Relaxed)
    }

    /// The kernel's `io_rings.sq_flags` (`IORING_SQ_CQ_OVERFLOW`, `IORING_SQ_TASKRUN`, ...).
    pub(crate) fn sq_flags(&self) -> u32 {
        // io_rings.sq_flags: Acquire, pairs with the kernel's atomic_or (followed by its
        // barriers) when it sets IORING_SQ_CQ_OVERFLOW / IORING_SQ_TASKRUN.
        self.mem.sq().flags.load(Ordering::Acquire)
    }

    /// Submits everything pushed since the last submit with one `io_uring_enter`, without
    /// waiting; returns how many SQEs the kernel consumed.
    ///
    /// Enters with `IORING_ENTER_GETEVENTS` (and `min_complete = 0`) when the kernel asks for
    /// it: `IORING_SQ_CQ_OVERFLOW` (completions wait in the kernel's overflow list; this
    /// moves them into the ring) or `IORING_SQ_TASKRUN` (deferred task work to run). Makes no
    /// syscall when there is nothing to do.
    ///
    /// # Errors
    ///
    /// The SQEs stay queued unless consumed:
    /// - `EINTR` is retried here (nothing waits, so the retry cannot block);
    /// - `EAGAIN`: the kernel could not allocate a request; reap completions and retry;
    /// - `EBUSY`: older kernels refuse to submit while completions overflow; reap and retry;
    /// - `EEXIST`: a `SINGLE_ISSUER`/`DEFER_TASKRUN` ring used from another thread.
    pub fn submit(&mut self) -> Result<u32, Errno> {
        self.enter(0, false)
    }

    /// Submits what was pushed and waits until at least `want` completions are in the ring,
    /// in one `io_uring_enter(to_submit, want, GETEVENTS)`; returns how many SQEs were
    /// consumed. With `DEFER_TASKRUN` this is the call in which completions are produced.
    ///
    /// # Errors
    ///
    /// As for [`Ring::submit`], except that `EINTR` (a signal arrived while waiting and
    /// nothing was submitted) is returned so the caller can look at its signal state;
    /// `EBADR` means the kernel dropped completions (see [`Ring::cq_overflow`]); it is
    /// reported once. If SQEs were submitted the kernel reports their count even when the
    /// wait was cut short, so fewer than `want` completions may be ready.
    pub fn submit_and_wait(&mut self, want: u32) -> Result<u32, Errno> {
        self.enter(want, true)
    }

    fn enter(&mut self, want: u32, block: bool) -> Result<u32, Errno> {
        // Hand consumed CQ slots back first: the kernel counts `tail - head` both to find
        // room and to decide whether `want` completions are already there.
        self.cq.publish(&self.mem.cq());
        loop {
            let to_submit = self.sq.publish(&self.mem.sq());
            let sq_flags = self.sq_flags();
            let mut flags = IoringEnterFlags::empty();
            if sq_flags & IORING_SQ_CQ_OVERFLOW != 0 {
                self.overflow_flushes = self.overflow_flushes.wrapping_add(1);
                flags |= IoringEnterFlags::GETEVENTS;
            }
            if block || sq_flags & IORING_SQ_TASKRUN != 0 {
                flags |= IoringEnterFlags::GETEVENTS;
            }
            if to_submit == 0 && !flags.contains(IoringEnterFlags::GETEVENTS) {
                return Ok(0);
            }
            let min_complete = if block { want } else { 0 };
            // SAFETY:
            // - `flags` holds at most GETEVENTS, never EXT_ARG or EXT_ARG_REG (rustix's
            //   precondition), so no argument pointer is passed.
            // - Every SQE in the ring refers only to memory the ring owns (its timespec slots,
            //   its registered buffers) or memory whose validity until completion the caller
            //   promised when calling the `unsafe fn` builder that made it.
            // - Descriptors in SQEs are looked up by the kernel now; a stale one yields EBADF,
            //   never a memory access.
            let r = unsafe { io_uring_enter(&self.fd, to_submit, min_complete, flags) };
            match r {
                Err(Errno::INTR) if !block => {}
                r => return r,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A heap-backed submission queue of `n` entries: (head, tail, flags, dropped, sqes, ts).
    struct Fake {
        words: [AtomicU32; 4],
        sqes: Vec<AtomicU64>,
        ts: Vec<AtomicU64>,
        n: u32,
        sqe_words: usize,
    }

    impl Fake {
        fn new(n: u32, sqe_words: usize, start: u32) -> Self {
            Fake {
                words: [
                    AtomicU32::new(start),
                    AtomicU32::new(start),
                    AtomicU32::new(0),
                    AtomicU32::new(0),
                ],
                sqes: (0..n as usize * sqe_words)
                    .map(|_| AtomicU64::new(!0))
                    .collect(),
                ts: (0..n as usize * 2).map(|_| AtomicU64::new(0)).collect(),
                n,
                sqe_words,
            }
        }
        fn ring(&self) -> SqRing<'_> {
            SqRing {
                head: &self.words[0],
                tail: &self.words[1],
                flags: &self.words[2],
                dropped: &self.words[3],
                sqes: &self.sqes,
                timespecs: &self.ts,
                mask: self.n - 1,
                sqe_words: self.sqe_words,
            }
        }
        /// The kernel consumes `k` entries: returns their words, advances head.
        fn consume(&self, k: u32) -> Vec<Vec<u64>> {
            let head = self.words[0].load(Ordering::Relaxed);
            let tail = self.words[1].load(Ordering::Acquire);
            assert!(tail.wrapping_sub(head) >= k);
            let out = (0..k)
                .map(|i| {
                    let slot = (head.wrapping_add(i) & (self.n - 1)) as usize;
                    self.sqes[slot * self.sqe_words..(slot + 1) * self.sqe_words]
                        .iter()
                        .map(|w| w.load(Ordering::Relaxed))
                        .collect()
                })
                .collect();
            self.words[0].store(head.wrapping_add(k), Ordering::Release);
            out
        }
    }

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn push_until_full_then_wraps_past_u32_max() {
        // Start 3 short of u32::MAX so head and tail wrap during the test.
        let f = Fake::new(4, 8, u32::MAX - 2);
        let mut st = SqState {
            tail: u32::MAX - 2,
            head: u32::MAX - 2,
        };
        let ring = f.ring();
        for i in 0..4 {
            st.push(&ring, &Sqe::nop().user_data(i)).unwrap();
        }
        assert_eq!(st.push(&ring, &Sqe::nop()), Err(PushError::Full));
        assert_eq!(st.space(&ring), 0);
        assert_eq!(st.publish(&ring), 4);
        let got = f.consume(3);
        let ud: Vec<u64> = got.iter().map(|w| w[4]).collect();
        assert_eq!(ud, [0, 1, 2]);
        assert_eq!(st.space(&ring), 3);
        for i in 4..7 {
            st.push(&ring, &Sqe::nop().user_data(i)).unwrap();
        }
        assert_eq!(st.push(&ring, &Sqe::nop()), Err(PushError::Full));
        assert_eq!(st.publish(&ring), 4);
        let ud: Vec<u64> = f.consume(4).iter().map(|w| w[4]).collect();
        assert_eq!(ud, [3, 4, 5, 6]);
        // Tail went from u32::MAX - 2 past zero.
        assert_eq!(f.words[1].load(Ordering::Relaxed), 4);
        assert_eq!(st.publish(&ring), 0);
    }

    #[test]
    fn push_all_is_all_or_nothing() {
        let f = Fake::new(4, 8, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        st.push(&ring, &Sqe::nop()).unwrap();
        st.push(&ring, &Sqe::nop()).unwrap();
        let three = [Sqe::nop(), Sqe::nop(), Sqe::nop()];
        assert_eq!(st.push_all(&ring, &three), Err(PushError::Full));
        assert_eq!(st.space(&ring), 2);
        st.push_all(&ring, &three[..2]).unwrap();
        assert_eq!(st.space(&ring), 0);
    }

    #[test]
    fn tail_is_published_only_by_publish() {
        let f = Fake::new(8, 8, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        st.push(&ring, &Sqe::nop()).unwrap();
        st.push(&ring, &Sqe::nop()).unwrap();
        assert_eq!(f.words[1].load(Ordering::Relaxed), 0);
        assert_eq!(st.publish(&ring), 2);
        assert_eq!(f.words[1].load(Ordering::Relaxed), 2);
    }

    #[test]
    fn encode_matches_kernel_offsets() {
        use core::mem::offset_of;
        use linux_raw_sys::io_uring::io_uring_sqe as S;
        let f = Fake::new(2, 8, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        let sqe = Sqe::fallocate(Target::Fixed(7), FallocateFlags::KEEP_SIZE, 0x1122, 0x3344)
            .user_data(0xdead_beef_0102_0304)
            .flags(IoringSqeFlags::IO_LINK);
        st.push(&ring, &sqe).unwrap();
        st.publish(&ring);
        let b = bytes(&f.consume(1)[0]);
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(b[offset_of!(S, opcode)], op::IORING_OP_FALLOCATE as u8);
        assert_eq!(
            b[offset_of!(S, flags)],
            (IoringSqeFlags::IO_LINK | IoringSqeFlags::FIXED_FILE).bits()
        );
        assert_eq!(u32_at(offset_of!(S, fd)), 7);
        assert_eq!(u64_at(8), 0x1122); // off
        assert_eq!(u64_at(16), 0x3344); // addr = len for fallocate
        assert_eq!(u32_at(offset_of!(S, len)), FallocateFlags::KEEP_SIZE.bits());
        assert_eq!(u64_at(offset_of!(S, user_data)), 0xdead_beef_0102_0304);
        assert!(b[40..64].iter().all(|&x| x == 0));
    }

    #[test]
    fn sqe128_second_half_zeroed_and_cmd80_placed() {
        // Slots start as all-ones garbage: every word must be overwritten.
        let f = Fake::new(2, 16, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        st.push(&ring, &Sqe::nop().user_data(1)).unwrap();
        let mut cmd = [0u8; 80];
        for (i, b) in cmd.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        // SAFETY: the SQE never reaches a kernel; addr 0 designates nothing.
        let big = unsafe { Sqe::uring_cmd80(Target::Fixed(0), 0xabcd, 0, 0, &cmd) };
        st.push(&ring, &big).unwrap();
        st.publish(&ring);
        let got = f.consume(2);
        let nop = bytes(&got[0]);
        assert_eq!(nop.len(), 128);
        assert!(nop[40..128].iter().all(|&x| x == 0));
        let b = bytes(&got[1]);
        assert_eq!(b[0], op::IORING_OP_URING_CMD as u8);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 0xabcd);
        assert_eq!(&b[48..128], &cmd[..]);
    }

    #[test]
    fn cmd80_refused_on_64_byte_ring() {
        let f = Fake::new(2, 8, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        // SAFETY: never submitted.
        let big = unsafe { Sqe::uring_cmd80(Target::Fixed(0), 1, 0, 0, &[0; 80]) };
        assert_eq!(st.push(&ring, &big), Err(PushError::Sqe128Required));
        assert_eq!(st.push_all(&ring, &[big]), Err(PushError::Sqe128Required));
        // SAFETY: never submitted.
        let small = unsafe { Sqe::uring_cmd(Target::Fixed(0), 1, 0, 0, &[9; 16]) };
        st.push(&ring, &small).unwrap();
        st.publish(&ring);
        let b = bytes(&f.consume(1)[0]);
        assert_eq!(&b[48..64], &[9; 16]);
    }

    #[test]
    fn timeout_points_at_its_slot_timespec() {
        let f = Fake::new(4, 8, 0);
        let ring = f.ring();
        let mut st = SqState::default();
        st.push(&ring, &Sqe::nop()).unwrap();
        let t = Sqe::timeout(Duration::new(3, 500), 2, IoringTimeoutFlags::empty());
        st.push(&ring, &t).unwrap();
        st.publish(&ring);
        let got = f.consume(2);
        let addr = got[1][2];
        assert_eq!(addr, core::ptr::from_ref(&f.ts[2]).addr() as u64);
        assert_eq!(f.ts[2].load(Ordering::Relaxed), 3);
        assert_eq!(f.ts[3].load(Ordering::Relaxed), 500);
        assert_eq!(got[1][1], 2); // off = count
    }
}
