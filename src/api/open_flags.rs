//! [`OpenFlags`]: the `open(2)` flags OPEN, CREATE, OPENDIR and TMPFILE carry;
//! [`RenameFlags`]: the `renameat2(2)` flags of RENAME2.

use core::fmt;

use linux_raw_sys::general as k;

/// The flags the caller passed to `open(2)` (`fuse_open_in::flags`, `fuse_create_in::flags`),
/// as the kernel forwards them: the access mode, and `O_APPEND`, `O_TRUNC`, `O_DIRECT`,
/// `O_SYNC`... (the kernel keeps `O_CREAT`, `O_EXCL` and `O_NOCTTY` to itself, except that
/// CREATE implies the first), plus the kernel's own [`EXEC`](Self::EXEC) mark on an
/// `execve(2)`'s open. Values are this architecture's `O_*`.
///
/// ```
/// use ringfuse::{AccessMode, OpenFlags};
/// let flags = OpenFlags::WRONLY | OpenFlags::APPEND;
/// assert_eq!(flags.access_mode(), AccessMode::WriteOnly);
/// assert!(flags.writes() && !flags.reads());
/// assert!(flags.contains(OpenFlags::APPEND) && !flags.contains(OpenFlags::TRUNC));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct OpenFlags(pub u32);

/// How a file was opened: `flags & O_ACCMODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// `O_RDONLY`.
    ReadOnly,
    /// `O_WRONLY`.
    WriteOnly,
    /// `O_RDWR`.
    ReadWrite,
    /// The fourth value (3): Linux's "no access, ioctl only" mode (needs `CAP_SYS_ADMIN`
    /// only for some devices); a filesystem usually treats it as `ReadWrite` or refuses it.
    Other,
}

macro_rules! open_flags {
    ($($(#[$m:meta])* $name:ident = $value:expr),* $(,)?) => {
        impl OpenFlags {
            $($(#[$m])* pub const $name: Self = Self($value);)*
            const NAMES: &'static [(&'static str, u32)] = &[$((stringify!($name), $value)),*];
        }
    };
}

open_flags! {
    /// `O_RDONLY` (0: contained in every set; test [`OpenFlags::access_mode`] instead).
    RDONLY = k::O_RDONLY,
    /// `O_WRONLY`.
    WRONLY = k::O_WRONLY,
    /// `O_RDWR`.
    RDWR = k::O_RDWR,
    /// `O_ACCMODE`: the access mode bits.
    ACCMODE = k::O_ACCMODE,
    /// `O_SYNC` (includes `O_DSYNC`).
    SYNC = k::O_SYNC,
    /// `O_TMPFILE` (includes `O_DIRECTORY`).
    TMPFILE = k::O_TMPFILE,
    /// `O_CREAT`.
    CREAT = k::O_CREAT,
    /// `O_EXCL`.
    EXCL = k::O_EXCL,
    /// `O_NOCTTY`.
    NOCTTY = k::O_NOCTTY,
    /// `O_TRUNC`.
    TRUNC = k::O_TRUNC,
    /// `O_APPEND`.
    APPEND = k::O_APPEND,
    /// `O_NONBLOCK`.
    NONBLOCK = k::O_NONBLOCK,
    /// `O_DSYNC`.
    DSYNC = k::O_DSYNC,
    /// `O_DIRECT`.
    DIRECT = k::O_DIRECT,
    /// `O_LARGEFILE`.
    LARGEFILE = k::O_LARGEFILE,
    /// `O_DIRECTORY`.
    DIRECTORY = k::O_DIRECTORY,
    /// `O_NOFOLLOW`.
    NOFOLLOW = k::O_NOFOLLOW,
    /// `O_NOATIME`.
    NOATIME = k::O_NOATIME,
    /// `O_CLOEXEC`.
    CLOEXEC = k::O_CLOEXEC,
    /// `O_PATH`.
    PATH = k::O_PATH,
    /// `__FMODE_EXEC` (0x20): the kernel's mark on the open of an `execve(2)` (and
    /// `uselib`), forwarded with the others. It is no `open(2)` flag: `openat2(2)` refuses
    /// it with `EINVAL`, so remove it before opening a backing file with these flags.
    EXEC = 0x20,
}

impl OpenFlags {
    /// No flag: `O_RDONLY` and nothing else.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// From the raw bits, unknown ones kept.
    pub const fn from_bits_retain(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The access mode.
    pub const fn access_mode(self) -> AccessMode {
        match self.0 & k::O_ACCMODE {
            k::O_RDONLY => AccessMode::ReadOnly,
            k::O_WRONLY => AccessMode::WriteOnly,
            k::O_RDWR => AccessMode::ReadWrite,
            _ => AccessMode::Other,
        }
    }

    /// Whether the file is opened for reading (`O_RDONLY` or `O_RDWR`).
    pub const fn reads(self) -> bool {
        matches!(
            self.access_mode(),
            AccessMode::ReadOnly | AccessMode::ReadWrite
        )
    }

    /// Whether the file is opened for writing (`O_WRONLY` or `O_RDWR`).
    pub const fn writes(self) -> bool {
        matches!(
            self.access_mode(),
            AccessMode::WriteOnly | AccessMode::ReadWrite
        )
    }

    /// Whether every bit of `other` is set (for [`RDONLY`](Self::RDONLY), always: use
    /// [`access_mode`](Self::access_mode)).
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }
}

impl From<u32> for OpenFlags {
    fn from(bits: u32) -> Self {
        Self(bits)
    }
}

impl From<OpenFlags> for u32 {
    fn from(f: OpenFlags) -> Self {
        f.0
    }
}

impl core::ops::BitOr for OpenFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for OpenFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl core::ops::BitAnd for OpenFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl core::ops::Sub for OpenFlags {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 & !rhs.0)
    }
}

