//! Typed flag sets over the kernel's bit constants.
//!
//! Each set is a transparent newtype over the wire integer; unknown bits are kept (a newer
//! kernel may send them) and shown in `Debug` as a hex remainder.

use crate::kernel;

macro_rules! flag_set {
    ($(#[$m:meta])* $name:ident: $t:ty { $($(#[$fm:meta])* $flag:ident = $kernel:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub $t);

        impl $name {
            $( #[doc = concat!("`", stringify!($kernel), "`")]
               pub const $flag: Self = Self(kernel::$kernel); )*
            /// No flag set.
            pub const EMPTY: Self = Self(0);
            /// Every flag this crate knows.
            pub const ALL: Self = Self(0 $(| kernel::$kernel)*);
            const NAMES: &'static [(&'static str, $t)] = &[$((stringify!($flag), kernel::$kernel)),*];

            /// The raw bits.
            #[inline]
            pub const fn bits(self) -> $t { self.0 }
            /// Whether every bit of `other` is set in `self`.
            #[inline]
            pub const fn contains(self, other: Self) -> bool { self.0 & other.0 == other.0 }
            /// Whether any bit of `other` is set in `self`.
            #[inline]
            pub const fn intersects(self, other: Self) -> bool { self.0 & other.0 != 0 }
            /// Bits in either.
            #[inline]
            #[must_use]
            pub const fn union(self, other: Self) -> Self { Self(self.0 | other.0) }
            /// Bits in both.
            #[inline]
            #[must_use]
            pub const fn intersection(self, other: Self) -> Self { Self(self.0 & other.0) }
            /// Bits in `self` but not in `other`.
            #[inline]
            #[must_use]
            pub const fn difference(self, other: Self) -> Self { Self(self.0 & !other.0) }
            /// Whether no bit is set.
            #[inline]
            pub const fn is_empty(self) -> bool { self.0 == 0 }
            /// Sets or clears `other`.
            #[inline]
            pub fn set(&mut self, other: Self, on: bool) {
                if on { self.0 |= other.0 } else { self.0 &= !other.0 }
            }
            /// No flag set (as [`EMPTY`](Self::EMPTY); the `bitflags` spelling).
            #[inline]
            pub const fn empty() -> Self { Self::EMPTY }
            /// Every flag this crate knows (as [`ALL`](Self::ALL)).
            #[inline]
            pub const fn all() -> Self { Self::ALL }
            /// From raw bits, unknown ones kept.
            #[inline]
            pub const fn from_bits_retain(bits: $t) -> Self { Self(bits) }
            /// Sets the bits of `other`.
            #[inline]
            pub fn insert(&mut self, other: Self) { self.0 |= other.0 }
            /// Clears the bits of `other`.
            #[inline]
            pub fn remove(&mut self, other: Self) { self.0 &= !other.0 }
        }

        impl core::ops::Sub for $name {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: Self) -> Self { self.difference(rhs) }
        }
        impl core::ops::SubAssign for $name {
            #[inline]
            fn sub_assign(&mut self, rhs: Self) { self.0 &= !rhs.0 }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            #[inline]
            fn bitor(self, rhs: Self) -> Self { self.union(rhs) }
        }
        impl core::ops::BitOrAssign for $name {
            #[inline]
            fn bitor_assign(&mut self, rhs: Self) { self.0 |= rhs.0 }
        }
        impl core::ops::BitAnd for $name {
            type Output = Self;
            #[inline]
            fn bitand(self, rhs: Self) -> Self { self.intersection(rhs) }
        }
        impl core::ops::BitAndAssign for $name {
            #[inline]
            fn bitand_assign(&mut self, rhs: Self) { self.0 &= rhs.0 }
        }
        impl core::ops::Not for $name {
            type Output = Self;
            #[inline]
            fn not(self) -> Self { Self(!self.0) }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                let mut rest = self.0;
                let mut first = true;
                for &(name, bit) in Self::NAMES {
                    if bit != 0 && self.0 & bit == bit {
                        if !first { f.write_str(" | ")?; }
                        f.write_str(name)?;
                        first = false;
                        rest &= !bit;
                    }
                }
                if rest != 0 {
                    if !first { f.write_str(" | ")?; }
                    write!(f, "{rest:#x}")?;
                } else if first {
                    f.write_str("empty")?;
                }
                f.write_str(")")
            }
        }
    };
}

