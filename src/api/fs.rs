//! The [`Filesystem`] trait: one method per FUSE operation.

use core::ffi::CStr;

use crate::abi::Errno;
use crate::abi::flags::{InitFlags, SetattrValid};
use crate::abi::kernel::fuse_setattr_in;
use crate::abi::request::Forgets;
use crate::api::attr::{NodeId, Timestamp};
use crate::api::cx::Cx;
use crate::api::open_flags::{OpenFlags, RenameFlags};
use crate::api::reply::{
    Done, FileLock, ReplyAttr, ReplyBmap, ReplyCopied, ReplyCreate, ReplyData, ReplyDir,
    ReplyDirPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll,
    ReplyStatfs, ReplyStatx, ReplyWrite, ReplyXattr, Statfs,
};

/// What the kernel offered at INIT, and what the filesystem asks for.
///
/// [`Filesystem::init`] may change `want` (and the limits) before the session answers INIT.
/// The session sends `want ∩ offered`, never a bit the kernel did not offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitConfig {
    /// The kernel's protocol minor (45 on Linux 6.18).
    pub kernel_minor: u32,
    /// What the kernel offered.
    pub offered: InitFlags,
    /// What the filesystem wants. Starts with the session's defaults, which need nothing
    /// from the filesystem: `ASYNC_READ`, `BIG_WRITES`, `AUTO_INVAL_DATA`, `MAX_PAGES`,
    /// `PARALLEL_DIROPS`, `ABORT_ERROR`, `ASYNC_DIO` and `INIT_EXT`. `ASYNC_DIO` (also
    /// libfuse's default) lets the kernel send a caller's direct I/O as concurrent
    /// requests: without it, O_DIRECT reads of one file reach the filesystem one at a time
    /// whatever the caller's queue depth (about 900 reads/s against 1 ms per read);
    /// the cost: those requests are background ones, for which the kernel sends no
    /// INTERRUPT, so a signal does not cut short a direct read the filesystem is slow to
    /// answer. Remove it for a filesystem that needs its direct reads one at a time, or
    /// interruptible.
    /// Add `DO_READDIRPLUS` (and `READDIRPLUS_AUTO`) only if
    /// [`Filesystem::readdirplus`] is implemented, `POSIX_LOCKS`/`FLOCK_LOCKS` only if the
    /// lock methods are.
    pub want: InitFlags,
    /// The kernel's readahead offer; the answer is at most this.
    pub max_readahead: u32,
    /// Largest WRITE the kernel will send; bounded by the session's buffers.
    pub max_write: u32,
    /// Background requests (readahead, writeback, asynchronous direct I/O) the kernel
    /// keeps in flight at most. Default 64 (the kernel's own default is 12); the loop's
    /// [`slots`](crate::Config::slots) and
    /// [`queue_depth`](crate::Config::queue_depth) bound what it serves at once.
    pub max_background: u16,
    /// Where the kernel starts throttling background requests.
    pub congestion_threshold: u16,
    /// Timestamp granularity in nanoseconds (1 = full precision).
    pub time_gran: u32,
    /// Kernel passthrough (`FUSE_PASSTHROUGH` in `want`): how deep backing filesystems may
    /// stack under this one, 1 or 2 (`FILESYSTEM_MAX_STACK_DEPTH`). The kernel ignores
    /// `PASSTHROUGH` with 0, so the session then leaves the flag out. Default 1.
    pub max_stack_depth: u32,
}

impl InitConfig {
    /// Asks for `FUSE_EXPORT_SUPPORT`: file handles (`name_to_handle_at` and
    /// `open_by_handle_at`, NFS export) that stay valid after the kernel dropped its caches,
    /// until the file is deleted. The filesystem promises to answer LOOKUP of "." and ".."
    /// by node id (see [`Filesystem::lookup`]) and never to reuse a `(node, generation)`
    /// pair. Without it such handles give `ESTALE` once the kernel forgot the inode.
    pub fn want_export_support(&mut self) {
        self.want |= InitFlags::EXPORT_SUPPORT;
    }
}

/// The attributes a SETATTR changes (`struct fuse_setattr_in` with its `valid` mask read
/// into options).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (and, rarely, type bits: ignore those).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate or extend).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
    /// New change time.
    pub ctime: Option<Timestamp>,
    /// The open file this came through (`ftruncate`, `fchmod`...).
    pub fh: Option<u64>,
    /// Lock owner, when the kernel passes one.
    pub lock_owner: Option<u64>,
    /// Whether the kernel asks to drop suid/sgid (`FATTR_KILL_SUIDGID`).
    pub kill_suidgid: bool,
}

/// A time to set: a given one, or "now" as the filesystem's clock tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeOrNow {
    /// This time.
    At(Timestamp),
    /// The current time.
    Now,
}

