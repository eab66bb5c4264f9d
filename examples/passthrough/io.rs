//! The only module with `unsafe`: the memory the kernel reads and writes for the
//! filesystem's own ring operations, and the SQEs that point at it.
//!
//! Each operation slot owns a [`Mem`]: a data buffer (`max_write` bytes: WRITE data is copied
//! there, xattr values), two name buffers and a `struct statx`. Every
//! `Mem` is a separate heap allocation made when the filesystem starts (or, if more requests
//! are ever in flight than slots were made for, when a slot is added: see
//! [`Io::add_slot`]) and never moved or freed while an operation on it is in flight:
//!
//! - `in_flight[i]` is set when an SQE pointing into slot `i` is queued and cleared only by
//!   [`Io::completed`], which the filesystem calls from `Filesystem::completion` with that
//!   operation's tag, after the kernel posted its completion;
//! - while it is set every accessor refuses slot `i` (no Rust reference to that memory
//!   exists), and no second operation is queued on it;
//! - the session's loop does not return while operations the filesystem submitted are in
//!   flight (`Cx::submit`: "the memory an operation points at must stay valid until its
//!   completion"; the loop's drain waits for them), so the filesystem — and this — outlive
//!   them; if it ever returned early (an error), [`Drop`] leaks the slots still in flight
//!   instead of freeing memory the kernel may still write.
//!
//! A backing READ lands in none of these: it targets the reply buffer of the deferred READ
//! request itself ([`Cx::deferred_buffer`]), so data goes from the backing file to the
//! kernel with no copy. That buffer is the session's, reserved until the request's token is
//! resumed; [`Io::read_reply`] takes the token for as long as the READ is in flight
//! (`replies[i]`), and [`Io::take_reply`] gives it back only once `in_flight[i]` is clear,
//! so the request cannot be answered — and its buffer handed back to the loop — while the
//! kernel may still write it.
#![allow(unsafe_code)]

use core::ffi::CStr;
use std::os::fd::{AsRawFd as _, FromRawFd as _};

use ringfuse::reply::kind;
use ringfuse::ring::{IoringFsyncFlags, IoringSqeFlags, Sqe};
use ringfuse::{Cx, Deferred, Errno};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags, Statx, StatxFlags, XattrFlags};
use rustix::io_uring::open_how;

/// Longest name a FUSE request carries (`FUSE_NAME_MAX`), plus its NUL.
pub(crate) const NAME_CAP: usize = 1024 + 1;
/// Longest path (a symlink target, `PATH_MAX` with its NUL).
pub(crate) const PATH_CAP: usize = 4096;

/// What the kernel reads and writes for one operation.
struct Mem {
    /// WRITE and SETXATTR data are copied here; GETXATTR values land here.
    data: Box<[u8]>,
    /// The entry name (NUL-terminated): LOOKUP, CREATE, MKDIR, the link name of SYMLINK,
    /// the new name of LINK, UNLINK, RMDIR, the old name of RENAME, an xattr name.
    name: [u8; NAME_CAP],
    /// A second path: a symlink target, the new name of RENAME, `N` or
    /// `/proc/self/fd/N` to reach a descriptor.
    aux: [u8; PATH_CAP],
    /// STATX lands here.
    statx: Statx,
    /// OPENAT2's flags, mode and resolve flags.
    how: open_how,
}

/// The slots' memory and which of them the kernel may be using.
pub(crate) struct Io {
    mem: Vec<Box<Mem>>,
    in_flight: Vec<bool>,
    /// The operation in flight (or just completed) on the slot is an OPENAT/OPENAT2, whose
    /// result is a descriptor [`Io::take_fd`] takes ownership of, once.
    opens: Vec<bool>,
    /// The deferred READ whose reply buffer the READ in flight on the slot fills.
    replies: Vec<Option<Deferred<kind::Data>>>,
    data_len: usize,
    /// `/proc/self/fd`, opened once: opening `N` in it reopens descriptor `N` (an `O_PATH`
    /// node) with real access flags.
    procfd: OwnedFd,
}

