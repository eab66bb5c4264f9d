//! The two thin adapters: the same [`Backend`] served by ringfuse and by fuser 0.18.
//!
//! Both answer INIT with the same flags and limits ([`WANT`], [`MAX_WRITE`],
//! [`MAX_BACKGROUND`], [`CONGESTION`], time granularity 1 ns), the same TTL on every entry
//! and attribute, plain READDIR (no READDIRPLUS), ENOSYS to STATX (ringfuse's default;
//! fuser 0.18 has no STATX method), no `FOPEN_*` flags, FLUSH/FSYNC/RELEASE succeed, and
//! the same constant STATFS. Each filesystem call counts its opcode in
//! [`crate::counters`] first. FORGET counts once per forgotten node on both sides:
//! fuser 0.18's `batch_forget` cannot be overridden (its argument type is private), so it
//! reaches `forget` once per node.

use std::ffi::{CStr, OsStr};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::{Attr, BLKSIZE, Backend, Kind, TIME_SECS};
use crate::counters::{self as c, count};

/// INIT flags both adapters answer (each intersected with what the kernel offers):
/// ASYNC_READ, BIG_WRITES, AUTO_INVAL_DATA, ASYNC_DIO, PARALLEL_DIROPS, ABORT_ERROR,
/// MAX_PAGES, INIT_EXT. fuser 0.18 always asks ASYNC_READ | BIG_WRITES | MAX_PAGES and
/// INIT_EXT itself; ringfuse's defaults are replaced by exactly this set.
pub const WANT: u64 =
    (1 << 0) | (1 << 5) | (1 << 12) | (1 << 15) | (1 << 18) | (1 << 21) | (1 << 22) | (1 << 30);
const INIT_EXT: u64 = 1 << 30;
/// Largest WRITE (and READ): 128 KiB, 32 pages.
pub const MAX_WRITE: u32 = 128 * 1024;
/// Background requests the kernel keeps in flight.
pub const MAX_BACKGROUND: u16 = 64;
/// Where the kernel starts throttling them.
pub const CONGESTION: u16 = 48;

/// What a server negotiated, printed as `NEGOTIATED {json}` and compared by the
/// orchestrator across the targets of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Negotiated {
    /// The protocol minor the server answered: fixed by each library (fuser 0.18 answers
    /// 40, ringfuse the kernel's own); reported, not compared.
    pub minor: u32,
    pub kernel_minor: u32,
    /// Flags answered (low and high words), hex.
    pub flags: String,
    pub max_write: u32,
    pub max_pages: u32,
    pub max_readahead: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub time_gran_ns: u32,
    pub ttl_ms: u64,
    pub readdir: String,
    pub statx: String,
    pub fopen_flags: u32,
}

impl Negotiated {
    /// Everything that must be equal between targets (all but the minor).
    pub fn comparable(&self) -> Negotiated {
        Negotiated {
            minor: 0,
            ..self.clone()
        }
    }
}

pub(crate) fn announce(n: &Negotiated) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "NEGOTIATED {}",
        serde_json::to_string(n).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "READY {{\"pid\":{},\"counters\":{}}}",
        std::process::id(),
        std::ptr::addr_of!(c::COUNTERS) as usize
    );
    let _ = out.flush();
}

fn ttl_of(ttl: Duration) -> u64 {
    ttl.as_millis() as u64
}

// ---------------------------------------------------------------------------------------
// ringfuse

pub mod rf {
    use super::*;
    use ringfuse::abi::flags::{FopenFlags, InitFlags};
    use ringfuse::abi::request::Forgets;
    use ringfuse::{
        Cx, Done, Entry, Errno, FileType, Filesystem, InitConfig, NodeId, ReplyAttr, ReplyCreate,
        ReplyData, ReplyDir, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
        ReplyXattr, SetAttr, Statfs, Timestamp,
    };

