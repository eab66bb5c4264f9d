//! [`Passthrough`]: the [`AsyncFilesystem`] that mirrors a backing directory.
//!
//! Each handler is straight-line code: it awaits its backing operations on the loop's own
//! ring (through [`AsyncCx`]) or, for metadata of a local filesystem, makes the syscall
//! directly (see [`Metadata`]), and returns its answer. While one request waits, the loop
//! serves others; a slow backing file delays only the requests that touch it.
//!
//! The tables are shared by every loop (one per CPU with `--per-cpu`: a node looked up on
//! one CPU is used on another), each behind a `Mutex` locked for a lookup or an update and
//! never across an `.await`: a handler clones what it needs out of them (an `Arc` of a
//! node's descriptor or of an open file) and keeps it until it ends. The READDIR and xattr
//! buffers are each loop's own (`RefCell`: one thread polls that loop's futures).

use core::cell::RefCell;
use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ringfuse::abi::flags::InitFlags;
use ringfuse::ring::{IoringSqeFlags, Sqe};
use ringfuse::{
    AsyncCx, AsyncFilesystem, Attr, DirFill, Entry, Errno, FileType, InitConfig, NodeId, Opened,
    ReadBuf, SetAttr, Statfs, TimeOrNow, Timestamp, WriteBuf, XattrOut,
};
use rustix::fd::{AsFd as _, BorrowedFd, OwnedFd};
use rustix::fs::{
    AtFlags, FallocateFlags, Mode, OFlags, RenameFlags, ResolveFlags, Statx, StatxFlags, XattrFlags,
};

use crate::handles::{Backings, Handles};
use crate::nodes::{Nodes, ROOT};

/// Largest extended attribute value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 64 * 1024;
/// Where a descriptor's path is, for the calls that take only paths.
const PROC_FD: &str = "/proc/self/fd/";

/// How metadata operations (open, stat, mkdir, unlink, rename, symlink, link, truncate)
/// reach the backing filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Metadata {
    /// As direct syscalls from the loop: cheapest on a local filesystem, where they never
    /// wait for a device (every call is on a descriptor or one name in a directory the
    /// server holds open). io_uring runs most of these opcodes on an io-wq worker thread,
    /// a thread hop each.
    Direct,
    /// Through the loop's ring: a backing filesystem that may take long (FUSE, network)
    /// delays only the request that waits for it.
    Ring,
}

/// How the filesystem is set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// How long the kernel may trust names and attributes.
    pub ttl: Duration,
    /// Ask for kernel passthrough (`-o passthrough`).
    pub passthrough: bool,
    pub metadata: Metadata,
}

/// Where kernel passthrough stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelPassthrough {
    /// Not asked for.
    Off,
    /// Asked for at INIT and offered; opens try to register backing files.
    Asked,
    /// Registering backing files works: opens are answered with a backing id.
    On,
    /// The kernel did not offer it or refused the first backing file (its errno).
    Refused(Option<Errno>),
}

/// What the filesystem did (all loops together), printed at exit.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// READ requests that reached the server (none for files opened with kernel
    /// passthrough).
    pub reads: AtomicU64,
    /// WRITE requests that reached the server.
    pub writes: AtomicU64,
    /// OPENs and CREATEs answered with a kernel passthrough backing id.
    pub passthrough_opens: AtomicU64,
    /// Backing ids registered (`FUSE_DEV_IOC_BACKING_OPEN`), one per node open at once.
    pub backing_opened: AtomicU64,
    /// Backing ids closed at the release of their node's last open file.
    pub backing_closed: AtomicU64,
    /// Files opened on a memory filesystem, read and written with `pread`/`pwrite`.
    pub direct_files: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A counter's value.
pub(crate) fn count(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A table's lock. A loop that panicked while holding it left it consistent for what the
/// others do with it (every update is one call on the table), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How an open file's data is read and written, chosen by its filesystem (once per
/// backing device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileIo {
    /// On the loop's ring: io_uring does a READ of cached data inline and sends the rest to
    /// an io-wq worker, so a read from a device delays only its own request.
    Ring,
    /// On a FUSE filesystem: READ, WRITE and CLOSE go to io-wq at once (`IOSQE_ASYNC`).
    /// io_uring would otherwise try them inline, and FUSE's `direct_io` path waits for
    /// its server inside the loop's own `io_uring_enter`.
    Punt,
    /// On a memory filesystem (tmpfs, ramfs): `pread`/`pwrite` from the loop. Their data
    /// never waits for a device, and io_uring cannot read them without blocking (shmem
    /// has no `IOCB_NOWAIT` reads: every READ went to an io-wq worker, a thread hop each —
    /// and with one loop per CPU, a worker pinned to the loop's own CPU).
    Direct,
}

/// An open file: the backing descriptor, its node, and whether it was opened with kernel
/// passthrough (then it holds one reference to its node's backing id).
#[derive(Debug)]
struct File {
    fd: OwnedFd,
    node: u64,
    passthrough: bool,
    io: FileIo,
}

impl File {
    fn sqe_flags(&self) -> IoringSqeFlags {
        if self.io == FileIo::Punt {
            IoringSqeFlags::ASYNC
        } else {
            IoringSqeFlags::empty()
        }
    }
}

/// Who a new inode is for, when the caller is not root (the server creates as root).
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    /// `None` in a set-group-ID directory (the inode inherits the directory's group).
    gid: Option<u32>,
}