/// A statx buffer with every field zero.
fn zero_statx() -> Statx {
    // rustix's `Statx` is `#[non_exhaustive]`: start from the kernel's answer for `/`, then
    // clear what matters (the kernel overwrites it all anyway).
    let mut s = rustix::fs::statx(
        rustix::fs::CWD,
        "/",
        AtFlags::empty(),
        StatxFlags::BASIC_STATS,
    )
    .expect("statx of / answers");
    s.stx_mask = 0;
    s
}

/// `sqe`, made to go to an io-wq worker at once (`IOSQE_ASYNC`) if `punt`: for files of FUSE
/// filesystems, whose `direct_io` READ and WRITE claim non-blocking support
/// (`FMODE_NOWAIT`) yet wait for the FUSE server inside the submitting `io_uring_enter` —
/// the loop itself would block — and whose CLOSE sends a synchronous FLUSH.
fn punted(sqe: Sqe, punt: bool) -> Sqe {
    if punt {
        sqe.flags(IoringSqeFlags::ASYNC)
    } else {
        sqe
    }
}

/// Writes `bytes` and a NUL into `dst`; ENAMETOOLONG if they do not fit, EINVAL for an
/// interior NUL.
fn put(dst: &mut [u8], bytes: &[u8]) -> Result<(), Errno> {
    if bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    let room = dst.get_mut(..=bytes.len()).ok_or(Errno::ENAMETOOLONG)?;
    let (body, nul) = room.split_at_mut(bytes.len());
    body.copy_from_slice(bytes);
    nul.fill(0);
    Ok(())
}

/// `prefix` and the decimal number of `fd` as a C string in `buf` (`/proc/self/fd/N`).
pub(crate) fn fd_path<'b>(
    buf: &'b mut [u8],
    prefix: &[u8],
    fd: BorrowedFd<'_>,
) -> Result<&'b CStr, Errno> {
    put_fd(buf, prefix, fd)?;
    cstr(buf)
}

/// The NUL-terminated string at the start of `buf` (which `put` wrote).
fn cstr(buf: &[u8]) -> Result<&CStr, Errno> {
    CStr::from_bytes_until_nul(buf).map_err(|_| Errno::EINVAL)
}

/// Writes the decimal digits of `n` (a descriptor) after `prefix`, NUL-terminated.
fn put_fd(dst: &mut [u8], prefix: &[u8], fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut digits = [0u8; 12];
    let mut n = u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut text = [0u8; 40];
    let len = prefix.len() + digits.len() - k;
    let out = text.get_mut(..len).ok_or(Errno::ENAMETOOLONG)?;
    let (p, d) = out.split_at_mut(prefix.len());
    p.copy_from_slice(prefix);
    d.copy_from_slice(&digits[k..]);
    put(dst, out)
}

impl Io {
    /// `slots` slots with `data_len`-byte data buffers.
    pub(crate) fn new(slots: usize, data_len: usize) -> std::io::Result<Self> {
        let procfd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut io = Self {
            mem: Vec::with_capacity(slots),
            in_flight: Vec::with_capacity(slots),
            opens: Vec::with_capacity(slots),
            replies: Vec::with_capacity(slots),
            data_len,
            procfd,
        };
        for _ in 0..slots {
            io.add_slot();
        }
        Ok(io)
    }

    /// Adds one slot; returns its index.
    pub(crate) fn add_slot(&mut self) -> usize {
        self.mem.push(Box::new(Mem {
            data: vec![0u8; self.data_len].into_boxed_slice(),
            name: [0; NAME_CAP],
            aux: [0; PATH_CAP],
            statx: zero_statx(),
            how: open_how::zeroed(),
        }));
        self.in_flight.push(false);
        self.opens.push(false);
        self.replies.push(None);
        self.mem.len() - 1
    }

    /// Slot `i`'s memory, unless an operation on it is in flight.
    fn idle(&mut self, i: usize) -> Result<&mut Mem, Errno> {
        match self.in_flight.get(i) {
            Some(false) => self.mem.get_mut(i).map(|m| &mut **m).ok_or(Errno::EIO),
            _ => Err(Errno::EBUSY),
        }
    }

