//! Raw `/dev/fuse` and mount system calls.
//!
//! This module holds the root crate's system-level `unsafe` (STYLE.md rule 5): the
//! `FUSE_DEV_IOC_CLONE` ioctl, the notification WRITE (whose buffer the notifier owns), and
//! the signal mask of the signal watcher. Everything else goes through rustix's safe
//! wrappers. Raw fd numbers never leave this module: callers get [`OwnedFd`]/[`BorrowedFd`],
//! and the one place a number must be spelled out (the `fd=N` mount option) is built here.
//!
//! Nothing here allocates; every buffer is on the stack with a fixed size.
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::fmt::Write as _;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, StatxFlags};
use rustix::io::{self, Errno};
use rustix::ioctl::{Opcode, Setter};
use rustix::mount::{MountFlags, UnmountFlags};

/// The FUSE character device (misc 10:229).
pub(crate) const FUSE_DEVICE: &CStr = c"/dev/fuse";

/// The device number of `/dev/fuse` (`MISC_MAJOR`, `FUSE_MINOR` in include/linux/miscdevice.h).
const FUSE_DEVICE_NUMBER: (u32, u32) = (10, 229);

/// Where the `fusectl` filesystem is mounted (fuse-protocol.md §1.4).
const FUSECTL_DIR: &CStr = c"/sys/fs/fuse/connections";

/// `PATH_MAX` from `<linux/limits.h>`, including the terminating NUL.
pub(crate) const PATH_MAX: usize = linux_raw_sys::general::PATH_MAX as usize;

/// `FUSE_DEV_IOC_CLONE` as rustix's opcode type (`c_uint` on the raw Linux backend).
#[allow(
    clippy::unnecessary_cast,
    reason = "`Opcode` is `c_ulong` on some libc backends"
)]
const FUSE_DEV_IOC_CLONE: Opcode = ringfuse_abi::kernel::FUSE_DEV_IOC_CLONE as Opcode;

/// A small stack buffer for formatted C strings (`/proc/self/fd/N`, the mount data, ...).
struct CBuf<const N: usize>(heapless::String<N>);

impl<const N: usize> CBuf<N> {
    const fn new() -> Self {
        Self(heapless::String::new())
    }

    /// NUL-terminates the text and views it as a C string. ENAMETOOLONG if it does not fit,
    /// EINVAL if the text holds a NUL byte.
    fn c_str(&mut self) -> io::Result<&CStr> {
        self.0.push('\0').map_err(|_| Errno::NAMETOOLONG)?;
        CStr::from_bytes_with_nul(self.0.as_bytes()).map_err(|_| Errno::INVAL)
    }
}

impl<const N: usize> core::fmt::Write for CBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.push_str(s).map_err(|_| core::fmt::Error)
    }
}

/// Opens `/dev/fuse` read-write and close-on-exec, optionally non-blocking.
///
/// The fd is kept above 2 so that it can never be mistaken for stdin, stdout or stderr (a
/// process started with those closed would otherwise get 0, 1 or 2 here; fuser asserts the
/// same, fuse-protocol.md §1.1).
pub(crate) fn open_device(nonblocking: bool) -> io::Result<OwnedFd> {
    let mut flags = OFlags::RDWR | OFlags::CLOEXEC;
    if nonblocking {
        flags |= OFlags::NONBLOCK;
    }
    let fd = rustix::fs::open(FUSE_DEVICE, flags, Mode::empty())?;
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // The duplicate shares the open file description, so O_NONBLOCK carries over; the low
    // fd is closed when `fd` drops.
    io::fcntl_dupfd_cloexec(&fd, 3)
}