/// The filesystem, as one loop serves it: the tables are shared with the other loops'
/// values ([`Passthrough::for_another_loop`]), the buffers are this loop's.
pub(crate) struct Passthrough {
    nodes: Arc<Mutex<Nodes>>,
    files: Arc<Mutex<Handles<Arc<File>>>>,
    dirs: Arc<Mutex<Handles<Arc<OwnedFd>>>>,
    /// `/proc/self/fd`, to reopen a node's descriptor with real access modes.
    procfd: Arc<OwnedFd>,
    ttl: Duration,
    metadata: Metadata,
    kernel: Arc<Mutex<KernelPassthrough>>,
    backing: Arc<Mutex<Backings>>,
    /// How each backing device's files are read and written (learnt once per device).
    dev_io: Arc<Mutex<HashMap<u64, FileIo>>>,
    /// READDIR's `getdents64` buffer and the xattr value buffer.
    dirbuf: RefCell<Vec<MaybeUninit<u8>>>,
    xbuf: RefCell<Vec<u8>>,
    counters: Arc<Counters>,
}

/// A `rustix` error as a FUSE errno.
fn errno(e: rustix::io::Errno) -> Errno {
    Errno::new_or_eio(e.raw_os_error())
}

/// A name from the kernel, checked: one path component, never `.` or `..` (the kernel
/// sends neither, but nothing may walk out of a directory through this server).
pub(crate) fn check_name(name: &CStr) -> Result<&CStr, Errno> {
    match name.to_bytes() {
        b"" | b"." | b".." => Err(Errno::EINVAL),
        n if n.contains(&b'/') => Err(Errno::EINVAL),
        _ => Ok(name),
    }
}

/// `new_encode_dev`: the device number as `struct fuse_attr::rdev` carries it.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// The inverse of [`encode_dev`].
fn decode_dev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

/// The attributes of a `statx` answer.
fn attr_of(st: &Statx) -> Attr {
    let t = |ts: &rustix::fs::StatxTimestamp| Timestamp::new(ts.tv_sec, ts.tv_nsec);
    let mut a = Attr::new(st.stx_ino, FileType::RegularFile, 0, t(&st.stx_mtime));
    a.mode = u32::from(st.stx_mode);
    a.size = st.stx_size;
    a.blocks = st.stx_blocks;
    a.atime = t(&st.stx_atime);
    a.ctime = t(&st.stx_ctime);
    a.nlink = st.stx_nlink;
    a.uid = st.stx_uid;
    a.gid = st.stx_gid;
    a.rdev = encode_dev(st.stx_rdev_major, st.stx_rdev_minor);
    a.blksize = st.stx_blksize;
    a
}

/// The `(st_dev, st_ino)` key of a `statx` answer.
fn key_of(st: &Statx) -> (u64, u64) {
    (
        rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        st.stx_ino,
    )
}

/// How files of device `dev` are read and written, from the filesystem type
/// `/proc/self/mountinfo` gives it (a read of procfs: nothing is asked of the backing
/// filesystem itself, which for FUSE or NFS could mean waiting for its server).
fn file_io(dev: u64) -> FileIo {
    std::fs::read_to_string("/proc/self/mountinfo").map_or(FileIo::Ring, |text| {
        io_for_fstype(fstype_in_mountinfo(&text, dev))
    })
}

/// [`FileIo`] for a filesystem type as mountinfo names it.
fn io_for_fstype(fstype: Option<&str>) -> FileIo {
    match fstype {
        Some("fuse" | "fuseblk") => FileIo::Punt,
        Some(t) if t.starts_with("fuse.") => FileIo::Punt,
        Some("tmpfs" | "ramfs") => FileIo::Direct,
        _ => FileIo::Ring,
    }
}

/// The type of the filesystem `mountinfo` (as in `/proc/self/mountinfo`: the third field
/// is `major:minor`, the first after ` - ` the type) mounts on device `dev`.
fn fstype_in_mountinfo(mountinfo: &str, dev: u64) -> Option<&str> {
    let want = format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev));
    mountinfo
        .lines()
        .filter(|line| line.split(' ').nth(2) == Some(want.as_str()))
        .find_map(|line| line.split_once(" - ")?.1.split(' ').next())
}

/// Whether the filesystem holding `fd` may take long for metadata: FUSE and the network
/// filesystems (`statfs` magic numbers).
pub(crate) fn slow_filesystem(fd: BorrowedFd<'_>) -> bool {
    const SLOW: [i64; 9] = [
        0x6573_5546, // FUSE
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x00c3_6400, // Ceph
        0x0102_1997, // 9P
        0x5346_414f, // AFS
        0x6b41_4653, // kAFS
    ];
    rustix::fs::fstatfs(fd).is_ok_and(|s| SLOW.contains(&s.f_type))
}

/// The `d_type` of a `getdents64` entry (`DT_* = S_IF* >> 12`; `DT_UNKNOWN` = 0).
fn dtype(t: rustix::fs::FileType) -> u8 {
    match t {
        rustix::fs::FileType::Unknown => 0,
        t => (t.as_raw_mode() >> 12) as u8,
    }
}