    /// Slot `i`'s operation completed with `res` (its completion was taken from the
    /// ring): the slot is free again, and if the operation was an open that succeeded, its
    /// new descriptor is returned — the only owner it will have.
    pub(crate) fn completed(&mut self, i: usize, res: i32) -> Option<OwnedFd> {
        if let Some(f) = self.in_flight.get_mut(i) {
            *f = false;
        }
        let open = self.opens.get_mut(i).map(core::mem::take)?;
        if !open || res < 0 {
            return None;
        }
        // SAFETY: `res` is the result of the OPENAT/OPENAT2 this slot queued (`opens[i]`
        // is set only when one is queued, and cleared here, so once per completion): a
        // descriptor the kernel just created in this process's table for this request.
        // Nothing else knows its number, so this is its only owner.
        Some(unsafe { OwnedFd::from_raw_fd(res) })
    }

    /// Sets slot `i`'s entry name.
    pub(crate) fn set_name(&mut self, i: usize, name: &[u8]) -> Result<(), Errno> {
        put(&mut self.idle(i)?.name, name)
    }

    /// Sets slot `i`'s second path (symlink target, new name of a rename).
    pub(crate) fn set_aux(&mut self, i: usize, path: &[u8]) -> Result<(), Errno> {
        put(&mut self.idle(i)?.aux, path)
    }

    /// The deferred READ that slot `i`'s READ filled, once that READ completed
    /// ([`completed`](Self::completed)); `None` while it is in flight, or if there is none.
    pub(crate) fn take_reply(&mut self, i: usize) -> Option<Deferred<kind::Data>> {
        match self.in_flight.get(i) {
            Some(false) => self.replies.get_mut(i)?.take(),
            _ => None,
        }
    }

    /// The first `len` bytes of slot `i`'s data buffer (what a GETXATTR left).
    pub(crate) fn data(&mut self, i: usize, len: usize) -> Result<&[u8], Errno> {
        let m = self.idle(i)?;
        m.data.get(..len).ok_or(Errno::EIO)
    }

    /// What a STATX on slot `i` left.
    pub(crate) fn statx(&mut self, i: usize) -> Result<&Statx, Errno> {
        Ok(&self.idle(i)?.statx)
    }