    /// How a ringfuse adapter reaches its core: owned (one loop, no lock) or shared
    /// behind a mutex (one loop per CPU).
    pub trait CoreHandle: Send {
        type B: Backend;
        type G<'a>: std::ops::DerefMut<Target = Self::B>
        where
            Self: 'a;
        fn lock(&mut self) -> Self::G<'_>;
    }

    /// A core owned by the one loop.
    pub struct Own<B>(pub B);

    impl<B: Backend> CoreHandle for Own<B> {
        type B = B;
        type G<'a> = &'a mut B;
        fn lock(&mut self) -> &mut B {
            &mut self.0
        }
    }

    /// A core shared by the loops of `run_per_cpu`.
    pub struct Shared<B>(pub std::sync::Arc<Mutex<B>>);

    impl<B: Backend> CoreHandle for Shared<B> {
        type B = B;
        type G<'a> = std::sync::MutexGuard<'a, B>;
        fn lock(&mut self) -> std::sync::MutexGuard<'_, B> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// The ringfuse adapter.
    pub struct RfFs<H> {
        pub core: H,
        pub ttl: Duration,
    }

    /// What the adapter announced at INIT (the session's own view is checked against it).
    pub static ANNOUNCED: std::sync::OnceLock<Negotiated> = std::sync::OnceLock::new();

    fn errno(e: i32) -> Errno {
        Errno::new_or_eio(e)
    }

    fn attr(a: &Attr) -> ringfuse::Attr {
        let kind = match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        };
        let mut r = ringfuse::Attr::new(a.ino, kind, a.perm, Timestamp::new(TIME_SECS, 0));
        r.size = a.size;
        r.blocks = a.blocks();
        r.nlink = a.nlink;
        r.blksize = BLKSIZE;
        r
    }

    impl<H: CoreHandle> RfFs<H> {
        fn entry(&self, a: &Attr, generation: u64) -> Entry {
            Entry {
                node: NodeId(a.ino),
                generation,
                attr: attr(a),
                entry_ttl: self.ttl,
                attr_ttl: self.ttl,
            }
        }
    }

    impl<H: CoreHandle> Filesystem for RfFs<H> {
        fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
            cfg.want = InitFlags(WANT);
            cfg.max_write = MAX_WRITE;
            cfg.max_background = MAX_BACKGROUND;
            cfg.congestion_threshold = CONGESTION;
            cfg.time_gran = 1;
            let flags = WANT & cfg.offered.bits();
            let n = Negotiated {
                minor: cfg
                    .kernel_minor
                    .min(ringfuse::abi::kernel::FUSE_KERNEL_MINOR_VERSION),
                kernel_minor: cfg.kernel_minor,
                flags: format!("{flags:#x}"),
                max_write: MAX_WRITE,
                max_pages: MAX_WRITE / 4096,
                max_readahead: cfg.max_readahead,
                max_background: MAX_BACKGROUND,
                congestion_threshold: CONGESTION,
                time_gran_ns: 1,
                ttl_ms: ttl_of(self.ttl),
                readdir: "READDIR".into(),
                statx: "ENOSYS".into(),
                fopen_flags: 0,
            };
            announce(&n);
            let _ = ANNOUNCED.set(n);
            Ok(())
        }

        fn lookup(
            &mut self,
            _: &mut Cx<'_>,
            parent: NodeId,
            name: &CStr,
            r: ReplyEntry<'_>,
        ) -> Done {
            count(c::LOOKUP);
            let res = self.core.lock().lookup(parent.0, name.to_bytes());
            match res {
                Ok((a, g)) => r.entry(&self.entry(&a, g)),
                Err(e) => r.error(errno(e)),
            }
        }

        fn forget(&mut self, _: &mut Cx<'_>, node: NodeId, nlookup: u64) {
            count(c::FORGET);
            self.core.lock().forget(node.0, nlookup);
        }