/// Open flags for the backing file: the caller's, without the ones the server cannot or
/// need not honour: `O_DIRECT` needs aligned buffers; the kernel already did `O_CREAT`,
/// `O_EXCL` and `O_NOCTTY` (and `O_TRUNC`, or sends it as SETATTR); it also resolved the
/// path, so `O_NOFOLLOW` (which `cp -a` passes) would only make the reopen through the
/// `/proc/self/fd/N` magic link fail with ELOOP; and the kernel's `__FMODE_EXEC` mark of an
/// `execve(2)` is no open flag at all (`openat2` answered it EINVAL: no binary on the mount
/// could run).
fn backing_flags(flags: u32) -> OFlags {
    OFlags::from_bits_retain(flags & !ringfuse::OpenFlags::EXEC.bits()).difference(
        OFlags::DIRECT | OFlags::NOCTTY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
    )
}

/// `prefix` then the number of descriptor `fd`, NUL-terminated, in `buf`: its name in
/// `/proc/self/fd` (`prefix` empty), or its path there (for the path-only xattr calls).
fn fd_name<'b>(buf: &'b mut [u8; 32], prefix: &str, fd: BorrowedFd<'_>) -> &'b CStr {
    use std::io::Write as _;
    let raw = rustix::fd::AsRawFd::as_raw_fd(&fd);
    let mut w = &mut buf[..];
    let _ = write!(w, "{prefix}{raw}\0");
    CStr::from_bytes_until_nul(buf).unwrap_or(c"")
}

/// A metadata operation: awaited on the ring, or made directly (see [`Metadata`]).
macro_rules! meta {
    ($self:ident, $ring:expr, $direct:expr) => {
        match $self.metadata {
            Metadata::Ring => $ring.await,
            Metadata::Direct => $direct.map_err(errno),
        }
    };
}

