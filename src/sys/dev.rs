//! `/dev/fuse`: opening it, cloning a connection's fd, the passthrough backing ioctls, the
//! blocking INIT read and write, and the notification WRITE.
#![allow(unsafe_code)]

use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};
use rustix::io::{self, Errno};
use rustix::ioctl::{Opcode, Setter};

use super::{FUSE_DEVICE, retry_on_eintr};

/// The device number of `/dev/fuse` (`MISC_MAJOR`, `FUSE_MINOR` in include/linux/miscdevice.h).
const FUSE_DEVICE_NUMBER: (u32, u32) = (10, 229);

#[cfg(feature = "std")]
/// Sets `O_NONBLOCK` on `fd` (a `/dev/fuse` fd that fusermount3 opened).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK)
}

/// `FUSE_DEV_IOC_CLONE` as rustix's opcode type (`c_uint` on the raw Linux backend).
#[allow(
    clippy::unnecessary_cast,
    reason = "`Opcode` is `c_ulong` on some libc backends"
)]
const FUSE_DEV_IOC_CLONE: Opcode = ringfuse_abi::kernel::FUSE_DEV_IOC_CLONE as Opcode;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_opcode_matches_rustix() {
        assert_eq!(
            FUSE_DEV_IOC_CLONE,
            rustix::ioctl::opcode::read::<u32>(229, 0),
            "_IOR(229, 0, uint32_t)"
        );
    }
}