impl TimeOrNow {
    /// The time, reading the clock for [`TimeOrNow::Now`].
    pub fn resolve(self) -> Timestamp {
        match self {
            TimeOrNow::At(t) => t,
            TimeOrNow::Now => Timestamp::now(),
        }
    }
}

impl SetAttr {
    /// Reads the kernel's request.
    #[allow(clippy::cast_possible_wrap)] // times are two's complement on the wire
    pub fn from_kernel(k: &fuse_setattr_in) -> Self {
        let v = SetattrValid(k.valid);
        let has = |f: SetattrValid| v.contains(f);
        let time = |now: SetattrValid, set: SetattrValid, secs: u64, nsecs: u32| {
            if has(now) {
                Some(TimeOrNow::Now)
            } else if has(set) {
                Some(TimeOrNow::At(Timestamp::new(secs as i64, nsecs)))
            } else {
                None
            }
        };
        Self {
            mode: has(SetattrValid::MODE).then_some(k.mode),
            uid: has(SetattrValid::UID).then_some(k.uid),
            gid: has(SetattrValid::GID).then_some(k.gid),
            size: has(SetattrValid::SIZE).then_some(k.size),
            atime: time(
                SetattrValid::ATIME_NOW,
                SetattrValid::ATIME,
                k.atime,
                k.atimensec,
            ),
            mtime: time(
                SetattrValid::MTIME_NOW,
                SetattrValid::MTIME,
                k.mtime,
                k.mtimensec,
            ),
            ctime: has(SetattrValid::CTIME).then(|| Timestamp::new(k.ctime as i64, k.ctimensec)),
            fh: has(SetattrValid::FH).then_some(k.fh),
            lock_owner: has(SetattrValid::LOCKOWNER).then_some(k.lock_owner),
            kill_suidgid: has(SetattrValid::KILL_SUIDGID),
        }
    }
}

/// The arguments of an IOCTL request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoctlArgs<'a> {
    /// The open file.
    pub fh: u64,
    /// `FUSE_IOCTL_*` flags.
    pub flags: u32,
    /// The ioctl command.
    pub cmd: u32,
    /// The ioctl argument (a pointer in the caller's address space, for information).
    pub arg: u64,
    /// Input data the kernel copied from the caller.
    pub in_data: &'a [u8],
    /// Most output bytes the caller accepts.
    pub out_size: u32,
}

/// The arguments of a COPY_FILE_RANGE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRange {
    /// Source node.
    pub node_in: NodeId,
    /// Source open file.
    pub fh_in: u64,
    /// Source offset.
    pub off_in: u64,
    /// Destination node.
    pub node_out: NodeId,
    /// Destination open file.
    pub fh_out: u64,
    /// Destination offset.
    pub off_out: u64,
    /// Bytes to copy.
    pub len: u64,
    /// `copy_file_range(2)` flags.
    pub flags: u64,
}

/// A FUSE filesystem: one method per operation the kernel can ask for.
///
/// Every method has a default, so a filesystem implements only what it supports. The
/// defaults answer `ENOSYS`, which the kernel remembers for the operations where it has a
/// fallback (OPEN and OPENDIR become "no open needed", FLUSH/FSYNC/ACCESS succeed, xattrs
/// become `EOPNOTSUPP`, STATX falls back to GETATTR, ...; see `fuse-protocol.md` §2.6). A
/// few defaults give the answer the kernel needs instead: RELEASE and RELEASEDIR succeed,
/// STATFS reports an empty filesystem, FORGET does nothing.
///
/// Methods take `&mut self`: one loop owns its filesystem value and calls it from one
/// thread. A filesystem served by one loop per CPU gets one value per loop, made by a
/// factory; state they share lives behind an `Arc` inside, locked as the filesystem
/// chooses.
///
/// Every method that takes a reply must answer it (or defer it) and return the [`Done`]
/// the reply gives back. Errors are [`Errno`] values, sent to the kernel as `-errno`.
#[allow(unused_variables)]
pub trait Filesystem {
    /// Bytes of task memory every slot carries for this filesystem: 0 for a synchronous
    /// one. Set by [`Async`](crate::Async) (its futures live there); not meant to be set
    /// by hand.
    #[doc(hidden)]
    const TASK_BYTES: usize = 0;

    /// Whether an INTERRUPT of a request this filesystem holds on a native ring entry is
    /// passed to [`interrupted`](Self::interrupted) unanswered, for the filesystem to
    /// answer once its own operations on the entry's buffers are done. False: such requests
    /// are not interrupted (answering would hand the entry back to the kernel while the
    /// filesystem may still use its buffers). Set by [`Async`](crate::Async).
    #[doc(hidden)]
    const INTERRUPTS_ENTRIES: bool = false;