flag_set! {
    /// INIT capability bits 0..=63 (`fuse_init_in/out` `flags` | `flags2 << 32`).
    InitFlags: u64 {
        ASYNC_READ = FUSE_ASYNC_READ,
        POSIX_LOCKS = FUSE_POSIX_LOCKS,
        FILE_OPS = FUSE_FILE_OPS,
        ATOMIC_O_TRUNC = FUSE_ATOMIC_O_TRUNC,
        EXPORT_SUPPORT = FUSE_EXPORT_SUPPORT,
        BIG_WRITES = FUSE_BIG_WRITES,
        DONT_MASK = FUSE_DONT_MASK,
        SPLICE_WRITE = FUSE_SPLICE_WRITE,
        SPLICE_MOVE = FUSE_SPLICE_MOVE,
        SPLICE_READ = FUSE_SPLICE_READ,
        FLOCK_LOCKS = FUSE_FLOCK_LOCKS,
        HAS_IOCTL_DIR = FUSE_HAS_IOCTL_DIR,
        AUTO_INVAL_DATA = FUSE_AUTO_INVAL_DATA,
        DO_READDIRPLUS = FUSE_DO_READDIRPLUS,
        READDIRPLUS_AUTO = FUSE_READDIRPLUS_AUTO,
        ASYNC_DIO = FUSE_ASYNC_DIO,
        WRITEBACK_CACHE = FUSE_WRITEBACK_CACHE,
        NO_OPEN_SUPPORT = FUSE_NO_OPEN_SUPPORT,
        PARALLEL_DIROPS = FUSE_PARALLEL_DIROPS,
        HANDLE_KILLPRIV = FUSE_HANDLE_KILLPRIV,
        POSIX_ACL = FUSE_POSIX_ACL,
        ABORT_ERROR = FUSE_ABORT_ERROR,
        MAX_PAGES = FUSE_MAX_PAGES,
        CACHE_SYMLINKS = FUSE_CACHE_SYMLINKS,
        NO_OPENDIR_SUPPORT = FUSE_NO_OPENDIR_SUPPORT,
        EXPLICIT_INVAL_DATA = FUSE_EXPLICIT_INVAL_DATA,
        MAP_ALIGNMENT = FUSE_MAP_ALIGNMENT,
        SUBMOUNTS = FUSE_SUBMOUNTS,
        HANDLE_KILLPRIV_V2 = FUSE_HANDLE_KILLPRIV_V2,
        SETXATTR_EXT = FUSE_SETXATTR_EXT,
        INIT_EXT = FUSE_INIT_EXT,
        INIT_RESERVED = FUSE_INIT_RESERVED,
        SECURITY_CTX = FUSE_SECURITY_CTX,
        HAS_INODE_DAX = FUSE_HAS_INODE_DAX,
        CREATE_SUPP_GROUP = FUSE_CREATE_SUPP_GROUP,
        HAS_EXPIRE_ONLY = FUSE_HAS_EXPIRE_ONLY,
        DIRECT_IO_ALLOW_MMAP = FUSE_DIRECT_IO_ALLOW_MMAP,
        PASSTHROUGH = FUSE_PASSTHROUGH,
        NO_EXPORT_SUPPORT = FUSE_NO_EXPORT_SUPPORT,
        HAS_RESEND = FUSE_HAS_RESEND,
        ALLOW_IDMAP = FUSE_ALLOW_IDMAP,
        OVER_IO_URING = FUSE_OVER_IO_URING,
        REQUEST_TIMEOUT = FUSE_REQUEST_TIMEOUT,
    }
}

flag_set! {
    /// `fuse_setattr_in::valid`: which attributes a SETATTR changes (`FATTR_*`).
    SetattrValid: u32 {
        MODE = FATTR_MODE,
        UID = FATTR_UID,
        GID = FATTR_GID,
        SIZE = FATTR_SIZE,
        ATIME = FATTR_ATIME,
        MTIME = FATTR_MTIME,
        FH = FATTR_FH,
        ATIME_NOW = FATTR_ATIME_NOW,
        MTIME_NOW = FATTR_MTIME_NOW,
        LOCKOWNER = FATTR_LOCKOWNER,
        CTIME = FATTR_CTIME,
        KILL_SUIDGID = FATTR_KILL_SUIDGID,
    }
}

flag_set! {
    /// `fuse_open_out::open_flags`: how the kernel treats an open file (`FOPEN_*`).
    FopenFlags: u32 {
        DIRECT_IO = FOPEN_DIRECT_IO,
        KEEP_CACHE = FOPEN_KEEP_CACHE,
        NONSEEKABLE = FOPEN_NONSEEKABLE,
        CACHE_DIR = FOPEN_CACHE_DIR,
        STREAM = FOPEN_STREAM,
        NOFLUSH = FOPEN_NOFLUSH,
        PARALLEL_DIRECT_WRITES = FOPEN_PARALLEL_DIRECT_WRITES,
        PASSTHROUGH = FOPEN_PASSTHROUGH,
    }
}

flag_set! {
    /// `fuse_open_in::open_flags` / `fuse_create_in::open_flags` (`FUSE_OPEN_*`).
    OpenInFlags: u32 {
        KILL_SUIDGID = FUSE_OPEN_KILL_SUIDGID,
    }
}