/// `FUSE_DEV_IOC_CLONE`: attaches `new`, a freshly opened `/dev/fuse` fd (see
/// [`open_device`]), to the connection of `session` (fuse-protocol.md §1.5). All fds of a
/// connection share its input queue; a reply must go to the fd its request was read from.
///
/// Errors: EINVAL if `new` is attached already or `session` is not a FUSE device fd.
pub(crate) fn clone_device(session: BorrowedFd<'_>, new: BorrowedFd<'_>) -> io::Result<()> {
    // The proof below needs `new` to be the FUSE device: check instead of trusting callers.
    let st = rustix::fs::statx(new, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    let is_char = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::CharacterDevice;
    if !is_char || (st.stx_rdev_major, st.stx_rdev_minor) != FUSE_DEVICE_NUMBER {
        return Err(Errno::NOTTY);
    }
    let old = u32::try_from(session.as_raw_fd()).map_err(|_| Errno::BADF)?;
    // SAFETY:
    // - `Setter::new` requires `OPCODE` to be a valid opcode: `FUSE_DEV_IOC_CLONE` is
    //   `_IOR(229, 0, uint32_t)` from include/uapi/linux/fuse.h, encoded by `ringfuse_abi` with
    //   the generic `_IOC` layout of x86, arm and riscv (checked against rustix's encoder in
    //   this module's tests).
    // - and `Input` (`u32`) to be the type the kernel expects: `fuse_dev_ioctl_clone` (fs/fuse/
    //   dev.c) does `get_user(oldfd, (__u32 __user *)arg)`, a plain `u32` that it only reads,
    //   which is why the read-only `Setter` pattern (not `Getter`) is the right one.
    let clone = unsafe { Setter::<FUSE_DEV_IOC_CLONE, u32>::new(old) };
    // SAFETY:
    // - `ioctl` requires the `Ioctl` value to describe the call correctly: established above.
    // - The kernel reads 4 bytes from the `Setter`'s own storage, which lives across the call,
    //   and writes no user memory (`fuse_dev_ioctl_clone` only calls `get_user`). `new` is
    //   the character device 10:229 (checked just above), so the call reaches the FUSE
    //   driver's `fuse_dev_ioctl` and no other driver's ioctl table.
    // - Side effects: `new` joins the connection. No Rust-visible memory changes and no fd
    //   changes owner (`session` and `new` stay open and owned by the caller).
    unsafe { rustix::ioctl::ioctl(new, clone) }
}

/// `FUSE_DEV_IOC_BACKING_OPEN`'s argument and result: registers an open file as a kernel
/// passthrough backing file and returns its positive backing id.
struct BackingOpen(ringfuse_abi::kernel::fuse_backing_map);

// SAFETY:
// - `opcode` is `FUSE_DEV_IOC_BACKING_OPEN` = `_IOW(229, 1, struct fuse_backing_map)`
//   (include/uapi/linux/fuse.h), and `as_ptr` points at a `fuse_backing_map` owned by
//   `self`, which lives across the call: exactly what `fuse_dev_ioctl_backing_open`
//   (fs/fuse/dev.c) reads with `copy_from_user`;
// - the kernel only reads that struct (`IS_MUTATING = false`);
// - the output is the ioctl's return value, the backing id (> 0 on success).
unsafe impl rustix::ioctl::Ioctl for BackingOpen {
    type Output = i32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        ringfuse_abi::kernel::FUSE_DEV_IOC_BACKING_OPEN
    }

    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        core::ptr::from_mut(&mut self.0).cast()
    }

    unsafe fn output_from_ptr(
        out: rustix::ioctl::IoctlOutput,
        _: *mut core::ffi::c_void,
    ) -> io::Result<i32> {
        Ok(out)
    }
}