    /// Queues `sqe`, built by `build` from slot `i`'s memory, with `tag`; marks the slot in
    /// flight if it was queued.
    fn submit(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        build: impl FnOnce(&mut Mem, BorrowedFd<'_>) -> Result<Sqe, Errno>,
    ) -> Result<(), Errno> {
        self.submit_op(cx, i, tag, false, build)
    }

    /// As [`Io::submit`]; `open` says the operation's result is a new descriptor.
    fn submit_op(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        open: bool,
        build: impl FnOnce(&mut Mem, BorrowedFd<'_>) -> Result<Sqe, Errno>,
    ) -> Result<(), Errno> {
        let procfd = rustix::fd::AsFd::as_fd(&self.procfd);
        let mem = match self.in_flight.get(i) {
            Some(false) => self.mem.get_mut(i).ok_or(Errno::EIO)?,
            _ => return Err(Errno::EBUSY),
        };
        let sqe = build(mem, procfd)?;
        cx.submit(&sqe, tag)?;
        if let Some(f) = self.in_flight.get_mut(i) {
            *f = true;
        }
        if let Some(o) = self.opens.get_mut(i) {
            *o = open;
        }
        Ok(())
    }

    /// `openat2(dirfd, name, flags | O_CLOEXEC, mode)` confined to `dirfd`'s tree:
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (no `..` out of it, no symlink followed,
    /// magic links included; with `O_PATH | O_NOFOLLOW` a trailing symlink is opened
    /// itself). The result is the new descriptor.
    pub(crate) fn open_beneath(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        dirfd: BorrowedFd<'_>,
        flags: OFlags,
        mode: u32,
    ) -> Result<(), Errno> {
        self.submit_op(cx, i, tag, true, |m, _| {
            m.how = open_how::zeroed();
            m.how.flags = u64::from((flags | OFlags::CLOEXEC).bits());
            m.how.mode = u64::from(mode & 0o7777);
            m.how.resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
            let name = cstr(&m.name)?;
            // SAFETY: `name` and `m.how` are inside slot `i`'s `Mem`, a heap allocation that
            // stays put and unaliased until `completed(i)` after this SQE's completion (module
            // docs); `submit` marks the slot in flight once the SQE is queued.
            Ok(unsafe { Sqe::openat2(dirfd, name, &m.how) })
        })
    }

    /// Reopens descriptor `fd` (an `O_PATH` node, or an open file) through
    /// `/proc/self/fd/N` with real access `flags` (`O_CLOEXEC` added). The magic link leads
    /// to the very inode `fd` holds, so this stays inside the tree.
    pub(crate) fn reopen(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        flags: OFlags,
    ) -> Result<(), Errno> {
        self.submit_op(cx, i, tag, true, |m, procfd| {
            put_fd(&mut m.aux, b"", fd)?;
            let num = cstr(&m.aux)?;
            // SAFETY: `num` lies in slot `i`'s `Mem`, valid and unaliased until its
            // completion (module docs).
            Ok(unsafe { Sqe::openat(procfd, num, flags | OFlags::CLOEXEC, Mode::empty()) })
        })
    }

    /// `statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)`: the attributes of the inode
    /// `fd` holds (a symlink itself, for a symlink node), into the slot's statx buffer.
    pub(crate) fn stat(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let flags = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
            // SAFETY: the path is a literal; `m.statx` lies in slot `i`'s `Mem`, valid and
            // not read until `completed(i)` (module docs).
            Ok(unsafe { Sqe::statx(fd, c"", flags, StatxFlags::BASIC_STATS, &mut m.statx) })
        })
    }

    /// READ of up to `len` bytes at `offset` of `fd` straight into the reply buffer of the
    /// deferred READ request `reply` (zero copy), on slot `i` (`punt`: see [`punted`]). The
    /// token stays here until the
    /// READ completed: take it back with [`take_reply`](Self::take_reply), resume it and
    /// answer with `ReplyData::commit`. On failure nothing was queued and the token comes
    /// back with the error (`EINTR`: the request was interrupted meanwhile, its buffer gone).
    ///
    /// Call it from a later call than the one that deferred `reply`: the session hands out
    /// a deferred request's buffer only then.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_reply(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        (len, offset): (usize, u64),
        punt: bool,
        reply: Deferred<kind::Data>,
    ) -> Result<(), (Errno, Deferred<kind::Data>)> {
        let idle = matches!(self.in_flight.get(i), Some(false))
            && self.replies.get(i).is_some_and(Option::is_none);
        if !idle {
            return Err((Errno::EBUSY, reply));
        }
        let Some(buf) = cx.deferred_buffer(&reply) else {
            return Err((Errno::EINTR, reply));
        };
        let len = len.min(buf.len());
        let Some(buf) = buf.get_mut(..len) else {
            return Err((Errno::EIO, reply));
        };
        // SAFETY: `buf` is the reply buffer of the deferred READ `reply`, which the session
        // keeps reserved and untouched until that token is resumed (`Cx::deferred_buffer`),
        // and it outlives this READ: the loop does not return while operations the
        // filesystem submitted are in flight (`Cx::submit`). The token is moved into
        // `replies[i]` below when the SQE is queued, and only `take_reply(i)` hands it out
        // again, which refuses while `in_flight[i]` is set — cleared by `completed(i)` once
        // the kernel posted this READ's completion. So nothing resumes the token (which
        // makes a new reference to the buffer and gives it back to the loop) while the
        // kernel may write it. The `&mut` borrow of `buf` ends here; no reference to it is
        // used until then. If the SQE is not queued, nothing points at the buffer.
        let sqe = punted(unsafe { Sqe::read(fd, buf, offset) }, punt);
        if let Err(e) = cx.submit(&sqe, tag) {
            return Err((e, reply));
        }
        if let Some(f) = self.in_flight.get_mut(i) {
            *f = true;
        }
        if let Some(o) = self.opens.get_mut(i) {
            *o = false;
        }
        if let Some(r) = self.replies.get_mut(i) {
            *r = Some(reply);
        }
        Ok(())
    }