        fn batch_forget(&mut self, _: &mut Cx<'_>, forgets: Forgets<'_>) {
            for f in forgets {
                count(c::FORGET);
                self.core.lock().forget(f.nodeid, f.nlookup);
            }
        }

        fn getattr(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _fh: Option<u64>,
            r: ReplyAttr<'_>,
        ) -> Done {
            count(c::GETATTR);
            match self.core.lock().getattr(node.0) {
                Ok(a) => r.attr(&attr(&a), self.ttl),
                Err(e) => r.error(errno(e)),
            }
        }

        fn setattr(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            set: &SetAttr,
            r: ReplyAttr<'_>,
        ) -> Done {
            count(c::SETATTR);
            match self.core.lock().setattr(node.0, set.size, set.mode) {
                Ok(a) => r.attr(&attr(&a), self.ttl),
                Err(e) => r.error(errno(e)),
            }
        }

        fn open(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _flags: ringfuse::OpenFlags,
            r: ReplyOpen<'_>,
        ) -> Done {
            count(c::OPEN);
            match self.core.lock().open(node.0, false) {
                Ok(()) => r.opened(0, FopenFlags::EMPTY),
                Err(e) => r.error(errno(e)),
            }
        }

        fn read(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _fh: u64,
            offset: u64,
            size: u32,
            r: ReplyData<'_>,
        ) -> Done {
            count(c::READ);
            let mut core = self.core.lock();
            match core.read(node.0, offset, size) {
                Ok(data) => r.data(data),
                Err(e) => r.error(errno(e)),
            }
        }

        fn write(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _fh: u64,
            offset: u64,
            data: &[u8],
            _write_flags: u32,
            _flags: u32,
            r: ReplyWrite<'_>,
        ) -> Done {
            count(c::WRITE);
            match self.core.lock().write(node.0, offset, data) {
                Ok(n) => r.written(n),
                Err(e) => r.error(errno(e)),
            }
        }

        fn flush(&mut self, _: &mut Cx<'_>, _: NodeId, _: u64, _: u64, r: ReplyEmpty<'_>) -> Done {
            count(c::FLUSH);
            r.ok()
        }

        fn release(
            &mut self,
            _: &mut Cx<'_>,
            _: NodeId,
            _: u64,
            _: u32,
            _: u32,
            _: u64,
            r: ReplyEmpty<'_>,
        ) -> Done {
            count(c::RELEASE);
            r.ok()
        }

        fn fsync(&mut self, _: &mut Cx<'_>, _: NodeId, _: u64, _: bool, r: ReplyEmpty<'_>) -> Done {
            count(c::FSYNC);
            r.ok()
        }

        fn opendir(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _: ringfuse::OpenFlags,
            r: ReplyOpen<'_>,
        ) -> Done {
            count(c::OPENDIR);
            match self.core.lock().open(node.0, true) {
                Ok(()) => r.opened(0, FopenFlags::EMPTY),
                Err(e) => r.error(errno(e)),
            }
        }

        fn readdir(
            &mut self,
            _: &mut Cx<'_>,
            node: NodeId,
            _fh: u64,
            offset: u64,
            r: ReplyDir<'_>,
        ) -> Done {
            count(c::READDIR);
            if let Err(e) = self.core.lock().open(node.0, true) {
                return r.error(errno(e));
            }
            let mut core = self.core.lock();
            r.dir(|fill| {
                let _ = core.readdir(node.0, offset, |ino, kind, cookie, name| {
                    let t = match kind {
                        Kind::Dir => FileType::Directory,
                        Kind::File => FileType::RegularFile,
                    };
                    matches!(
                        fill.add(ino, cookie, t, name),
                        Ok(ringfuse::reply::DirAdd::Added)
                    )
                });
            })
        }

        fn releasedir(
            &mut self,
            _: &mut Cx<'_>,
            _: NodeId,
            _: u64,
            _: u32,
            r: ReplyEmpty<'_>,
        ) -> Done {
            count(c::RELEASEDIR);
            r.ok()
        }