/// Registers `file` (an open regular file) as a passthrough backing file of the connection
/// of `fuse` (`FUSE_DEV_IOC_BACKING_OPEN`, fuse-protocol.md §6.4); returns its backing id.
/// Needs CAP_SYS_ADMIN and `FUSE_PASSTHROUGH` negotiated (EPERM otherwise).
pub(crate) fn backing_open(fuse: BorrowedFd<'_>, file: BorrowedFd<'_>) -> io::Result<i32> {
    fuse_device_only(fuse)?;
    let map = ringfuse_abi::kernel::fuse_backing_map {
        fd: file.as_raw_fd(),
        flags: 0,
        padding: 0,
    };
    // SAFETY:
    // - the `Ioctl` implementation describes this call correctly (see `BackingOpen`), and
    //   `fuse` is the FUSE character device (checked above), so the call reaches
    //   `fuse_dev_ioctl`;
    // - the kernel takes its own reference to `file` (`fget`), so no fd changes owner and
    //   no Rust-visible memory changes.
    unsafe { rustix::ioctl::ioctl(fuse, BackingOpen(map)) }
}

/// Releases a backing id (`FUSE_DEV_IOC_BACKING_CLOSE`): ENOENT for an unknown id. Files
/// opened with it keep their backing file.
pub(crate) fn backing_close(fuse: BorrowedFd<'_>, id: i32) -> io::Result<()> {
    fuse_device_only(fuse)?;
    let id = u32::try_from(id).map_err(|_| Errno::INVAL)?;
    // SAFETY:
    // - `Setter::new` requires `OPCODE` to be valid and `Input` the kernel's type:
    //   `FUSE_DEV_IOC_BACKING_CLOSE` is `_IOW(229, 2, uint32_t)` and
    //   `fuse_dev_ioctl_backing_close` reads one `u32` with `get_user`.
    let close =
        unsafe { Setter::<{ ringfuse_abi::kernel::FUSE_DEV_IOC_BACKING_CLOSE }, u32>::new(id) };
    // SAFETY:
    // - the `Setter` describes the call (above) and lives across it; `fuse` is the FUSE
    //   device (checked above); the kernel writes no user memory and no fd changes owner.
    unsafe { rustix::ioctl::ioctl(fuse, close) }
}

/// The proofs of the device ioctls need `fd` to be `/dev/fuse` (char 10:229).
fn fuse_device_only(fd: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    let is_char = FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::CharacterDevice;
    if !is_char || (st.stx_rdev_major, st.stx_rdev_minor) != FUSE_DEVICE_NUMBER {
        return Err(Errno::NOTTY);
    }
    Ok(())
}

/// What `statx` says about a path without ever sending a FUSE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MountId {
    /// `stx_mnt_id` without `STATX_MNT_ID_UNIQUE`: the id `/proc/self/mountinfo` shows.
    pub(crate) mnt_id: u64,
    /// `STATX_MNT_ID_UNIQUE` (Linux 6.8+): never reused, so it tells "our mount" apart from a
    /// later mount that got the same recycled `mnt_id` and device number.
    pub(crate) unique: Option<u64>,
    /// `stx_dev_major` of the superblock.
    pub(crate) dev_major: u32,
    /// `stx_dev_minor` of the superblock.
    pub(crate) dev_minor: u32,
}

/// Identifies the mount on top of `path`.
///
/// Safe to call on a FUSE mount whose server never answered `FUSE_INIT`: the path walk only
/// crosses into the FUSE root (no lookup, no `d_revalidate`), and `fuse_getattr` keeps only
/// the basic-stats and btime bits of the request mask, so asking for `STATX_MNT_ID_UNIQUE`
/// alone (or nothing) plus `AT_STATX_DONT_SYNC` makes it fill the result from the cached
/// inode instead of sending `FUSE_GETATTR` (fs/fuse/dir.c `fuse_update_get_attr`). The mount
/// id and the device number are filled in by the VFS whatever the mask. The mount tests
/// exercise this on mounts that never get an INIT reply.
pub(crate) fn mount_id(path: &CStr) -> io::Result<MountId> {
    let flags = AtFlags::STATX_DONT_SYNC | AtFlags::NO_AUTOMOUNT;
    let unique_flag = StatxFlags::from_bits_retain(linux_raw_sys::general::STATX_MNT_ID_UNIQUE);
    let first = rustix::fs::statx(CWD, path, flags, unique_flag)?;
    if first.stx_mask & unique_flag.bits() == 0 {
        // Before Linux 6.8: `stx_mnt_id` already is the old id.
        return Ok(MountId {
            mnt_id: first.stx_mnt_id,
            unique: None,
            dev_major: first.stx_dev_major,
            dev_minor: first.stx_dev_minor,
        });
    }
    let old = rustix::fs::statx(CWD, path, flags, StatxFlags::empty())?;
    Ok(MountId {
        mnt_id: old.stx_mnt_id,
        unique: Some(first.stx_mnt_id),
        dev_major: old.stx_dev_major,
        dev_minor: old.stx_dev_minor,
    })
}

