//! What a filesystem tells the kernel about its files: attributes, entries, times.

use core::time::Duration;

use crate::abi::kernel::{fuse_attr, fuse_entry_out, fuse_sx_time};

/// A node id: the kernel's handle for an inode (`fuse_in_header::nodeid`).
///
/// `1` is the root ([`NodeId::ROOT`]); `0` is never a valid node. A filesystem must not hand
/// the same `(NodeId, generation)` pair to the kernel for two different objects while the
/// kernel still holds a lookup count on the first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// `FUSE_ROOT_ID`.
    pub const ROOT: NodeId = NodeId(crate::abi::kernel::FUSE_ROOT_ID);
}

/// A point in time as the kernel stores it: seconds since the epoch and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC (negative before it).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nsecs: u32,
}

impl Timestamp {
    /// A timestamp from seconds and nanoseconds; nanoseconds past a second carry over.
    pub const fn new(secs: i64, nsecs: u32) -> Self {
        Self {
            secs: secs.saturating_add((nsecs / 1_000_000_000) as i64),
            nsecs: nsecs % 1_000_000_000,
        }
    }

    /// The current wall-clock time (`CLOCK_REALTIME`).
    pub fn now() -> Self {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        // tv_nsec is always in 0..1e9 for CLOCK_REALTIME.
        Self::new(ts.tv_sec, u32::try_from(ts.tv_nsec).unwrap_or(0))
    }
}

#[cfg(feature = "std")]
impl From<std::time::SystemTime> for Timestamp {
    /// Times before 1970 become negative seconds with nanoseconds counted forward, as the
    /// kernel stores them.
    fn from(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self::new(
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(before) => {
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => Self::new(-secs, 0),
                    n => Self::new(-secs - 1, 1_000_000_000 - n),
                }
            }
        }
    }
}

#[cfg(feature = "std")]
impl From<Timestamp> for std::time::SystemTime {
    fn from(t: Timestamp) -> Self {
        let nanos = Duration::from_nanos(u64::from(t.nsecs));
        if t.secs >= 0 {
            std::time::UNIX_EPOCH + Duration::from_secs(t.secs.unsigned_abs()) + nanos
        } else {
            std::time::UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + nanos
        }
    }
}

/// The type of a file, as in the `S_IFMT` bits of `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `S_IFREG`
    RegularFile,
    /// `S_IFDIR`
    Directory,
    /// `S_IFLNK`
    Symlink,
    /// `S_IFIFO`
    NamedPipe,
    /// `S_IFSOCK`
    Socket,
    /// `S_IFCHR`
    CharDevice,
    /// `S_IFBLK`
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` bits.
    pub const fn mode_bits(self) -> u32 {
        match self {
            FileType::RegularFile => 0o100_000,
            FileType::Directory => 0o040_000,
            FileType::Symlink => 0o120_000,
            FileType::NamedPipe => 0o010_000,
            FileType::Socket => 0o140_000,
            FileType::CharDevice => 0o020_000,
            FileType::BlockDevice => 0o060_000,
        }
    }

    /// The type encoded in a full `st_mode`, if it is a valid one.
    pub const fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170_000 {
            0o100_000 => FileType::RegularFile,
            0o040_000 => FileType::Directory,
            0o120_000 => FileType::Symlink,
            0o010_000 => FileType::NamedPipe,
            0o140_000 => FileType::Socket,
            0o020_000 => FileType::CharDevice,
            0o060_000 => FileType::BlockDevice,
            _ => return None,
        })
    }

    /// The `DT_*` value of a directory entry (`mode >> 12`).
    pub const fn dirent_type(self) -> u32 {
        self.mode_bits() >> 12
    }
}

/// The attributes of a file (`struct fuse_attr`, what `stat(2)` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attr {
    /// Inode number shown in `st_ino` (usually the node id).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Full `st_mode`: file type bits and permission bits.
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for character and block devices.
    pub rdev: u32,
    /// Preferred I/O size; 0 lets the kernel choose.
    pub blksize: u32,
    /// `FUSE_ATTR_*` flags.
    pub flags: u32,
}

impl Attr {
    /// Attributes of a new file of type `kind` with permission bits `perm`, owned by root,
    /// with every time set to `time` and one link.
    pub const fn new(ino: u64, kind: FileType, perm: u32, time: Timestamp) -> Self {
        Self {
            ino,
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            mode: kind.mode_bits() | (perm & 0o7777),
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 0,
            flags: 0,
        }
    }

    /// The same attributes owned by `uid` and `gid` — for a node the caller creates, its
    /// [`Cx::uid`](crate::Cx::uid) and [`Cx::gid`](crate::Cx::gid) (or
    /// [`AsyncCx`](crate::AsyncCx)'s): `Attr::new(ino, kind, perm, now).owned_by(cx.uid(),
    /// cx.gid())`.
    #[must_use]
    pub const fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// The file type from `mode`, if valid.
    pub const fn kind(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// The wire form.
    #[allow(clippy::cast_sign_loss)] // the kernel reads times as two's complement
    pub const fn to_kernel(&self) -> fuse_attr {
        fuse_attr {
            ino: self.ino,
            size: self.size,
            blocks: self.blocks,
            atime: self.atime.secs as u64,
            mtime: self.mtime.secs as u64,
            ctime: self.ctime.secs as u64,
            atimensec: self.atime.nsecs,
            mtimensec: self.mtime.nsecs,
            ctimensec: self.ctime.nsecs,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: self.blksize,
            flags: self.flags,
        }
    }

    /// The `statx` wire form, with `STATX_BASIC_STATS` in `mask`.
    pub const fn to_statx(&self) -> crate::abi::kernel::fuse_statx {
        const fn sx(t: Timestamp) -> fuse_sx_time {
            fuse_sx_time {
                tv_sec: t.secs,
                tv_nsec: t.nsecs,
                reserved: 0,
            }
        }
        let mut s = crate::abi::kernel::fuse_statx {
            mask: 0x7ff, // STATX_BASIC_STATS
            blksize: self.blksize,
            attributes: 0,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            mode: self.mode as u16,
            spare0: [0],
            ino: self.ino,
            size: self.size,
            blocks: self.blocks,
            attributes_mask: 0,
            atime: sx(self.atime),
            btime: sx(Timestamp { secs: 0, nsecs: 0 }),
            ctime: sx(self.ctime),
            mtime: sx(self.mtime),
            rdev_major: 0,
            rdev_minor: 0,
            dev_major: 0,
            dev_minor: 0,
            spare2: [0; 14],
        };
        // new_encode_dev: major is bits 8..20, minor bits 0..8 and 20..32.
        s.rdev_major = (self.rdev >> 8) & 0xfff;
        s.rdev_minor = (self.rdev & 0xff) | ((self.rdev >> 12) & 0xfff_ff00);
        s
    }
}

/// Splits a cache lifetime into the kernel's seconds and nanoseconds.
pub(crate) const fn ttl_parts(ttl: Duration) -> (u64, u32) {
    (ttl.as_secs(), ttl.subsec_nanos())
}

/// A directory entry handed to the kernel: a name's node, its attributes and how long the
/// kernel may cache each (`struct fuse_entry_out`).
///
/// Every successful entry reply adds one to the node's lookup count, which the kernel gives
/// back with FORGET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The node; `NodeId(0)` makes a negative entry ("no such name", cached for
    /// `entry_ttl`).
    pub node: NodeId,
    /// Generation: `(node, generation)` must be unique for the filesystem's lifetime.
    pub generation: u64,
    /// Attributes of the node.
    pub attr: Attr,
    /// How long the name → node binding may be cached.
    pub entry_ttl: Duration,
    /// How long `attr` may be cached.
    pub attr_ttl: Duration,
}

