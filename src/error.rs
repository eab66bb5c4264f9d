//! The errors a session reports to its user, each naming the cause and the fix.

use core::fmt;

use crate::abi::Errno;
use crate::mount::MountError;
use crate::ring::SetupError;

/// Why a session could not start or had to stop.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Mounting or unmounting failed.
    Mount(MountError),
    /// The io_uring could not be set up.
    Ring(SetupError),
    /// A system call of the loop failed.
    Io {
        /// What the loop was doing.
        what: &'static str,
        /// The error.
        errno: Errno,
    },
    /// The kernel's INIT could not be answered: its protocol is too old (EPROTO), or the
    /// filesystem's [`init`](crate::Filesystem::init) refused with this error.
    Init(Errno),
    /// The configuration is not usable.
    Config(&'static str),
    /// [`Session::run`](crate::Session::run) was called again after the session ended.
    Ended,
    /// [`TransportMode::Native`](crate::TransportMode::Native) was asked for, but the
    /// kernel's FUSE-over-io_uring switch is off.
    NativeOff,
    /// [`TransportMode::Native`](crate::TransportMode::Native) was asked for, but this
    /// kernel has no FUSE-over-io_uring (Linux 6.14+ with `CONFIG_FUSE_IO_URING`).
    NativeUnsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Mount(e) => write!(f, "{e}"),
            Error::Ring(e) => write!(
                f,
                "cannot set up io_uring: {e} (is io_uring allowed? check \
                 /proc/sys/kernel/io_uring_disabled, which must be 0, and seccomp filters)"
            ),
            Error::Io { what, errno } => write!(f, "{what} failed: {errno}"),
            Error::Init(e) if *e == Errno::EPROTO => f.write_str(
                "the kernel speaks a FUSE protocol major version below 7, which ringfuse \
                 does not support (every Linux since 2.6.14 speaks 7)",
            ),
            Error::Init(e) => write!(f, "the filesystem refused the kernel's INIT: {e}"),
            Error::Config(what) => write!(f, "invalid configuration: {what}"),
            Error::Ended => f.write_str(
                "this session has already run and ended; mount a new one with Session::new",
            ),
            Error::NativeOff => f.write_str(
                "the kernel's FUSE-over-io_uring is switched off; turn it on (as root) with \
                 `echo Y > /sys/module/fuse/parameters/enable_uring`, or use \
                 TransportMode::Auto to fall back to the /dev/fuse transport",
            ),
            Error::NativeUnsupported => f.write_str(
                "this kernel has no FUSE-over-io_uring (/sys/module/fuse/parameters/enable_uring \
                 is missing: it needs Linux 6.14+ built with CONFIG_FUSE_IO_URING); use \
                 TransportMode::Auto or Classic",
            ),
        }
    }
}

/// `{:?}` reads like `{}` (the message naming cause and fix), so that
/// `fn main() -> Result<(), ringfuse::Error>` prints it on failure; `{:#?}` shows the
/// variant and its fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        match self {
            Error::Mount(e) => f.debug_tuple("Mount").field(e).finish(),
            Error::Ring(e) => f.debug_tuple("Ring").field(e).finish(),
            Error::Io { what, errno } => f
                .debug_struct("Io")
                .field("what", what)
                .field("errno", errno)
                .finish(),
            Error::Init(e) => f.debug_tuple("Init").field(e).finish(),
            Error::Config(what) => f.debug_tuple("Config").field(what).finish(),
            Error::Ended => f.write_str("Ended"),
            Error::NativeOff => f.write_str("NativeOff"),
            Error::NativeUnsupported => f.write_str("NativeUnsupported"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Mount(e) => Some(e),
            Error::Ring(e) => Some(e),
            Error::Io { errno, .. } | Error::Init(errno) => Some(errno),
            Error::Config(_) | Error::Ended | Error::NativeOff | Error::NativeUnsupported => None,
        }
    }
}

impl From<MountError> for Error {
    fn from(e: MountError) -> Self {
        Error::Mount(e)
    }
}

impl From<SetupError> for Error {
    fn from(e: SetupError) -> Self {
        Error::Ring(e)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn debug_reads_like_display_and_alternate_shows_the_variant() {
        let errors = [
            Error::Mount(MountError::MountPointNotFound),
            Error::Config("slots must be between 1 and 1024"),
            Error::Io {
                what: "io_uring_enter",
                errno: Errno::EINVAL,
            },
            Error::NativeOff,
        ];
        for e in errors {
            // What `fn main() -> Result<(), Error>` prints after "Error: ".
            assert_eq!(format!("{e:?}"), e.to_string());
        }
        assert_eq!(
            format!("{:#?}", Error::Mount(MountError::MountPointNotFound)),
            "Mount(\n    MountPointNotFound,\n)"
        );
        assert_eq!(format!("{:#?}", Error::Ended), "Ended");
    }
}