/// Opens a prospective mount point, checks that it is a directory and writes its canonical
/// absolute path (NUL-terminated) into `out`, returning the length including the NUL.
///
/// Errors: the `statx`/`open` errno (ENOENT: missing, ENOTDIR: a parent or the path itself
/// is not a directory, ENOTCONN: a dead FUSE mount is in the way, ...). If `/proc` is not
/// mounted the path is used as given.
pub(crate) fn resolve_dir(path: &CStr, out: &mut [u8]) -> io::Result<usize> {
    // O_PATH: no open of the directory itself, only the path walk.
    let dir = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let st = rustix::fs::statx(&dir, c"", AtFlags::EMPTY_PATH, StatxFlags::TYPE)?;
    if FileType::from_raw_mode(u32::from(st.stx_mode)) != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    let mut link = CBuf::<32>::new();
    write!(link, "/proc/self/fd/{}", dir.as_raw_fd()).map_err(|_| Errno::NAMETOOLONG)?;
    // Leave room for the NUL; a result that fills the room may have been cut short.
    let room = out.len().saturating_sub(1);
    let buf = out.get_mut(..room).ok_or(Errno::NAMETOOLONG)?;
    match rustix::fs::readlinkat_raw(CWD, link.c_str()?, &mut *buf) {
        Ok(n) if n >= room => Err(Errno::NAMETOOLONG),
        Ok(n) if buf.first() == Some(&b'/') => {
            let nul = out.get_mut(n).ok_or(Errno::NAMETOOLONG)?;
            *nul = 0;
            Ok(n + 1)
        }
        // No /proc (or an odd answer): use the path as given; a relative one stays
        // relative to the current directory.
        _ => {
            let given = path.to_bytes_with_nul();
            let dst = out.get_mut(..given.len()).ok_or(Errno::NAMETOOLONG)?;
            dst.copy_from_slice(given);
            Ok(given.len())
        }
    }
}

/// What [`mount_fuse`] passes to `mount(2)`.
pub(crate) struct FuseMount<'a> {
    /// The `/dev/fuse` fd that will serve the mount.
    pub(crate) device: BorrowedFd<'a>,
    /// `source`: fsname, else subtype, else `/dev/fuse` (as libfuse does).
    pub(crate) source: &'a CStr,
    /// `target`: the mount point.
    pub(crate) target: &'a CStr,
    /// `filesystemtype`: `fuse` or `fuse.<subtype>`.
    pub(crate) fstype: &'a CStr,
    /// `MS_*` flags.
    pub(crate) flags: MountFlags,
    /// The file type bits (`S_IFMT`) of the mount point, for `rootmode=`.
    pub(crate) root_type: u32,
    /// Kernel options appended after the four mandatory ones, each starting with a comma
    /// (`,default_permissions,allow_other,max_read=N`).
    pub(crate) extra: &'a str,
}