impl Passthrough {
    /// A filesystem over `root` (an `O_PATH` descriptor of the source directory).
    pub(crate) fn new(root: OwnedFd, opts: Options) -> std::io::Result<Self> {
        let procfd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            nodes: Arc::new(Mutex::new(Nodes::new(root, 1024))),
            files: Arc::new(Mutex::new(Handles::with_capacity(256))),
            dirs: Arc::new(Mutex::new(Handles::with_capacity(64))),
            procfd: Arc::new(procfd),
            ttl: opts.ttl,
            metadata: opts.metadata,
            kernel: Arc::new(Mutex::new(if opts.passthrough {
                KernelPassthrough::Asked
            } else {
                KernelPassthrough::Off
            })),
            backing: Arc::new(Mutex::new(Backings::default())),
            dev_io: Arc::new(Mutex::new(HashMap::new())),
            dirbuf: RefCell::new(vec![MaybeUninit::new(0); 8192]),
            xbuf: RefCell::new(vec![0; XATTR_SIZE_MAX]),
            counters: Arc::new(Counters::default()),
        })
    }

    /// The value another loop serves: the same tables, buffers of its own.
    pub(crate) fn for_another_loop(&self) -> Self {
        Self {
            nodes: Arc::clone(&self.nodes),
            files: Arc::clone(&self.files),
            dirs: Arc::clone(&self.dirs),
            procfd: Arc::clone(&self.procfd),
            ttl: self.ttl,
            metadata: self.metadata,
            kernel: Arc::clone(&self.kernel),
            backing: Arc::clone(&self.backing),
            dev_io: Arc::clone(&self.dev_io),
            dirbuf: RefCell::new(vec![MaybeUninit::new(0); 8192]),
            xbuf: RefCell::new(vec![0; XATTR_SIZE_MAX]),
            counters: Arc::clone(&self.counters),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn kernel_passthrough(&self) -> KernelPassthrough {
        *lock(&self.kernel)
    }

    /// Backing ids still registered (at exit: opens the kernel never released).
    pub(crate) fn backing_ids(&self) -> usize {
        lock(&self.backing).len()
    }

    fn node(&self, id: NodeId) -> Result<Arc<OwnedFd>, Errno> {
        lock(&self.nodes).fd(id.0).ok_or(Errno::ENOENT)
    }

    fn file(&self, fh: u64) -> Result<Arc<File>, Errno> {
        lock(&self.files).get(fh).cloned().ok_or(Errno::EBADF)
    }

    fn entry(&self, node: u64, generation: u64, attr: Attr) -> Entry {
        Entry {
            node: NodeId(node),
            generation,
            attr,
            entry_ttl: self.ttl,
            attr_ttl: self.ttl,
        }
    }

    // ---- backing operations ----------------------------------------------------------

    /// `openat2(dir, name, flags | O_CLOEXEC, mode)` confined to `dir`'s tree:
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (no `..` out of it, no symlink followed,
    /// magic links included; with `O_PATH | O_NOFOLLOW` a trailing symlink is opened
    /// itself).
    async fn open_beneath(
        &self,
        cx: &AsyncCx,
        dir: BorrowedFd<'_>,
        name: &CStr,
        flags: OFlags,
        mode: u32,
    ) -> Result<OwnedFd, Errno> {
        let (flags, mode) = (flags | OFlags::CLOEXEC, Mode::from_raw_mode(mode & 0o7777));
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        meta!(
            self,
            cx.openat2(dir, name, flags, mode, resolve),
            rustix::fs::openat2(dir, name, flags, mode, resolve)
        )
    }

    /// Reopens `fd` (a node, or an open file) through `/proc/self/fd/N` with real access
    /// `flags`. The magic link leads to the very inode `fd` holds: this stays in the tree.
    async fn reopen(
        &self,
        cx: &AsyncCx,
        fd: BorrowedFd<'_>,
        flags: OFlags,
    ) -> Result<OwnedFd, Errno> {
        let mut buf = [0; 32];
        let name = fd_name(&mut buf, "", fd);
        let (proc, flags) = (self.procfd.as_fd(), flags | OFlags::CLOEXEC);
        let none = ResolveFlags::empty();
        meta!(
            self,
            cx.openat2(proc, name, flags, Mode::empty(), none),
            rustix::fs::openat2(proc, name, flags, Mode::empty(), none)
        )
    }

    /// The attributes of the inode `fd` holds (a symlink itself, for a symlink node).
    async fn stat(&self, cx: &AsyncCx, fd: BorrowedFd<'_>) -> Result<Statx, Errno> {
        let flags = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
        meta!(
            self,
            cx.statx(fd, c"", flags, StatxFlags::BASIC_STATS),
            rustix::fs::statx(fd, c"", flags, StatxFlags::BASIC_STATS)
        )
    }

    async fn ftruncate(&self, cx: &AsyncCx, fd: BorrowedFd<'_>, len: u64) -> Result<(), Errno> {
        meta!(self, cx.ftruncate(fd, len), rustix::fs::ftruncate(fd, len))
    }

    /// Closes an open file: on the ring for a FUSE file (its FLUSH waits for that server)
    /// or when metadata goes through the ring, else at once.
    async fn close(&self, cx: &AsyncCx, fd: OwnedFd, punt: bool) {
        if punt || self.metadata == Metadata::Ring {
            let flags = if punt {
                IoringSqeFlags::ASYNC
            } else {
                IoringSqeFlags::empty()
            };
            let _ = cx.submit(Sqe::close(fd).flags(flags)).await;
        }
    }

    /// How the files of `node` are read and written ([`file_io`], once per backing
    /// device).
    fn io_of(&self, node: u64) -> FileIo {
        let Some(dev) = lock(&self.nodes).dev(node) else {
            return FileIo::Ring;
        };
        *lock(&self.dev_io)
            .entry(dev)
            .or_insert_with(|| file_io(dev))
    }

    /// Who a creation in `parent` is for, if not root (an `fstat` of the parent, for the
    /// non-root case only, to see whether it is set-group-ID).
    fn owner(cx: &AsyncCx, parent: BorrowedFd<'_>) -> Option<Owner> {
        if cx.uid() == 0 {
            return None;
        }
        let sgid = rustix::fs::fstat(parent).is_ok_and(|st| st.st_mode & 0o2000 != 0);
        Some(Owner {
            uid: cx.uid(),
            gid: (!sgid).then(|| cx.gid()),
        })
    }

    /// Gives a new inode to its non-root creator (`fchownat`: io_uring has no chown).
    fn chown_new(fd: BorrowedFd<'_>, owner: Option<Owner>) {
        let Some(o) = owner else { return };
        let _ = rustix::fs::chownat(
            fd,
            c"",
            Some(rustix::fs::Uid::from_raw(o.uid)),
            o.gid.map(rustix::fs::Gid::from_raw),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        );
    }

    /// LOOKUP's work, also the end of every creation: opens `dir/name` as a node
    /// (`O_PATH`), gives it to `owner`, stats it, and counts the lookup — unless the
    /// request was cancelled meanwhile (then the kernel never sees the entry).
    async fn entry_at(
        &self,
        cx: &AsyncCx,
        dir: BorrowedFd<'_>,
        name: &CStr,
        owner: Option<Owner>,
    ) -> Result<Entry, Errno> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW;
        let fd = self.open_beneath(cx, dir, name, flags, 0).await?;
        Self::chown_new(fd.as_fd(), owner);
        let st = self.stat(cx, fd.as_fd()).await?;
        if cx.is_cancelled() {
            return Err(Errno::EINTR);
        }
        let (node, generation, _extra) = lock(&self.nodes).add_lookup(fd, key_of(&st));
        Ok(self.entry(node, generation, attr_of(&st)))
    }

    /// Applies SETATTR's mode, owner and times (io_uring has no chmod, chown or
    /// utimensat).
    fn set_meta(&self, fd: BorrowedFd<'_>, set: &SetAttr) -> Result<(), Errno> {
        if let Some(mode) = set.mode {
            let mut buf = [0; 32];
            let name = fd_name(&mut buf, "", fd);
            let mode = Mode::from_raw_mode(mode & 0o7777);
            rustix::fs::chmodat(&self.procfd, name, mode, AtFlags::empty()).map_err(errno)?;
        }
        let nofollow = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
        if set.uid.is_some() || set.gid.is_some() {
            let uid = set.uid.map(rustix::fs::Uid::from_raw);
            let gid = set.gid.map(rustix::fs::Gid::from_raw);
            rustix::fs::chownat(fd, c"", uid, gid, nofollow).map_err(errno)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            let ts = |t: Option<TimeOrNow>| match t {
                None => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                Some(TimeOrNow::Now) => rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
                Some(TimeOrNow::At(t)) => rustix::fs::Timespec {
                    tv_sec: t.secs,
                    tv_nsec: i64::from(t.nsecs),
                },
            };
            let times = rustix::fs::Timestamps {
                last_access: ts(set.atime),
                last_modification: ts(set.mtime),
            };
            rustix::fs::utimensat(fd, c"", &times, nofollow).map_err(errno)?;
        }
        Ok(())
    }

    /// The kernel passthrough backing id for a new open file of `node` (`fd`), if kernel
    /// passthrough is on: the node's id if one of its files is open, else a new one
    /// registered from `fd` (an ioctl). Each `Some` is one reference, given back by
    /// [`release_backing`](Self::release_backing). `None`: serve the file through the ring.
    fn acquire_backing(&self, cx: &AsyncCx, node: u64, fd: BorrowedFd<'_>) -> Option<i32> {
        let kernel = *lock(&self.kernel);
        if !matches!(kernel, KernelPassthrough::Asked | KernelPassthrough::On) {
            return None;
        }
        // One lock across the lookup, the registration and the insert: two loops opening
        // the same node at once must not register it twice.
        let mut backing = lock(&self.backing);
        if let Some(id) = backing.acquire(node) {
            return Some(id);
        }
        match cx.backing_open(fd) {
            Ok(id) => {
                *lock(&self.kernel) = KernelPassthrough::On;
                bump(&self.counters.backing_opened);
                backing.insert(node, id);
                Some(id)
            }
            Err(e) if e == Errno::EPERM || kernel == KernelPassthrough::Asked => {
                // EPERM: not granted at INIT, or no CAP_SYS_ADMIN — it will not work for
                // any file. Another error on the first file: assume the same.
                let why = match e {
                    Errno::EPERM => {
                        "FUSE_PASSTHROUGH was not granted at INIT, or the server lacks \
                         CAP_SYS_ADMIN"
                    }
                    Errno::ELOOP => {
                        "the source directory is on a stacked filesystem (overlayfs, a \
                         passthrough FUSE mount) and max_stack_depth is 1"
                    }
                    Errno::EOPNOTSUPP => "the source's filesystem cannot back passthrough",
                    _ => "see FUSE_DEV_IOC_BACKING_OPEN",
                };
                eprintln!(
                    "passthrough: the kernel refused to register a backing file ({e:?}: \
                     {why}); kernel passthrough is off, reads and writes go through the ring"
                );
                *lock(&self.kernel) = KernelPassthrough::Refused(Some(e));
                None
            }
            // Worked before: this file's filesystem cannot back passthrough (EOPNOTSUPP)
            // or is stacked too deep (ELOOP); serve it through the ring. Every open of the
            // node gets the same answer, so the kernel never sees a node's files mix
            // passthrough and cached I/O (it would refuse that with ETXTBSY).
            Err(_) => None,
        }
    }

    /// An open file of `node` that used its backing id is released; the last one closes
    /// the id.
    fn release_backing(&self, cx: &AsyncCx, node: u64) {
        let id = lock(&self.backing).release(node);
        if let Some(id) = id {
            if cx.backing_close(id).is_ok() {
                bump(&self.counters.backing_closed);
            }
        }
    }

    /// OPEN and CREATE's end: registers the open file `fd` of `node` (and its backing id)
    /// unless the request was cancelled, which closes it instead.
    async fn add_file(&self, cx: &AsyncCx, node: u64, fd: OwnedFd) -> Result<Opened, Errno> {
        let io = self.io_of(node);
        if cx.is_cancelled() {
            self.close(cx, fd, io == FileIo::Punt).await;
            return Err(Errno::EINTR);
        }
        let backing = self.acquire_backing(cx, node, fd.as_fd());
        if io == FileIo::Direct {
            bump(&self.counters.direct_files);
        }
        let fh = lock(&self.files).insert(Arc::new(File {
            fd,
            node,
            passthrough: backing.is_some(),
            io,
        }));
        Ok(match backing {
            Some(id) => {
                bump(&self.counters.passthrough_opens);
                Opened::new(fh).passthrough(id)
            }
            None => Opened::new(fh),
        })
    }

    /// UNLINK and RMDIR.
    async fn remove(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        flags: AtFlags,
    ) -> Result<(), Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        meta!(
            self,
            cx.unlinkat(dir.as_fd(), name, flags),
            rustix::fs::unlinkat(&*dir, name, flags)
        )
    }
}