    /// WRITE of `data` (copied into the slot first) at `offset` of `fd` (`punt`: see
    /// [`punted`]). EINVAL if `data` is longer than the slot's buffer (the session never
    /// sends more than `max_write`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        data: &[u8],
        offset: u64,
        punt: bool,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let buf = m.data.get_mut(..data.len()).ok_or(Errno::EINVAL)?;
            buf.copy_from_slice(data);
            // SAFETY: `buf` is slot `i`'s data buffer, left unmodified until `completed(i)`
            // (module docs).
            Ok(punted(unsafe { Sqe::write(fd, buf, offset) }, punt))
        })
    }

    /// `mkdirat(dirfd, name, mode)`.
    pub(crate) fn mkdir(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        dirfd: BorrowedFd<'_>,
        mode: u32,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let name = cstr(&m.name)?;
            // SAFETY: `name` lies in slot `i`'s `Mem`, valid until the completion.
            Ok(unsafe { Sqe::mkdirat(dirfd, name, Mode::from_raw_mode(mode & 0o7777)) })
        })
    }

    /// `symlinkat(aux, dirfd, name)`: a symlink `name` pointing to the slot's aux path.
    pub(crate) fn symlink(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        dirfd: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let (name, target) = (cstr(&m.name)?, cstr(&m.aux)?);
            // SAFETY: both strings lie in slot `i`'s `Mem`, valid until the completion.
            Ok(unsafe { Sqe::symlinkat(target, dirfd, name) })
        })
    }

    /// `linkat(fd, "", dirfd, name, AT_EMPTY_PATH)`: a new name for the inode `fd` holds.
    pub(crate) fn link(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        dirfd: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let name = cstr(&m.name)?;
            // SAFETY: the old path is a literal; `name` lies in slot `i`'s `Mem`, valid
            // until the completion.
            Ok(unsafe { Sqe::linkat(fd, c"", dirfd, name, AtFlags::EMPTY_PATH) })
        })
    }

    /// `unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0)`.
    pub(crate) fn unlink(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        dirfd: BorrowedFd<'_>,
        dir: bool,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let name = cstr(&m.name)?;
            let flags = if dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            // SAFETY: `name` lies in slot `i`'s `Mem`, valid until the completion.
            Ok(unsafe { Sqe::unlinkat(dirfd, name, flags) })
        })
    }

    /// `renameat2(olddir, name, newdir, aux, flags)`.
    pub(crate) fn rename(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        olddir: BorrowedFd<'_>,
        newdir: BorrowedFd<'_>,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            let (old, new) = (cstr(&m.name)?, cstr(&m.aux)?);
            // SAFETY: both names lie in slot `i`'s `Mem`, valid until the completion.
            Ok(unsafe { Sqe::renameat(olddir, old, newdir, new, flags) })
        })
    }

    /// `getxattr("/proc/self/fd/N", name, data[..size])` of the inode `fd` holds.
    pub(crate) fn getxattr(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        size: usize,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            put_fd(&mut m.aux, b"/proc/self/fd/", fd)?;
            let (path, name) = (cstr(&m.aux)?, cstr(&m.name)?);
            let value = m.data.get_mut(..size.min(m.data.len())).ok_or(Errno::EIO)?;
            // SAFETY: the path, the name and `value` lie in slot `i`'s `Mem`; `value` is not
            // read until `completed(i)` (module docs).
            Ok(unsafe { Sqe::getxattr(path, name, value) })
        })
    }

    /// `setxattr("/proc/self/fd/N", name, value, flags)` (`value` copied into the slot).
    pub(crate) fn setxattr(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        tag: u64,
        fd: BorrowedFd<'_>,
        value: &[u8],
        flags: XattrFlags,
    ) -> Result<(), Errno> {
        self.submit(cx, i, tag, |m, _| {
            put_fd(&mut m.aux, b"/proc/self/fd/", fd)?;
            let buf = m.data.get_mut(..value.len()).ok_or(Errno::E2BIG)?;
            buf.copy_from_slice(value);
            let (path, name) = (cstr(&m.aux)?, cstr(&m.name)?);
            // SAFETY: the path, the name and `buf` lie in slot `i`'s `Mem`, unmodified until
            // the completion.
            Ok(unsafe { Sqe::setxattr(path, name, buf, flags) })
        })
    }

    /// The `/proc/self/fd` directory (for the blocking calls that reach a node by its
    /// descriptor number).
    pub(crate) fn procfd(&self) -> BorrowedFd<'_> {
        rustix::fd::AsFd::as_fd(&self.procfd)
    }
}