/// `mount(2)` of a FUSE filesystem with the four mandatory options
/// `fd=N,rootmode=<octal>,user_id=U,group_id=G` (fs/fuse/inode.c `fuse_fill_super`) followed
/// by `extra`. `user_id`/`group_id` are the real ids of this process, as libfuse passes them.
pub(crate) fn mount_fuse(m: &FuseMount<'_>) -> io::Result<()> {
    let mut data = CBuf::<256>::new();
    write!(
        data,
        "fd={},rootmode={:o},user_id={},group_id={}{}",
        m.device.as_fd().as_raw_fd(),
        m.root_type,
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
        m.extra,
    )
    .map_err(|_| Errno::NAMETOOLONG)?;
    rustix::mount::mount(m.source, m.target, m.fstype, m.flags, data.c_str()?)
}

/// `umount2(target, 0)` or, with `lazy`, `umount2(target, MNT_DETACH)`.
pub(crate) fn unmount(target: &CStr, lazy: bool) -> io::Result<()> {
    let flags = if lazy {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    retry_on_eintr(|| rustix::mount::unmount(target, flags))
}

/// Writes `1` to `/sys/fs/fuse/connections/<conn>/abort`, mounting `fusectl` there first if
/// it is not mounted yet (fuse-protocol.md §1.4). That `fusectl` mount is left in place: it
/// is system-wide, like the one systemd makes at boot.
pub(crate) fn abort_connection(conn: u32) -> io::Result<()> {
    let mut path = CBuf::<64>::new();
    write!(path, "/sys/fs/fuse/connections/{conn}/abort").map_err(|_| Errno::NAMETOOLONG)?;
    let path = path.c_str()?;
    match write_one(path) {
        Err(Errno::NOENT) => {
            match rustix::mount::mount(
                c"fusectl",
                FUSECTL_DIR,
                c"fusectl",
                MountFlags::empty(),
                None,
            ) {
                // EBUSY: fusectl is mounted already, so the connection really is gone.
                Ok(()) | Err(Errno::BUSY) => write_one(path),
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// Writes the single byte `1` to a sysfs-like control file.
fn write_one(path: &CStr) -> io::Result<()> {
    let file = rustix::fs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    let n = retry_on_eintr(|| io::write(&file, b"1"))?;
    if n == 1 { Ok(()) } else { Err(Errno::IO) }
}

/// Whether `/proc/self/mountinfo` lists a mount with id `mnt_id` on device `major:minor`.
///
/// Streams the file through a 4 KiB stack buffer and keeps only the first 64 bytes of each
/// line (the id, parent id and `major:minor` fields fit in 44), so lines of any length work.
pub(crate) fn mountinfo_contains(mnt_id: u64, major: u32, minor: u32) -> io::Result<bool> {
    let file = rustix::fs::open(
        c"/proc/self/mountinfo",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut chunk = [0_u8; 4096];
    let mut head = heapless::Vec::<u8, 64>::new();
    loop {
        let n = retry_on_eintr(|| io::read(&file, &mut chunk))?;
        let Some(read) = chunk.get(..n) else {
            return Err(Errno::IO);
        };
        if read.is_empty() {
            return Ok(!head.is_empty() && line_is(&head, mnt_id, major, minor));
        }
        for &byte in read {
            if byte == b'\n' {
                if line_is(&head, mnt_id, major, minor) {
                    return Ok(true);
                }
                head.clear();
            } else {
                // A full `head` just drops the rest of a long line: we only need its start.
                let _ = head.push(byte);
            }
        }
    }
}

/// Whether a mountinfo line (or its first bytes) starts `<mnt_id> <parent> <major>:<minor> `.
fn line_is(line: &[u8], mnt_id: u64, major: u32, minor: u32) -> bool {
    let mut fields = line.split(|&b| b == b' ');
    let id = fields.next().and_then(parse_dec);
    let _parent = fields.next();
    let dev = fields.next().and_then(|d| {
        let mut parts = d.splitn(2, |&b| b == b':');
        Some((parse_dec(parts.next()?)?, parse_dec(parts.next()?)?))
    });
    id == Some(mnt_id) && dev == Some((u64::from(major), u64::from(minor)))
}

/// Parses a non-empty run of ASCII digits; `None` on anything else or overflow.
pub(crate) fn parse_dec(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_u64, |acc, &d| {
        let digit = char::from(d).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Repeats `f` while it fails with EINTR.
fn retry_on_eintr<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// An `IORING_OP_WRITE` of one notification message to `/dev/fuse`, flagged `IOSQE_ASYNC`
/// so that io_uring runs it on a worker thread: a notification may wait for a kernel lock
/// held by a request the loop has yet to answer (fuse-protocol.md §4.2), so it must never
/// run inline in the loop's `io_uring_enter`.
///
/// The caller must keep `msg` valid and unmodified until the completion with `user_data`
/// is reaped; the notifier does so by marking the buffer busy until then.
pub(crate) fn notify_write_sqe(
    fuse: BorrowedFd<'_>,
    msg: &[u8],
    user_data: u64,
) -> ringfuse_ring::Sqe {
    // SAFETY:
    // - `msg` is a buffer of the notifier's pool, which lives as long as the session's loop
    //   (the loop waits for every notification write before returning, `Notifier::busy`);
    // - the notifier marks the buffer busy until this SQE's completion (`user_data`) is
    //   reaped, so nothing writes it meanwhile.
    let sqe = unsafe { ringfuse_ring::Sqe::write(fuse, msg, 0) };
    sqe.user_data(user_data)
        .flags(ringfuse_ring::IoringSqeFlags::ASYNC)
}

/// An eventfd the session's loops read to learn that they should stop. A semaphore: each
/// loop's READ takes one unit, and [`signal_stop`] adds enough for every loop.
#[cfg(feature = "std")]
pub(crate) fn stop_event() -> io::Result<OwnedFd> {
    rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::SEMAPHORE,
    )
}

#[cfg_attr(not(feature = "std"), allow(dead_code))] // StopHandle and per-CPU loops are std-only
/// Asks every loop reading the stop eventfd to stop (idempotent: extra units are never
/// read, as each loop reads it once).
pub(crate) fn signal_stop(fd: &OwnedFd) {
    let _ = rustix::io::write(fd, &4096u64.to_ne_bytes());
}

/// Reads one request from the FUSE device into `buf`, waiting at most `wait` for one (the
/// device may be non-blocking).
pub(crate) fn read_request(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    wait: core::time::Duration,
) -> io::Result<usize> {
    let deadline = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let end = deadline
        .tv_sec
        .saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            // Interrupted, or aborted while being copied: read again.
            Err(Errno::INTR | Errno::NOENT) => {}
            Err(Errno::AGAIN) => {
                let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                if now.tv_sec >= end {
                    return Err(Errno::TIMEDOUT);
                }
                let mut fds = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes one whole reply to the FUSE device.
pub(crate) fn write_reply(fd: BorrowedFd<'_>, reply: &[u8]) -> io::Result<()> {
    let n = retry_on_eintr(|| rustix::io::write(fd, reply))?;
    if n == reply.len() {
        Ok(())
    } else {
        Err(Errno::IO)
    }
}

/// An eventfd written once INIT is answered (per-CPU native loops wait on it).
#[cfg(feature = "std")]
pub(crate) fn init_event() -> io::Result<OwnedFd> {
    rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)
}

/// Writes an INIT event.
pub(crate) fn signal_event(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// The CPUs this process may run on, in order.
#[cfg(feature = "std")]
pub(crate) fn allowed_cpus() -> io::Result<std::vec::Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

/// Pins the calling thread to `cpu`.
#[cfg(feature = "std")]
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
}

/// Watches SIGINT and SIGTERM while a session runs: they are blocked in the thread that
/// runs the loop (and so in threads it starts), and a small thread waits for them with
/// `sigwait(3)` and then writes the stop eventfd. Dropping the watch wakes and joins that
/// thread and restores the mask.
///
/// rustix exposes no stable API for signal masks, so this uses the `libc` crate, which the
/// `std` feature enables (std links libc anyway; builds without `std` have no signal
/// handling and no libc).
#[cfg(feature = "std")]
pub(crate) struct SignalWatch {
    old_mask: libc::sigset_t,
    thread: Option<std::thread::JoinHandle<()>>,
    watcher: std::sync::Arc<std::sync::OnceLock<usize>>,
    done: std::sync::Arc<core::sync::atomic::AtomicBool>,
}

#[cfg(feature = "std")]
fn watched_signals() -> libc::sigset_t {
    // SAFETY: `sigset_t` is a plain array of integers, for which all-zero is valid.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: `sigemptyset` needs a valid pointer to a `sigset_t`: a local.
    unsafe { libc::sigemptyset(&raw mut set) };
    // SAFETY: as above, for `sigaddset`; SIGINT is a valid signal number.
    unsafe { libc::sigaddset(&raw mut set, libc::SIGINT) };
    // SAFETY: as above; SIGTERM is a valid signal number.
    unsafe { libc::sigaddset(&raw mut set, libc::SIGTERM) };
    set
}

#[cfg(feature = "std")]
impl SignalWatch {
    /// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts from now
    /// on) and calls `on_signal` on a watcher thread for each one.
    pub(crate) fn start(on_signal: impl Fn() + Send + 'static) -> io::Result<Self> {
        use core::sync::atomic::{AtomicBool, Ordering};
        let set = watched_signals();
        // SAFETY: `sigset_t` is a plain array of integers, for which all-zero is valid.
        let mut old_mask: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY:
        // - `pthread_sigmask` needs valid pointers for the new and old sets: a local
        //   initialized by `watched_signals`, and a local it fills in;
        // - blocking SIGINT/SIGTERM in this thread only delays their delivery to the
        //   watcher's `sigwait`; the old mask is restored on drop.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old_mask) };
        if rc != 0 {
            return Err(Errno::from_raw_os_error(rc));
        }
        let watcher = std::sync::Arc::new(std::sync::OnceLock::new());
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let (watcher2, done2) = (
            std::sync::Arc::clone(&watcher),
            std::sync::Arc::clone(&done),
        );
        let thread = std::thread::Builder::new()
            .name("ringfuse-signals".into())
            .spawn(move || {
                // SAFETY: `pthread_self` has no preconditions.
                // `pthread_t` is an integer on glibc and a pointer on musl: kept as `usize`, it is
                // `Send` on both.
                let _ = watcher2.set(unsafe { libc::pthread_self() } as usize);
                let set = watched_signals();
                loop {
                    let mut sig = 0;
                    // SAFETY:
                    // - `sigwait` needs a valid set and a valid out pointer: both locals;
                    // - the set is blocked in this thread (inherited from the spawning
                    //   thread's mask, set above), so the signals wait for us here.
                    let rc = unsafe { libc::sigwait(&raw const set, &raw mut sig) };
                    if done2.load(Ordering::Acquire) {
                        return;
                    }
                    if rc == 0 {
                        on_signal();
                    }
                }
            });
        let Ok(thread) = thread else {
            restore_mask(&old_mask);
            return Err(Errno::AGAIN);
        };
        Ok(Self {
            old_mask,
            thread: Some(thread),
            watcher,
            done,
        })
    }
}

#[cfg(feature = "std")]
fn restore_mask(old: &libc::sigset_t) {
    // SAFETY:
    // - `pthread_sigmask` needs a valid pointer to the set to install (a reference) and
    //   accepts a null old-set pointer.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old, core::ptr::null_mut());
    }
}

#[cfg(feature = "std")]
impl Drop for SignalWatch {
    fn drop(&mut self) {
        use core::sync::atomic::Ordering;
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // The watcher publishes its id before it first waits; wake it with a signal it
            // waits for, after `done` is set, so it returns instead of stopping a session.
            let id = loop {
                if let Some(id) = self.watcher.get() {
                    break *id;
                }
                std::thread::yield_now();
            };
            // SAFETY:
            // - `pthread_kill` needs a live thread id: the watcher has not returned (it
            //   returns only after this signal, when it sees `done`), and it was not
            //   joined yet;
            // - SIGTERM is blocked in the watcher, which consumes it with `sigwait`.
            unsafe {
                libc::pthread_kill(id as libc::pthread_t, libc::SIGTERM);
            }
            let _ = t.join();
        }
        restore_mask(&self.old_mask);
    }
}

/// Whether the kernel's FUSE-over-io_uring switch is on: `None` if the parameter does not
/// exist (a kernel without it).
pub(crate) fn uring_enabled() -> Option<bool> {
    let fd = rustix::fs::open(
        c"/sys/module/fuse/parameters/enable_uring",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 8];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    Some(matches!(buf.get(..n)?.first(), Some(b'Y' | b'y' | b'1')))
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. "0-1"): the
/// kernel makes one FUSE-over-io_uring queue for each, and all must get an entry.
pub(crate) fn possible_cpus() -> Option<usize> {
    let fd = rustix::fs::open(
        c"/sys/devices/system/cpu/possible",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 256];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    parse_cpu_list(buf.get(..n)?)
}

/// The highest CPU number + 1 in a kernel CPU list ("0-3,8-11" → 12).
pub(crate) fn parse_cpu_list(list: &[u8]) -> Option<usize> {
    let mut max = None;
    for part in list.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let upper = part.rsplit(|&b| b == b'-').next()?;
        let n = usize::try_from(parse_dec(upper)?).ok()?;
        max = Some(max.map_or(n, |m: usize| m.max(n)));
    }
    max.map(|m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list(b"0-1\n"), Some(2));
        assert_eq!(parse_cpu_list(b"0"), Some(1));
        assert_eq!(parse_cpu_list(b"0-3,8-11\n"), Some(12));
        assert_eq!(parse_cpu_list(b""), None);
        assert_eq!(parse_cpu_list(b"x"), None);
    }

    #[test]
    fn mountinfo_line_prefix() {
        let line = b"44 29 0:52 / /tmp/.tmpAbC rw,nosuid,nodev,relatime - fuse.t src rw,user_id=0";
        assert!(line_is(line, 44, 0, 52));
        assert!(!line_is(line, 45, 0, 52));
        assert!(!line_is(line, 44, 0, 53));
        assert!(!line_is(b"44 29", 44, 0, 52));
        assert!(!line_is(b"", 44, 0, 52));
        assert!(!line_is(b"x 29 0:52 /", 44, 0, 52));
        // A cut-off line keeps its first fields.
        assert!(line_is(&line[..20], 44, 0, 52));
    }

    #[test]
    fn decimal() {
        assert_eq!(parse_dec(b"0"), Some(0));
        assert_eq!(parse_dec(b"4294967295"), Some(4_294_967_295));
        assert_eq!(parse_dec(b"18446744073709551616"), None);
        assert_eq!(parse_dec(b""), None);
        assert_eq!(parse_dec(b"1a"), None);
    }

    #[test]
    fn clone_opcode_matches_rustix() {
        assert_eq!(
            FUSE_DEV_IOC_CLONE,
            rustix::ioctl::opcode::read::<u32>(229, 0),
            "_IOR(229, 0, uint32_t)"
        );
    }

    #[test]
    fn own_mount_is_listed() {
        // procfs reports its own device number, so its mountinfo line matches `statx`.
        let id = mount_id(c"/proc").unwrap();
        assert!(mountinfo_contains(id.mnt_id, id.dev_major, id.dev_minor).unwrap());
        assert!(!mountinfo_contains(u64::MAX, id.dev_major, id.dev_minor).unwrap());
    }
}