impl fmt::Debug for OpenFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenFlags({:?}", self.access_mode())?;
        let mut rest = self.0 & !k::O_ACCMODE;
        for &(name, bit) in Self::NAMES {
            // Composite flags (SYNC, TMPFILE) come first in the table and take their parts'
            // bits: every set bit is named once; unknown ones are shown in octal.
            if bit & !k::O_ACCMODE != 0 && rest & bit == bit {
                write!(f, " | {name}")?;
                rest &= !bit;
            }
        }
        if rest != 0 {
            write!(f, " | {rest:#o}")?;
        }
        f.write_str(")")
    }
}

/// The flags of `renameat2(2)` that RENAME2 carries (0 for a plain RENAME).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
#[repr(transparent)]
pub struct RenameFlags(pub u32);

impl RenameFlags {
    /// `RENAME_NOREPLACE`: fail with `EEXIST` if the target exists.
    pub const NOREPLACE: Self = Self(k::RENAME_NOREPLACE);
    /// `RENAME_EXCHANGE`: swap the two names (both must exist).
    pub const EXCHANGE: Self = Self(k::RENAME_EXCHANGE);
    /// `RENAME_WHITEOUT`: leave a whiteout at the source (overlayfs).
    pub const WHITEOUT: Self = Self(k::RENAME_WHITEOUT);

    /// No flag: a plain `rename(2)`.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for RenameFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn access_modes_and_debug() {
        assert_eq!(OpenFlags(0).access_mode(), AccessMode::ReadOnly);
        assert_eq!(OpenFlags::RDWR.access_mode(), AccessMode::ReadWrite);
        assert_eq!(OpenFlags(3).access_mode(), AccessMode::Other);
        assert!(OpenFlags::RDWR.reads() && OpenFlags::RDWR.writes());
        let f = OpenFlags::WRONLY | OpenFlags::TRUNC | OpenFlags(0o10_000_000_000);
        assert_eq!(
            format!("{f:?}"),
            "OpenFlags(WriteOnly | TRUNC | 0o10000000000)"
        );
        assert_eq!(
            (f - OpenFlags::TRUNC).bits(),
            k::O_WRONLY | 0o10_000_000_000
        );
    }
}