        fn fsyncdir(
            &mut self,
            _: &mut Cx<'_>,
            _: NodeId,
            _: u64,
            _: bool,
            r: ReplyEmpty<'_>,
        ) -> Done {
            count(c::FSYNCDIR);
            r.ok()
        }

        fn statfs(&mut self, _: &mut Cx<'_>, _: NodeId, r: ReplyStatfs<'_>) -> Done {
            count(c::STATFS);
            r.statfs(&Statfs {
                blocks: STATFS.0,
                bfree: STATFS.1,
                bavail: STATFS.1,
                files: STATFS.0,
                ffree: STATFS.1,
                bsize: 4096,
                namelen: 255,
                frsize: 4096,
            })
        }

        fn getxattr(&mut self, _: &mut Cx<'_>, _: NodeId, _: &CStr, r: ReplyXattr<'_>) -> Done {
            count(c::GETXATTR);
            r.error(Errno::ENOSYS)
        }

        fn listxattr(&mut self, _: &mut Cx<'_>, _: NodeId, r: ReplyXattr<'_>) -> Done {
            count(c::LISTXATTR);
            r.error(Errno::ENOSYS)
        }

        fn access(&mut self, _: &mut Cx<'_>, _: NodeId, _: u32, r: ReplyEmpty<'_>) -> Done {
            count(c::ACCESS);
            r.error(Errno::ENOSYS)
        }

        fn create(
            &mut self,
            _: &mut Cx<'_>,
            parent: NodeId,
            name: &CStr,
            mode: u32,
            _umask: u32,
            _flags: ringfuse::OpenFlags,
            r: ReplyCreate<'_>,
        ) -> Done {
            count(c::CREATE);
            let res = self.core.lock().create(parent.0, name.to_bytes(), mode);
            match res {
                Ok((a, g)) => r.created(&self.entry(&a, g), 0, FopenFlags::EMPTY),
                Err(e) => r.error(errno(e)),
            }
        }

        fn mkdir(
            &mut self,
            _: &mut Cx<'_>,
            parent: NodeId,
            name: &CStr,
            mode: u32,
            _umask: u32,
            r: ReplyEntry<'_>,
        ) -> Done {
            count(c::MKDIR);
            let res = self.core.lock().mkdir(parent.0, name.to_bytes(), mode);
            match res {
                Ok((a, g)) => r.entry(&self.entry(&a, g)),
                Err(e) => r.error(errno(e)),
            }
        }

        fn unlink(
            &mut self,
            _: &mut Cx<'_>,
            parent: NodeId,
            name: &CStr,
            r: ReplyEmpty<'_>,
        ) -> Done {
            count(c::UNLINK);
            match self.core.lock().unlink(parent.0, name.to_bytes()) {
                Ok(()) => r.ok(),
                Err(e) => r.error(errno(e)),
            }
        }

        fn rmdir(
            &mut self,
            _: &mut Cx<'_>,
            parent: NodeId,
            name: &CStr,
            r: ReplyEmpty<'_>,
        ) -> Done {
            count(c::RMDIR);
            match self.core.lock().rmdir(parent.0, name.to_bytes()) {
                Ok(()) => r.ok(),
                Err(e) => r.error(errno(e)),
            }
        }
    }
}

/// STATFS answer of both adapters: (blocks and files, free blocks and files).
pub(crate) const STATFS: (u64, u64) = (1 << 20, 1 << 19);

// ---------------------------------------------------------------------------------------
// fuser

pub mod fu {
    use super::*;
    use fuser::{
        Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
        InitFlags, KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
        ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
        Request, TimeOrNow, WriteFlags,
    };

    /// The fuser adapter: fuser's methods take `&self` (its threads share the value), so
    /// the core sits behind a `Mutex` (uncontended with one thread).
    pub struct FuFs<B> {
        pub core: Mutex<B>,
        pub ttl: Duration,
    }

