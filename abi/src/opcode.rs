//! Request opcodes and notification codes as Rust enums.

use crate::kernel;

macro_rules! opcodes {
    ($( $(#[$m:meta])* $variant:ident = $kernel:ident ),* $(,)?) => {
        /// `enum fuse_opcode`: what a request asks for.
        ///
        /// Decoding can't fail: a number this crate does not know becomes
        /// [`Opcode::Unknown`], which a server answers with `ENOSYS`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[doc(alias = "fuse_opcode")]
        #[non_exhaustive]
        pub enum Opcode {
            $( $(#[$m])* #[doc = concat!("`", stringify!($kernel), "`")] $variant, )*
            /// An opcode this crate does not know (a newer kernel, or garbage).
            Unknown(u32),
        }

        impl From<u32> for Opcode {
            #[inline]
            fn from(value: u32) -> Self {
                match value {
                    $( kernel::$kernel => Self::$variant, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<Opcode> for u32 {
            #[inline]
            fn from(op: Opcode) -> u32 {
                match op {
                    $( Opcode::$variant => kernel::$kernel, )*
                    Opcode::Unknown(other) => other,
                }
            }
        }

        impl Opcode {
            /// Every opcode this crate knows, in kernel order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$variant),*];

            /// The kernel's name for this opcode (`"FUSE_LOOKUP"`), or `"UNKNOWN"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Opcode::$variant => stringify!($kernel), )*
                    Opcode::Unknown(_) => "UNKNOWN",
                }
            }
        }
    };
}

opcodes! {
    Lookup = FUSE_LOOKUP,
    Forget = FUSE_FORGET,
    Getattr = FUSE_GETATTR,
    Setattr = FUSE_SETATTR,
    Readlink = FUSE_READLINK,
    Symlink = FUSE_SYMLINK,
    Mknod = FUSE_MKNOD,
    Mkdir = FUSE_MKDIR,
    Unlink = FUSE_UNLINK,
    Rmdir = FUSE_RMDIR,
    Rename = FUSE_RENAME,
    Link = FUSE_LINK,
    Open = FUSE_OPEN,
    Read = FUSE_READ,
    Write = FUSE_WRITE,
    Statfs = FUSE_STATFS,
    Release = FUSE_RELEASE,
    Fsync = FUSE_FSYNC,
    Setxattr = FUSE_SETXATTR,
    Getxattr = FUSE_GETXATTR,
    Listxattr = FUSE_LISTXATTR,
    Removexattr = FUSE_REMOVEXATTR,
    Flush = FUSE_FLUSH,
    Init = FUSE_INIT,
    Opendir = FUSE_OPENDIR,
    Readdir = FUSE_READDIR,
    Releasedir = FUSE_RELEASEDIR,
    Fsyncdir = FUSE_FSYNCDIR,
    Getlk = FUSE_GETLK,
    Setlk = FUSE_SETLK,
    Setlkw = FUSE_SETLKW,
    Access = FUSE_ACCESS,
    Create = FUSE_CREATE,
    Interrupt = FUSE_INTERRUPT,
    Bmap = FUSE_BMAP,
    Destroy = FUSE_DESTROY,
    Ioctl = FUSE_IOCTL,
    Poll = FUSE_POLL,
    NotifyReply = FUSE_NOTIFY_REPLY,
    BatchForget = FUSE_BATCH_FORGET,
    Fallocate = FUSE_FALLOCATE,
    Readdirplus = FUSE_READDIRPLUS,
    Rename2 = FUSE_RENAME2,
    Lseek = FUSE_LSEEK,
    CopyFileRange = FUSE_COPY_FILE_RANGE,
    SetupMapping = FUSE_SETUPMAPPING,
    RemoveMapping = FUSE_REMOVEMAPPING,
    Syncfs = FUSE_SYNCFS,
    Tmpfile = FUSE_TMPFILE,
    Statx = FUSE_STATX,
    CopyFileRange64 = FUSE_COPY_FILE_RANGE_64,
    CuseInit = CUSE_INIT,
}

impl Opcode {
    /// Whether the kernel expects no reply to this request (`FORGET`, `BATCH_FORGET`,
    /// `NOTIFY_REPLY`). Every other request gets exactly one.
    pub const fn is_no_reply(self) -> bool {
        matches!(
            self,
            Opcode::Forget | Opcode::BatchForget | Opcode::NotifyReply
        )
    }
}

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Opcode::Unknown(n) => write!(f, "UNKNOWN({n})"),
            op => f.write_str(op.name()),
        }
    }
}

macro_rules! notify_codes {
    ($( $variant:ident = $kernel:ident ),* $(,)?) => {
        /// `enum fuse_notify_code`: the kind of a notification, sent in
        /// `fuse_out_header::error` with `unique == 0`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[doc(alias = "fuse_notify_code")]
        pub enum NotifyCode {
            $( #[doc = concat!("`", stringify!($kernel), "`")] $variant, )*
        }

        impl NotifyCode {
            /// The value written into `fuse_out_header::error`.
            pub const fn code(self) -> i32 {
                match self { $( NotifyCode::$variant => kernel::$kernel, )* }
            }

            /// The code for a raw value, if it is one of 7.45's.
            pub const fn from_code(code: i32) -> Option<Self> {
                match code { $( kernel::$kernel => Some(NotifyCode::$variant), )* _ => None }
            }
        }
    };
}

notify_codes! {
    Poll = FUSE_NOTIFY_POLL,
    InvalInode = FUSE_NOTIFY_INVAL_INODE,
    InvalEntry = FUSE_NOTIFY_INVAL_ENTRY,
    Store = FUSE_NOTIFY_STORE,
    Retrieve = FUSE_NOTIFY_RETRIEVE,
    Delete = FUSE_NOTIFY_DELETE,
    Resend = FUSE_NOTIFY_RESEND,
    IncEpoch = FUSE_NOTIFY_INC_EPOCH,
    Prune = FUSE_NOTIFY_PRUNE,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_round_trips() {
        for &op in Opcode::ALL {
            assert_eq!(Opcode::from(u32::from(op)), op);
        }
        assert_eq!(Opcode::ALL.len(), 52);
    }

    #[test]
    fn unknown_opcodes_are_kept() {
        assert_eq!(Opcode::from(7), Opcode::Unknown(7));
        assert_eq!(Opcode::from(19), Opcode::Unknown(19));
        assert_eq!(Opcode::from(u32::MAX), Opcode::Unknown(u32::MAX));
        assert_eq!(u32::from(Opcode::Unknown(54)), 54);
    }

    #[test]
    fn notify_codes_round_trip() {
        for code in 1..=9 {
            assert_eq!(
                NotifyCode::from_code(code).map(NotifyCode::code),
                Some(code)
            );
        }
        assert_eq!(NotifyCode::from_code(0), None);
        assert_eq!(NotifyCode::from_code(10), None);
    }
}