impl Entry {
    /// The wire form.
    pub const fn to_kernel(&self) -> fuse_entry_out {
        let (entry_valid, entry_valid_nsec) = ttl_parts(self.entry_ttl);
        let (attr_valid, attr_valid_nsec) = ttl_parts(self.attr_ttl);
        fuse_entry_out {
            nodeid: self.node.0,
            generation: self.generation,
            entry_valid,
            attr_valid,
            entry_valid_nsec,
            attr_valid_nsec,
            attr: self.attr.to_kernel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_round_trip() {
        for kind in [
            FileType::RegularFile,
            FileType::Directory,
            FileType::Symlink,
            FileType::NamedPipe,
            FileType::Socket,
            FileType::CharDevice,
            FileType::BlockDevice,
        ] {
            assert_eq!(FileType::from_mode(kind.mode_bits() | 0o644), Some(kind));
        }
        assert_eq!(FileType::Directory.dirent_type(), 4);
        assert_eq!(FileType::RegularFile.dirent_type(), 8);
        assert_eq!(FileType::from_mode(0o644), None);
    }

    #[test]
    fn negative_times_are_twos_complement() {
        let mut a = Attr::new(2, FileType::RegularFile, 0o644, Timestamp::new(-1, 5));
        a.size = 7;
        let k = a.to_kernel();
        assert_eq!(k.mtime, u64::MAX);
        assert_eq!(k.mtimensec, 5);
        assert_eq!(k.mode, 0o100_644);
    }

    #[test]
    fn statx_device_numbers() {
        let mut a = Attr::new(3, FileType::CharDevice, 0o600, Timestamp::default());
        a.rdev = (1 << 8) | 3; // makedev(1, 3) in the old encoding = /dev/null
        let s = a.to_statx();
        assert_eq!((s.rdev_major, s.rdev_minor), (1, 3));
    }

    #[test]
    fn entry_ttls() {
        let e = Entry {
            node: NodeId(5),
            generation: 2,
            attr: Attr::new(5, FileType::Directory, 0o755, Timestamp::default()),
            entry_ttl: Duration::from_millis(1500),
            attr_ttl: Duration::ZERO,
        }
        .to_kernel();
        assert_eq!((e.entry_valid, e.entry_valid_nsec), (1, 500_000_000));
        assert_eq!((e.attr_valid, e.attr_valid_nsec), (0, 0));
    }
}

#[cfg(all(test, feature = "std"))]
mod time_tests {
    use super::Timestamp;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn system_times_round_trip_both_sides_of_the_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_700_000_000, 123),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH - Duration::from_secs(7),
        ] {
            let ts = Timestamp::from(t);
            assert!(ts.nsecs < 1_000_000_000);
            assert_eq!(std::time::SystemTime::from(ts), t);
        }
        let before = Timestamp::from(UNIX_EPOCH - Duration::new(5, 250_000_000));
        assert_eq!((before.secs, before.nsecs), (-6, 750_000_000));
    }
}
