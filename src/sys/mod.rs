//! The system calls outside io_uring, and the root crate's system-level `unsafe` (STYLE.md
//! rule 5), one file per subject:
//! - [`dev`]: `/dev/fuse` itself: opening it, `FUSE_DEV_IOC_CLONE`, the passthrough backing
//!   ioctls, the blocking INIT read and write, the notification WRITE (`unsafe`: the ioctls
//!   and the WRITE, whose buffer the notifier owns);
//! - [`mounts`]: `mount(2)` and `umount2(2)`, what `statx` and `/proc/self/mountinfo` say
//!   about a mount, aborting a connection through fusectl;
//! - [`events`]: the eventfds that stop loops and pass INIT and INTERRUPTs between them,
//!   and the SIGINT/SIGTERM watcher (`unsafe`: its signal mask);
//! - [`host`]: what this machine offers: its CPUs, and the FUSE-over-io_uring switch;
//! - `spawn` (`std` only): fusermount3's socket and the fd it sends, fds and sessions across
//!   `exec`, the auto-unmount watcher (`unsafe`: `pre_exec` closures and `fork`).
//!
//! Everything else goes through rustix's safe wrappers. Raw fd numbers never leave this
//! module: callers get [`OwnedFd`]/[`BorrowedFd`], and the one place a number must be
//! spelled out (the `fd=N` mount option) is built here. Nothing here allocates; every
//! buffer is on the stack with a fixed size.

mod dev;
mod events;
mod host;
mod mounts;
#[cfg(feature = "std")]
mod spawn;

pub(crate) use dev::*;
pub(crate) use events::*;
pub(crate) use host::*;
pub(crate) use mounts::*;
#[cfg(feature = "std")]
pub(crate) use spawn::*;

use core::ffi::CStr;

use rustix::io::{self, Errno};

/// The FUSE character device (misc 10:229).
pub(crate) const FUSE_DEVICE: &CStr = c"/dev/fuse";

/// `PATH_MAX` from `<linux/limits.h>`, including the terminating NUL.
pub(crate) const PATH_MAX: usize = linux_raw_sys::general::PATH_MAX as usize;

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

/// Converts rustix's errno (what syscalls return) into the protocol's.
pub(crate) fn errno(e: Errno) -> crate::abi::Errno {
    crate::abi::Errno::new_or_eio(e.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        assert_eq!(parse_dec(b"0"), Some(0));
        assert_eq!(parse_dec(b"4294967295"), Some(4_294_967_295));
        assert_eq!(parse_dec(b"18446744073709551616"), None);
        assert_eq!(parse_dec(b""), None);
        assert_eq!(parse_dec(b"1a"), None);
    }
}