/// Operations that point the kernel at no memory of ours: safe builders, here only so that
/// descriptor ownership is handled in one place.
impl Io {
    /// Closes `fd` through the ring without waiting for the result (`tag` should be one the
    /// filesystem ignores). If the SQE cannot be queued, closes it at once.
    pub(crate) fn close_detached(cx: &mut Cx<'_>, fd: OwnedFd, tag: u64) {
        let raw = fd.as_raw_fd();
        let sqe = Sqe::close(fd);
        if cx.submit(&sqe, tag).is_err() {
            // SAFETY: `Sqe::close` took ownership of `raw`, and the SQE was not queued
            // (`Cx::submit` queues nothing when it fails), so nothing else owns or will
            // close the descriptor: taking it back closes it exactly once.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }

    /// Closes `fd` through the ring (`punt`: see [`punted`]); its completion comes with
    /// `tag`. On error the descriptor is closed at once and the error returned.
    pub(crate) fn close(cx: &mut Cx<'_>, fd: OwnedFd, tag: u64, punt: bool) -> Result<(), Errno> {
        let raw = fd.as_raw_fd();
        let sqe = punted(Sqe::close(fd), punt);
        cx.submit(&sqe, tag).inspect_err(|_| {
            // SAFETY: as in `close_detached`: the SQE that owned `raw` was not queued.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        })
    }

    /// FSYNC (`datasync`: fdatasync) of `fd`.
    pub(crate) fn fsync(
        cx: &mut Cx<'_>,
        fd: BorrowedFd<'_>,
        datasync: bool,
        tag: u64,
    ) -> Result<(), Errno> {
        let flags = if datasync {
            IoringFsyncFlags::DATASYNC
        } else {
            IoringFsyncFlags::empty()
        };
        cx.submit(&Sqe::fsync(fd, flags), tag)
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if self.in_flight.iter().any(|&f| f) {
            // The loop ended with operations still in flight (it returned an error): the
            // kernel may still write this memory, so it must never be freed. (The reply
            // buffers of READs in flight are the session's: it owns that case.)
            std::mem::forget(std::mem::take(&mut self.mem));
            std::mem::forget(std::mem::take(&mut self.replies));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nul_terminated_and_bounded() {
        let mut buf = [0xffu8; 8];
        put(&mut buf, b"abc").unwrap();
        assert_eq!(cstr(&buf).unwrap(), c"abc");
        assert_eq!(put(&mut buf, b"12345678"), Err(Errno::ENAMETOOLONG));
        put(&mut buf, b"1234567").unwrap();
        assert_eq!(put(&mut buf, b"a\0b"), Err(Errno::EINVAL));
    }

    #[test]
    fn descriptor_paths() {
        let mut buf = [0u8; 40];
        let fd = rustix::fs::CWD;
        // AT_FDCWD is negative: not a descriptor number.
        assert_eq!(put_fd(&mut buf, b"", fd), Err(Errno::EBADF));
        let file = std::fs::File::open("/").unwrap();
        let n = file.as_raw_fd();
        put_fd(&mut buf, b"/proc/self/fd/", rustix::fd::AsFd::as_fd(&file)).unwrap();
        assert_eq!(
            cstr(&buf).unwrap().to_str().unwrap(),
            format!("/proc/self/fd/{n}")
        );
    }
}