impl AsyncFilesystem for Passthrough {
    fn init(&self, cfg: &mut InitConfig) -> Result<(), Errno> {
        // Without it the kernel sends one O_DIRECT READ or WRITE of a file at a time and
        // waits for its answer, whatever the reader's queue depth (libfuse asks for it by
        // default too).
        cfg.want |= InitFlags::ASYNC_DIO;
        if *lock(&self.kernel) == KernelPassthrough::Asked {
            if cfg.offered.contains(InitFlags::PASSTHROUGH) {
                // The kernel grants passthrough only with a stack depth of 1 or 2 and
                // without writeback caching. 1: the backing files sit on a filesystem
                // that is not itself stacked (overlayfs, another passthrough FUSE) — and
                // this mount can still back one more level.
                cfg.want |= InitFlags::PASSTHROUGH;
                cfg.want = cfg.want.difference(InitFlags::WRITEBACK_CACHE);
                cfg.max_stack_depth = 1;
            } else {
                eprintln!(
                    "passthrough: the kernel does not offer FUSE_PASSTHROUGH \
                     (CONFIG_FUSE_PASSTHROUGH, Linux 6.9+); reads and writes go through the ring"
                );
                *lock(&self.kernel) = KernelPassthrough::Refused(None);
            }
        }
        Ok(())
    }