flag_set! {
    /// `fuse_release_in::release_flags` (`FUSE_RELEASE_*`).
    ReleaseFlags: u32 {
        FLUSH = FUSE_RELEASE_FLUSH,
        FLOCK_UNLOCK = FUSE_RELEASE_FLOCK_UNLOCK,
    }
}

flag_set! {
    /// `fuse_getattr_in::getattr_flags` (`FUSE_GETATTR_*`).
    GetattrFlags: u32 {
        FH = FUSE_GETATTR_FH,
    }
}

flag_set! {
    /// `fuse_lk_in::lk_flags` (`FUSE_LK_*`).
    LkFlags: u32 {
        FLOCK = FUSE_LK_FLOCK,
    }
}

flag_set! {
    /// `fuse_write_in::write_flags` (`FUSE_WRITE_*`).
    WriteFlags: u32 {
        CACHE = FUSE_WRITE_CACHE,
        LOCKOWNER = FUSE_WRITE_LOCKOWNER,
        KILL_SUIDGID = FUSE_WRITE_KILL_SUIDGID,
    }
}

flag_set! {
    /// `fuse_read_in::read_flags` (`FUSE_READ_*`).
    ReadFlags: u32 {
        LOCKOWNER = FUSE_READ_LOCKOWNER,
    }
}

flag_set! {
    /// `fuse_ioctl_in/out::flags` (`FUSE_IOCTL_*`).
    IoctlFlags: u32 {
        COMPAT = FUSE_IOCTL_COMPAT,
        UNRESTRICTED = FUSE_IOCTL_UNRESTRICTED,
        RETRY = FUSE_IOCTL_RETRY,
        BIT32 = FUSE_IOCTL_32BIT,
        DIR = FUSE_IOCTL_DIR,
        COMPAT_X32 = FUSE_IOCTL_COMPAT_X32,
    }
}

flag_set! {
    /// `fuse_poll_in::flags` (`FUSE_POLL_*`).
    PollFlags: u32 {
        SCHEDULE_NOTIFY = FUSE_POLL_SCHEDULE_NOTIFY,
    }
}

flag_set! {
    /// `fuse_fsync_in::fsync_flags` (`FUSE_FSYNC_*`).
    FsyncFlags: u32 {
        FDATASYNC = FUSE_FSYNC_FDATASYNC,
    }
}

flag_set! {
    /// `fuse_attr::flags` (`FUSE_ATTR_*`).
    AttrFlags: u32 {
        SUBMOUNT = FUSE_ATTR_SUBMOUNT,
        DAX = FUSE_ATTR_DAX,
    }
}

flag_set! {
    /// `fuse_setxattr_in::setxattr_flags` (`FUSE_SETXATTR_*`, with `FUSE_SETXATTR_EXT`).
    SetxattrFlags: u32 {
        ACL_KILL_SGID = FUSE_SETXATTR_ACL_KILL_SGID,
    }
}

flag_set! {
    /// `fuse_notify_inval_entry_out::flags` (`FUSE_EXPIRE_ONLY`).
    NotifyEntryFlags: u32 {
        EXPIRE_ONLY = FUSE_EXPIRE_ONLY,
    }
}

impl InitFlags {
    /// The flags of a `fuse_init_in`/`fuse_init_out` pair of words: `flags2` holds bits
    /// 32..=63 and counts only when `flags` has `FUSE_INIT_EXT`.
    #[inline]
    pub const fn from_words(flags: u32, flags2: u32) -> Self {
        if flags as u64 & kernel::FUSE_INIT_EXT != 0 {
            Self(flags as u64 | ((flags2 as u64) << 32))
        } else {
            Self(flags as u64)
        }
    }

    /// The low word (`flags`).
    #[inline]
    pub const fn low_word(self) -> u32 {
        self.0 as u32
    }

    /// The high word (`flags2`).
    #[inline]
    pub const fn high_word(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_words() {
        let f = InitFlags::from_words(kernel::FUSE_INIT_EXT as u32 | 1, 1 << 9);
        assert!(f.contains(InitFlags::OVER_IO_URING));
        assert!(f.contains(InitFlags::ASYNC_READ));
        assert_eq!(f.high_word(), 1 << 9);
        // Without INIT_EXT, flags2 is ignored, as the kernel does.
        assert!(!InitFlags::from_words(1, 1 << 9).contains(InitFlags::OVER_IO_URING));
        assert_eq!(InitFlags::OVER_IO_URING.bits(), 1 << 41);
        assert_eq!(InitFlags::REQUEST_TIMEOUT.bits(), 1 << 42);
    }

    #[test]
    fn debug_names_bits_and_keeps_unknown() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{:?}", SetattrValid::MODE | SetattrValid::SIZE),
            "SetattrValid(MODE | SIZE)"
        );
        assert_eq!(format!("{:?}", FopenFlags(1 << 20)), "FopenFlags(0x100000)");
        assert_eq!(format!("{:?}", FsyncFlags::EMPTY), "FsyncFlags(empty)");
    }
}