    fn errno(e: i32) -> Errno {
        Errno::from_i32(e)
    }

    fn time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(TIME_SECS as u64)
    }

    fn attr(a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.blocks(),
            atime: time(),
            mtime: time(),
            ctime: time(),
            crtime: time(),
            kind: match a.kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
            },
            perm: a.perm as u16,
            nlink: a.nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    impl<B: Backend> FuFs<B> {
        fn core(&self) -> std::sync::MutexGuard<'_, B> {
            self.core.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<B: Backend> Filesystem for FuFs<B> {
        fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
            let offered = config.capabilities().bits();
            config
                .add_capabilities(InitFlags::from_bits_retain(WANT & !INIT_EXT & offered))
                .map_err(|_| std::io::Error::other("add_capabilities"))?;
            let _ = config.set_max_write(MAX_WRITE);
            let _ = config.set_max_background(MAX_BACKGROUND);
            let _ = config.set_congestion_threshold(CONGESTION);
            let _ = config.set_time_granularity(Duration::from_nanos(1));
            let readahead = config.set_max_readahead(1).unwrap_or(0);
            // Put the kernel's offer back (set_max_readahead returns the previous value).
            let _ = config.set_max_readahead(readahead);
            // fuser answers (its defaults | ours | INIT_EXT) & offered; its defaults
            // (ASYNC_READ, BIG_WRITES, MAX_PAGES) are in WANT.
            let flags = WANT & (offered | INIT_EXT);
            let n = Negotiated {
                minor: 40,
                kernel_minor: config.kernel_abi().1,
                flags: format!("{flags:#x}"),
                max_write: MAX_WRITE,
                // fuser: (max(max_write, max_readahead) - 1) / page + 1
                max_pages: (MAX_WRITE.max(readahead) - 1) / 4096 + 1,
                max_readahead: readahead,
                max_background: MAX_BACKGROUND,
                congestion_threshold: CONGESTION,
                time_gran_ns: 1,
                ttl_ms: ttl_of(self.ttl),
                readdir: "READDIR".into(),
                statx: "ENOSYS".into(),
                fopen_flags: 0,
            };
            announce_negotiated(&n);
            Ok(())
        }

        fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            count(c::LOOKUP);
            match self.core().lookup(parent.0, name.as_bytes()) {
                Ok((a, g)) => reply.entry(&self.ttl, &attr(&a), Generation(g)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn forget(&self, _: &Request, ino: INodeNo, nlookup: u64) {
            count(c::FORGET);
            self.core().forget(ino.0, nlookup);
        }

        fn getattr(&self, _: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            count(c::GETATTR);
            match self.core().getattr(ino.0) {
                Ok(a) => reply.attr(&self.ttl, &attr(&a)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn setattr(
            &self,
            _: &Request,
            ino: INodeNo,
            mode: Option<u32>,
            _uid: Option<u32>,
            _gid: Option<u32>,
            size: Option<u64>,
            _atime: Option<TimeOrNow>,
            _mtime: Option<TimeOrNow>,
            _ctime: Option<SystemTime>,
            _fh: Option<FileHandle>,
            _crtime: Option<SystemTime>,
            _chgtime: Option<SystemTime>,
            _bkuptime: Option<SystemTime>,
            _flags: Option<fuser::BsdFileFlags>,
            reply: ReplyAttr,
        ) {
            count(c::SETATTR);
            match self.core().setattr(ino.0, size, mode) {
                Ok(a) => reply.attr(&self.ttl, &attr(&a)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn open(&self, _: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            count(c::OPEN);
            match self.core().open(ino.0, false) {
                Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn read(
            &self,
            _: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyData,
        ) {
            count(c::READ);
            let mut core = self.core();
            match core.read(ino.0, offset, size) {
                Ok(data) => reply.data(data),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn write(
            &self,
            _: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            data: &[u8],
            _write_flags: WriteFlags,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyWrite,
        ) {
            count(c::WRITE);
            match self.core().write(ino.0, offset, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
            count(c::FLUSH);
            reply.ok();
        }

        fn release(
            &self,
            _: &Request,
            _: INodeNo,
            _: FileHandle,
            _: OpenFlags,
            _: Option<LockOwner>,
            _: bool,
            reply: ReplyEmpty,
        ) {
            count(c::RELEASE);
            reply.ok();
        }

        fn fsync(&self, _: &Request, _: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
            count(c::FSYNC);
            reply.ok();
        }

        fn opendir(&self, _: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            count(c::OPENDIR);
            match self.core().open(ino.0, true) {
                Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn readdir(
            &self,
            _: &Request,
            ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectory,
        ) {
            count(c::READDIR);
            let mut core = self.core();
            if let Err(e) = core.open(ino.0, true) {
                return reply.error(errno(e));
            }
            let _ = core.readdir(ino.0, offset, |child, kind, cookie, name| {
                let t = match kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File => FileType::RegularFile,
                };
                // fuser's `add` returns true when the buffer is full.
                !reply.add(INodeNo(child), cookie, t, OsStr::from_bytes(name))
            });
            reply.ok();
        }

        fn releasedir(
            &self,
            _: &Request,
            _: INodeNo,
            _: FileHandle,
            _: OpenFlags,
            reply: ReplyEmpty,
        ) {
            count(c::RELEASEDIR);
            reply.ok();
        }

        fn fsyncdir(&self, _: &Request, _: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
            count(c::FSYNCDIR);
            reply.ok();
        }

        fn statfs(&self, _: &Request, _: INodeNo, reply: ReplyStatfs) {
            count(c::STATFS);
            reply.statfs(
                STATFS.0, STATFS.1, STATFS.1, STATFS.0, STATFS.1, 4096, 255, 4096,
            );
        }

        fn getxattr(&self, _: &Request, _: INodeNo, _: &OsStr, _: u32, reply: ReplyXattr) {
            count(c::GETXATTR);
            reply.error(Errno::ENOSYS);
        }

        fn listxattr(&self, _: &Request, _: INodeNo, _: u32, reply: ReplyXattr) {
            count(c::LISTXATTR);
            reply.error(Errno::ENOSYS);
        }

        fn access(&self, _: &Request, _: INodeNo, _: fuser::AccessFlags, reply: ReplyEmpty) {
            count(c::ACCESS);
            reply.error(Errno::ENOSYS);
        }

        fn create(
            &self,
            _: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            _umask: u32,
            _flags: i32,
            reply: ReplyCreate,
        ) {
            count(c::CREATE);
            match self.core().create(parent.0, name.as_bytes(), mode) {
                Ok((a, g)) => reply.created(
                    &self.ttl,
                    &attr(&a),
                    Generation(g),
                    FileHandle(0),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn mkdir(
            &self,
            _: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            _umask: u32,
            reply: ReplyEntry,
        ) {
            count(c::MKDIR);
            match self.core().mkdir(parent.0, name.as_bytes(), mode) {
                Ok((a, g)) => reply.entry(&self.ttl, &attr(&a), Generation(g)),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn unlink(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            count(c::UNLINK);
            match self.core().unlink(parent.0, name.as_bytes()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        }

        fn rmdir(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            count(c::RMDIR);
            match self.core().rmdir(parent.0, name.as_bytes()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        }
    }

    /// fuser has answered INIT only when `Session::new` returns: print just the
    /// negotiation here, READY after.
    fn announce_negotiated(n: &Negotiated) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "NEGOTIATED {}",
            serde_json::to_string(n).unwrap_or_default()
        );
        let _ = out.flush();
    }

    /// Prints READY once `Session::new` has returned.
    pub fn announce_ready() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "READY {{\"pid\":{},\"counters\":{}}}",
            std::process::id(),
            std::ptr::addr_of!(c::COUNTERS) as usize
        );
        let _ = out.flush();
    }
}