    fn destroy(&self) {
        // Nothing is in flight any more; backing ids go with the connection.
        lock(&self.files).drain().for_each(drop);
        lock(&self.dirs).drain().for_each(drop);
    }

    async fn lookup(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        self.entry_at(cx, dir.as_fd(), name, None).await
    }

    fn forget(&self, node: NodeId, nlookup: u64) {
        lock(&self.nodes).forget(node.0, nlookup);
    }

    async fn getattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        _fh: Option<u64>,
    ) -> Result<(Attr, Duration), Errno> {
        let fd = self.node(node)?;
        let st = self.stat(cx, fd.as_fd()).await?;
        Ok((attr_of(&st), self.ttl))
    }

    async fn setattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        set: &SetAttr,
    ) -> Result<(Attr, Duration), Errno> {
        let fd = self.node(node)?;
        if let Some(size) = set.size {
            // Truncate first (it changes mtime): the open file if the kernel named one,
            // else the node reopened for writing.
            if let Some(file) = set.fh.and_then(|fh| self.file(fh).ok()) {
                self.ftruncate(cx, file.fd.as_fd(), size).await?;
            } else {
                let w = self.reopen(cx, fd.as_fd(), OFlags::WRONLY).await?;
                let r = self.ftruncate(cx, w.as_fd(), size).await;
                let punt = self.io_of(node.0) == FileIo::Punt;
                self.close(cx, w, punt).await;
                r?;
            }
        }
        self.set_meta(fd.as_fd(), set)?;
        let st = self.stat(cx, fd.as_fd()).await?;
        Ok((attr_of(&st), self.ttl))
    }

    async fn readlink(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        mut buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        // io_uring has no readlink; the target goes straight into the reply.
        let fd = self.node(node)?;
        rustix::fs::readlinkat_raw(&*fd, c"", buf.bytes_mut()).map_err(errno)
    }

    async fn symlink(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
    ) -> Result<Entry, Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        let owner = Self::owner(cx, dir.as_fd());
        meta!(
            self,
            cx.symlinkat(target, dir.as_fd(), name),
            rustix::fs::symlinkat(target, &*dir, name)
        )?;
        self.entry_at(cx, dir.as_fd(), name, owner).await
    }

    async fn mknod(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        let owner = Self::owner(cx, dir.as_fd());
        let file_type = match FileType::from_mode(mode) {
            Some(FileType::RegularFile) => {
                let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
                let fd = self
                    .open_beneath(cx, dir.as_fd(), name, flags, mode)
                    .await?;
                self.close(cx, fd, false).await;
                return self.entry_at(cx, dir.as_fd(), name, owner).await;
            }
            Some(FileType::NamedPipe) => rustix::fs::FileType::Fifo,
            Some(FileType::Socket) => rustix::fs::FileType::Socket,
            Some(FileType::CharDevice) => rustix::fs::FileType::CharacterDevice,
            Some(FileType::BlockDevice) => rustix::fs::FileType::BlockDevice,
            _ => return Err(Errno::EINVAL),
        };
        // io_uring has no mknod.
        let (major, minor) = decode_dev(rdev);
        let (perm, dev) = (
            Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::makedev(major, minor),
        );
        rustix::fs::mknodat(&*dir, name, file_type, perm, dev).map_err(errno)?;
        self.entry_at(cx, dir.as_fd(), name, owner).await
    }

    async fn mkdir(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
    ) -> Result<Entry, Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        let owner = Self::owner(cx, dir.as_fd());
        let mode = Mode::from_raw_mode(mode & 0o7777);
        meta!(
            self,
            cx.mkdirat(dir.as_fd(), name, mode),
            rustix::fs::mkdirat(&*dir, name, mode)
        )?;
        self.entry_at(cx, dir.as_fd(), name, owner).await
    }

    async fn unlink(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<(), Errno> {
        self.remove(cx, parent, name, AtFlags::empty()).await
    }

    async fn rmdir(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<(), Errno> {
        self.remove(cx, parent, name, AtFlags::REMOVEDIR).await
    }

    async fn rename(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: ringfuse::RenameFlags,
    ) -> Result<(), Errno> {
        let (name, newname) = (check_name(name)?, check_name(newname)?);
        let (old, new) = (self.node(parent)?, self.node(newparent)?);
        let flags = RenameFlags::from_bits_retain(flags.bits());
        meta!(
            self,
            cx.renameat(old.as_fd(), name, new.as_fd(), newname, flags),
            rustix::fs::renameat_with(&*old, name, &*new, newname, flags)
        )
    }

    async fn link(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
    ) -> Result<Entry, Errno> {
        let newname = check_name(newname)?;
        let (fd, dir) = (self.node(node)?, self.node(newparent)?);
        let flags = AtFlags::EMPTY_PATH;
        meta!(
            self,
            cx.linkat(fd.as_fd(), c"", dir.as_fd(), newname, flags),
            rustix::fs::linkat(&*fd, c"", &*dir, newname, flags)
        )?;
        self.entry_at(cx, dir.as_fd(), newname, None).await
    }

    async fn open(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        let fd = self.node(node)?;
        let file = self
            .reopen(cx, fd.as_fd(), backing_flags(flags.bits()))
            .await?;
        self.add_file(cx, node.0, file).await
    }

    async fn read(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        offset: u64,
        buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        bump(&self.counters.reads);
        let f = self.file(fh)?;
        // Straight into the reply buffer: no copy.
        if f.io == FileIo::Direct {
            let mut buf = buf;
            return rustix::io::pread(&f.fd, buf.bytes_mut(), offset).map_err(errno);
        }
        let (r, _) = cx
            .read_at_with(f.fd.as_fd(), buf, offset, f.sqe_flags())
            .await;
        r
    }

    async fn write(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        offset: u64,
        data: WriteBuf<'_>,
        _write_flags: u32,
        _flags: u32,
    ) -> Result<u32, Errno> {
        bump(&self.counters.writes);
        let f = self.file(fh)?;
        // Straight from the request's buffer: no copy.
        if f.io == FileIo::Direct {
            let n = rustix::io::pwrite(&f.fd, &data, offset).map_err(errno)?;
            return Ok(u32::try_from(n).unwrap_or(u32::MAX));
        }
        let n = cx
            .write_at_with(f.fd.as_fd(), &data, offset, f.sqe_flags())
            .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn release(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        _flags: u32,
        _release_flags: u32,
        _lock_owner: u64,
    ) -> Result<(), Errno> {
        let file = lock(&self.files).remove(fh).ok_or(Errno::EBADF)?;
        if file.passthrough {
            self.release_backing(cx, file.node);
        }
        // A request still using the file (one interrupted on the classic transport, whose
        // future ends later) closes it when it ends.
        if let Ok(file) = Arc::try_unwrap(file) {
            self.close(cx, file.fd, file.io == FileIo::Punt).await;
        }
        Ok(())
    }

    async fn fsync(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        datasync: bool,
    ) -> Result<(), Errno> {
        let f = self.file(fh)?;
        cx.fsync(f.fd.as_fd(), datasync).await
    }

    async fn opendir(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        let fd = self.node(node)?;
        let dir = self
            .reopen(cx, fd.as_fd(), OFlags::RDONLY | OFlags::DIRECTORY)
            .await?;
        if cx.is_cancelled() {
            return Err(Errno::EINTR);
        }
        Ok(Opened::new(lock(&self.dirs).insert(Arc::new(dir))))
    }

    async fn readdir(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        offset: u64,
        out: &mut DirFill<'_>,
    ) -> Result<(), Errno> {
        // io_uring has no getdents: one lseek to the kernel's cookie (the backing d_off),
        // then getdents64. Each entry's type is the backing d_type as it is (DT_UNKNOWN
        // too: the caller's kernel then asks with LOOKUP), so no entry costs a stat.
        // The kernel sends one READDIR of an open directory at a time (the reader holds its
        // file position lock), so no other loop seeks this descriptor meanwhile.
        let dfd = lock(&self.dirs).get(fh).cloned().ok_or(Errno::EBADF)?;
        rustix::fs::seek(&dfd, rustix::fs::SeekFrom::Start(offset)).map_err(errno)?;
        let mut buf = self.dirbuf.borrow_mut();
        let mut raw = rustix::fs::RawDir::new(&dfd, &mut buf[..]);
        while let Some(Ok(e)) = raw.next() {
            let name = e.file_name().to_bytes();
            let kind = dtype(e.file_type());
            if !matches!(
                out.add_dtype(e.ino(), e.next_entry_cookie(), kind, name),
                Ok(ringfuse::reply::DirAdd::Added)
            ) {
                break;
            }
        }
        Ok(())
    }

    async fn releasedir(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        _flags: u32,
    ) -> Result<(), Errno> {
        lock(&self.dirs).remove(fh).map(drop).ok_or(Errno::EBADF)
    }

    async fn fsyncdir(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        datasync: bool,
    ) -> Result<(), Errno> {
        let fd = lock(&self.dirs).get(fh).cloned().ok_or(Errno::EBADF)?;
        cx.fsync(fd.as_fd(), datasync).await
    }

    async fn statfs(&self, _cx: &AsyncCx, _node: NodeId) -> Result<Statfs, Errno> {
        // io_uring has no statfs.
        let root = self.node(NodeId(ROOT))?;
        let s = rustix::fs::fstatvfs(&*root).map_err(errno)?;
        Ok(Statfs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: u32::try_from(s.f_bsize).unwrap_or(u32::MAX),
            namelen: u32::try_from(s.f_namemax).unwrap_or(255),
            frsize: u32::try_from(s.f_frsize).unwrap_or(u32::MAX),
        })
    }

    // Extended attributes: path calls on `/proc/self/fd/N` (a node's descriptor is
    // `O_PATH`, which the `f*xattr` calls refuse), made directly.

    async fn setxattr(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let mut buf = [0; 32];
        let path = fd_name(&mut buf, PROC_FD, self.node(node)?.as_fd());
        let flags = XattrFlags::from_bits_retain(flags);
        rustix::fs::setxattr(path, name, value, flags).map_err(errno)
    }

    async fn getxattr(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        name: &CStr,
        out: &mut XattrOut<'_>,
    ) -> Result<(), Errno> {
        let mut buf = [0; 32];
        let path = fd_name(&mut buf, PROC_FD, self.node(node)?.as_fd());
        let mut value = self.xbuf.borrow_mut();
        let n = rustix::fs::getxattr(path, name, &mut value[..]).map_err(errno)?;
        out.set(value.get(..n).unwrap_or_default());
        Ok(())
    }

    async fn listxattr(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        out: &mut XattrOut<'_>,
    ) -> Result<(), Errno> {
        let mut buf = [0; 32];
        let path = fd_name(&mut buf, PROC_FD, self.node(node)?.as_fd());
        let mut value = self.xbuf.borrow_mut();
        let n = rustix::fs::listxattr(path, &mut value[..]).map_err(errno)?;
        out.set(value.get(..n).unwrap_or_default());
        Ok(())
    }

    async fn removexattr(&self, _cx: &AsyncCx, node: NodeId, name: &CStr) -> Result<(), Errno> {
        let mut buf = [0; 32];
        let path = fd_name(&mut buf, PROC_FD, self.node(node)?.as_fd());
        rustix::fs::removexattr(path, name).map_err(errno)
    }

    async fn create(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        flags: ringfuse::OpenFlags,
    ) -> Result<(Entry, Opened), Errno> {
        let name = check_name(name)?;
        let dir = self.node(parent)?;
        let owner = Self::owner(cx, dir.as_fd());
        // O_NOFOLLOW: never create through a symlink (RESOLVE_NO_SYMLINKS refuses it too).
        let flags = backing_flags(flags.bits()) | OFlags::CREATE | OFlags::NOFOLLOW;
        let file = self
            .open_beneath(cx, dir.as_fd(), name, flags, mode)
            .await?;
        Self::chown_new(file.as_fd(), owner);
        // The node: an O_PATH reopen of the very file (not O_NOFOLLOW: that would open
        // the magic link itself).
        let path = self.reopen(cx, file.as_fd(), OFlags::PATH).await;
        let st = match path {
            Ok(path) => self.stat(cx, path.as_fd()).await.map(|st| (path, st)),
            Err(e) => Err(e),
        };
        let (path, st) = match st {
            Ok(v) if !cx.is_cancelled() => v,
            other => {
                self.close(cx, file, false).await;
                return Err(other.err().unwrap_or(Errno::EINTR));
            }
        };
        let (node, generation, _extra) = lock(&self.nodes).add_lookup(path, key_of(&st));
        let opened = self.add_file(cx, node, file).await;
        Ok((self.entry(node, generation, attr_of(&st)), opened?))
    }

    async fn fallocate(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        let f = self.file(fh)?;
        let mode = FallocateFlags::from_bits_retain(mode);
        cx.fallocate(f.fd.as_fd(), mode, offset, length).await
    }

    async fn lseek(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        fh: u64,
        offset: u64,
        whence: u32,
    ) -> Result<u64, Errno> {
        // io_uring has no lseek (only SEEK_DATA and SEEK_HOLE come here). The position it
        // moves is not used: reads and writes carry their offsets.
        let f = self.file(fh)?;
        let pos = match whence {
            3 => rustix::fs::SeekFrom::Data(offset),
            4 => rustix::fs::SeekFrom::Hole(offset),
            _ => return Err(Errno::EINVAL),
        };
        rustix::fs::seek(&f.fd, pos).map_err(errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        assert!(check_name(c"a").is_ok());
        for bad in [c"", c".", c"..", c"a/b", c"/"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (8, 1), (259, 3), (4095, 1_048_575)] {
            assert_eq!(decode_dev(encode_dev(major, minor)), (major, minor));
        }
    }

    #[test]
    fn file_io_follows_the_type_in_mountinfo() {
        let text = "36 25 0:61 / /mnt/a rw - fuse.memfs memfs rw\n\
                    37 25 0:62 / /mnt/b rw - fuse /dev/fuse rw\n\
                    38 25 0:63 / /tmp rw - tmpfs tmpfs rw\n\
                    39 25 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";
        let io = |major, minor| {
            io_for_fstype(fstype_in_mountinfo(text, rustix::fs::makedev(major, minor)))
        };
        assert_eq!(io(0, 61), FileIo::Punt);
        assert_eq!(io(0, 62), FileIo::Punt);
        assert_eq!(io(0, 63), FileIo::Direct, "tmpfs");
        assert_eq!(io(8, 1), FileIo::Ring, "ext4");
        assert_eq!(io(0, 99), FileIo::Ring, "not in mountinfo");
    }

    #[test]
    fn descriptor_names() {
        let f = std::fs::File::open("/").unwrap();
        let mut buf = [0; 32];
        let raw = rustix::fd::AsRawFd::as_raw_fd(&f);
        assert_eq!(
            fd_name(&mut buf, "", f.as_fd()).to_str(),
            Ok(&*raw.to_string())
        );
        let path = fd_name(&mut buf, PROC_FD, f.as_fd())
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(path, format!("/proc/self/fd/{raw}"));
    }

    #[test]
    fn local_and_slow_filesystems() {
        let root = std::fs::File::open("/proc").unwrap();
        assert!(!slow_filesystem(root.as_fd()), "procfs is local");
    }

    #[test]
    fn backing_flags_drop_what_the_server_cannot_honour() {
        let f = backing_flags(
            (OFlags::RDWR | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::APPEND).bits(),
        );
        assert_eq!(f, OFlags::RDWR | OFlags::APPEND);
        // An execve's OPEN: read-only plus the kernel's exec mark, which openat2 refuses.
        let exec = backing_flags(OFlags::LARGEFILE.bits() | ringfuse::OpenFlags::EXEC.bits());
        assert_eq!(exec, OFlags::LARGEFILE);
    }
}