    /// Called once before INIT is answered; adjust `cfg.want` and the limits.
    ///
    /// # Errors
    ///
    /// An error is sent as the INIT reply, which makes every later request on the mount
    /// fail; [`Session::new`](crate::Session::new), which answers INIT, then returns
    /// [`Error::Init`](crate::Error::Init).
    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        Ok(())
    }

    /// Called once when the session ends (unmount, abort or stop).
    fn destroy(&mut self) {}

    /// LOOKUP: the node named `name` in directory `parent`. A successful entry adds one to
    /// the node's lookup count.
    ///
    /// With [`InitConfig::want_export_support`], the kernel also sends `name` "." with
    /// `parent` any node (a file too), and ".." with `parent` a directory, to rebuild a
    /// dentry from a file handle (`open_by_handle_at`, NFS) once its caches dropped it:
    /// answer "." with the node itself and ".." with the directory's parent (the root's is
    /// the root), counting the lookup as for any entry, and `ENOENT` once the node is
    /// deleted (the handle's user then gets `ESTALE`). Path walks never send either name.
    fn lookup(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// FORGET: the kernel drops `nlookup` lookups of `node`. No reply. When the count
    /// reaches 0 the node id may be reused (with a new generation).
    fn forget(&mut self, cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {}

    /// BATCH_FORGET: several FORGETs at once. The default calls [`forget`](Self::forget)
    /// for each.
    fn batch_forget(&mut self, cx: &mut Cx<'_>, forgets: Forgets<'_>) {
        for f in forgets {
            self.forget(cx, NodeId(f.nodeid), f.nlookup);
        }
    }

    /// GETATTR: the attributes of `node`; `fh` is set when asked through an open file.
    fn getattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// SETATTR: change attributes (chmod, chown, truncate, utimens) and answer with the
    /// result.
    fn setattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// READLINK: the target of the symlink `node`.
    fn readlink(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyData<'_>) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// SYMLINK: create `parent/name` pointing to `target`.
    fn symlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// MKNOD: create a regular file, fifo, socket or device node. `mode` holds the type;
    /// `umask` is the caller's (already applied by the kernel unless `DONT_MASK`).
    #[allow(clippy::too_many_arguments)]
    fn mknod(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// MKDIR: create directory `parent/name`.
    fn mkdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// UNLINK: remove `parent/name` (not a directory). The node lives on until forgotten.
    fn unlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// RMDIR: remove the empty directory `parent/name`.
    fn rmdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// RENAME and RENAME2: move `parent/name` to `newparent/newname`. `flags` holds
    /// `RENAME_NOREPLACE` (1), `RENAME_EXCHANGE` (2) or `RENAME_WHITEOUT` (4); answering
    /// `ENOSYS` to a request with flags makes the kernel answer `EINVAL` to such renames
    /// from then on.
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: RenameFlags,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// LINK: a new name `newparent/newname` for `node`.
    fn link(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// OPEN: open `node` with `open(2)` `flags`. `ENOSYS` makes every later open succeed
    /// without asking (file handle 0, page cache kept).
    fn open(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        flags: OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// READ: up to `size` bytes at `offset` ([`ReplyData::max_len`](crate::ReplyData::max_len)).
    /// A short answer means end of file (unless the file was opened with `DIRECT_IO`).
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// WRITE: `data` at `offset`; answer with the number of bytes written.
    /// `write_flags` holds `FUSE_WRITE_*`, `flags` the file's open flags.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
        flags: u32,
        reply: ReplyWrite<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// FLUSH: called on each `close(2)` of a file descriptor.
    fn flush(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// RELEASE: the last reference to an open file is gone. Succeeds by default.
    #[allow(clippy::too_many_arguments)]
    fn release(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.ok()
    }

    /// FSYNC: flush the file's data (and metadata unless `datasync`) to stable storage.
    fn fsync(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// OPENDIR: open directory `node`. `ENOSYS` makes later opendirs succeed without
    /// asking.
    fn opendir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        flags: OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// READDIR: entries of directory `node` after the cookie `offset` (0 = from the
    /// start). Answer with as many as fit; an empty answer ends the listing.
    fn readdir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// READDIRPLUS: like [`readdir`](Self::readdir), with each entry's attributes. Only
    /// sent if [`init`](Self::init) asked for `DO_READDIRPLUS`; each entry counts as a
    /// lookup.
    fn readdirplus(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDirPlus<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// RELEASEDIR: the directory handle is closed. Succeeds by default.
    fn releasedir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.ok()
    }

    /// FSYNCDIR: flush a directory.
    fn fsyncdir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// STATFS: filesystem statistics. The default reports an empty filesystem with
    /// 255-byte names, as libfuse does.
    fn statfs(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        reply.statfs(&Statfs {
            bsize: 512,
            namelen: 255,
            ..Statfs::default()
        })
    }

    /// SETXATTR: set extended attribute `name` to `value`. `flags` holds
    /// `XATTR_CREATE`/`XATTR_REPLACE`.
    #[allow(clippy::too_many_arguments)]
    fn setxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// GETXATTR: the value of `name`; [`ReplyXattr::value`](crate::ReplyXattr::value)
    /// handles the size query and `ERANGE`.
    fn getxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyXattr<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// LISTXATTR: the NUL-terminated names of all extended attributes.
    fn listxattr(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyXattr<'_>) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// REMOVEXATTR: remove extended attribute `name`.
    fn removexattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// ACCESS: check `access(2)` permissions (`mask` of `R_OK`/`W_OK`/`X_OK`). Not sent
    /// with the `default_permissions` mount option; `ENOSYS` means "always allowed".
    fn access(&mut self, cx: &mut Cx<'_>, node: NodeId, mask: u32, reply: ReplyEmpty<'_>) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// CREATE: create and open `parent/name` (`ENOSYS` falls back to MKNOD + OPEN).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// GETLK: test for a conflicting POSIX lock (only with `POSIX_LOCKS`).
    fn getlk(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
        reply: ReplyLock<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// SETLK and SETLKW: take or release a POSIX lock (`flock` set for `flock(2)` locks,
    /// with `FLOCK_LOCKS`); `sleep` asks to wait for it (defer the reply!).
    #[allow(clippy::too_many_arguments)]
    fn setlk(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
        sleep: bool,
        flock: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// BMAP: map a file block to a device block (block-device backed filesystems only).
    fn bmap(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        blocksize: u32,
        block: u64,
        reply: ReplyBmap<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// IOCTL: a restricted ioctl on an open file.
    fn ioctl(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        args: &IoctlArgs<'_>,
        reply: ReplyIoctl<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// POLL: readiness of an open file. If `flags` has `FUSE_POLL_SCHEDULE_NOTIFY`, notify
    /// `kh` with [`Cx::notify_poll`](crate::Cx::notify_poll) when it changes.
    #[allow(clippy::too_many_arguments)]
    fn poll(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
        reply: ReplyPoll<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// FALLOCATE: allocate or punch space (`fallocate(2)` `mode`).
    #[allow(clippy::too_many_arguments)]
    fn fallocate(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// LSEEK: `SEEK_DATA` / `SEEK_HOLE` (others are handled by the kernel).
    #[allow(clippy::too_many_arguments)]
    fn lseek(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: u64,
        offset: u64,
        whence: u32,
        reply: ReplyLseek<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// COPY_FILE_RANGE and COPY_FILE_RANGE_64: copy between two open files.
    fn copy_file_range(
        &mut self,
        cx: &mut Cx<'_>,
        range: &CopyRange,
        reply: ReplyCopied<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// STATX: extended attributes (`ENOSYS` falls back to GETATTR).
    #[allow(clippy::too_many_arguments)]
    fn statx(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        fh: Option<u64>,
        flags: u32,
        mask: u32,
        reply: ReplyStatx<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// TMPFILE: create an unnamed file in `parent` (`O_TMPFILE`) and open it.
    #[allow(clippy::too_many_arguments)]
    fn tmpfile(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// SYNCFS: flush the whole filesystem.
    fn syncfs(&mut self, cx: &mut Cx<'_>, node: NodeId, reply: ReplyEmpty<'_>) -> Done {
        reply.error(Errno::ENOSYS)
    }

    /// NOTIFY_REPLY: the kernel's answer to [`Cx::notify_retrieve`](crate::Cx::notify_retrieve):
    /// `data` is the cached content of `node` from `offset`.
    fn retrieve_reply(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        notify_unique: u64,
        offset: u64,
        data: &[u8],
    ) {
    }

    /// INTERRUPT of a request this filesystem deferred: the session has already answered
    /// it with `EINTR`; the filesystem should stop its work and still
    /// [`resume`](crate::Cx::resume) the token (which then yields `None`) so the request's
    /// buffers are freed.
    fn interrupted(&mut self, cx: &mut Cx<'_>, unique: u64) {}

    /// The loop is ending (unmount, abort or stop): it will not return while operations
    /// the filesystem submitted are in flight, nor while it holds deferred requests. Cancel
    /// what may never complete on its own ([`Cx::cancel`](crate::Cx::cancel)), and resume
    /// what you hold.
    fn stopping(&mut self, cx: &mut Cx<'_>) {}

    /// A completion of a ring operation the filesystem submitted with
    /// [`Cx::submit`](crate::Cx::submit): its `tag`, result (`>= 0`, or `-errno`) and CQE
    /// flags.
    fn completion(&mut self, cx: &mut Cx<'_>, tag: u64, result: i32, flags: u32) {}
}
