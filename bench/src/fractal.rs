//! The fractal-fuse 0.6 adapter: the same [`Backend`] behind fractal-fuse's async
//! `Filesystem` trait (the kernel's FUSE-over-io_uring on compio, a pinned worker per CPU by
//! default).
//!
//! What it cannot make equal to the other adapters, and so prints in its `NEGOTIATED` line
//! (the orchestrator records the difference instead of refusing the target):
//! - fractal-fuse picks its INIT flags itself: besides [`WANT`]'s it always asks
//!   `DO_READDIRPLUS | READDIRPLUS_AUTO`, `ATOMIC_O_TRUNC`, `SETXATTR_EXT` and
//!   `OVER_IO_URING`, and not `ABORT_ERROR`; so listings arrive as READDIRPLUS (answered
//!   here with the same entries plus their attributes, each counted as a LOOKUP, as the
//!   kernel counts them);
//! - `max_write`, `max_background` and `congestion_threshold` are ours (its `ReplyInit`),
//!   `max_readahead` and `time_gran` its own (the kernel's offer; 1 ns);
//! - it mounts through fusermount3 (`nosuid,nodev`, as the others);
//! - READ copies the core's bytes into its buffer, READDIR(PLUS) returns a `Vec` per
//!   request (its API), where the other adapters write in place.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fractal_fuse::{
    DirectoryEntry, DirectoryEntryPlus, ENOSYS, FileAttr, FileHandleId, FileType, Filesystem,
    FsResult, InodeId, ReplyAttr, ReplyCreate, ReplyEntry, ReplyInit, ReplyOpen, ReplyStatfs,
    Request, SetAttr, Timestamp,
};

use crate::adapters::{CONGESTION, MAX_BACKGROUND, MAX_WRITE, Negotiated, STATFS, WANT, announce};
use crate::core::{Attr, BLKSIZE, Backend, Kind, TIME_SECS};
use crate::counters::{self as c, count};

/// fractal-fuse 0.6.1's own INIT flags beyond ours (session.rs `send_init_reply`):
/// DO_READDIRPLUS (13), READDIRPLUS_AUTO (14), ATOMIC_O_TRUNC (3), SETXATTR_EXT (29),
/// OVER_IO_URING (41); it does not ask ABORT_ERROR (21).
const FRACTAL_FLAGS: u64 =
    ((WANT & !(1 << 21)) | (1 << 3) | (1 << 13) | (1 << 14) | (1 << 29)) | (1 << 41);

/// The adapter: fractal-fuse's methods take `&self` from every worker, so the core sits
/// behind a `Mutex` (as for fuser).
pub struct FfFs<B> {
    pub core: Mutex<B>,
    pub ttl: Duration,
}

impl<B: Backend> FfFs<B> {
    fn core(&self) -> std::sync::MutexGuard<'_, B> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn time() -> Timestamp {
    Timestamp::new(TIME_SECS as u64, 0)
}

fn attr(a: &Attr) -> FileAttr {
    let kind = match a.kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    };
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks(),
        atime: time(),
        mtime: time(),
        ctime: time(),
        mode: kind.to_mode() | a.perm,
        nlink: a.nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLKSIZE,
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// The size of a `fuse_dirent` with `name` (24 bytes and the name, 8-aligned).
fn dirent_len(name: &[u8]) -> usize {
    (24 + name.len()).div_ceil(8) * 8
}

impl<B: Backend> Filesystem for FfFs<B> {
    async fn init(&self, _req: Request) -> FsResult<ReplyInit> {
        let n = Negotiated {
            minor: 45,
            kernel_minor: 45,
            flags: format!("{FRACTAL_FLAGS:#x}"),
            max_write: MAX_WRITE,
            max_pages: MAX_WRITE / 4096,
            max_readahead: 0,
            max_background: MAX_BACKGROUND,
            congestion_threshold: CONGESTION,
            time_gran_ns: 1,
            ttl_ms: self.ttl.as_millis() as u64,
            readdir: "READDIRPLUS".into(),
            statx: "ENOSYS".into(),
            fopen_flags: 0,
        };
        announce(&n);
        Ok(ReplyInit {
            max_write: MAX_WRITE,
            max_readahead: 128 * 1024,
            max_background: MAX_BACKGROUND,
            congestion_threshold: CONGESTION,
        })
    }

    async fn lookup(&self, _: Request, parent: InodeId, name: &OsStr) -> FsResult<ReplyEntry> {
        count(c::LOOKUP);
        let (a, generation) = self.core().lookup(parent.0, name.as_bytes())?;
        Ok(ReplyEntry {
            ttl: self.ttl,
            attr: attr(&a),
            generation,
        })
    }

    fn forget(&self, _: Request, inode: InodeId, nlookup: u64) {
        count(c::FORGET);
        self.core().forget(inode.0, nlookup);
    }

    async fn getattr(
        &self,
        _: Request,
        inode: InodeId,
        _fh: Option<FileHandleId>,
        _flags: u32,
    ) -> FsResult<ReplyAttr> {
        count(c::GETATTR);
        let a = self.core().getattr(inode.0)?;
        Ok(ReplyAttr {
            ttl: self.ttl,
            attr: attr(&a),
        })
    }

    async fn setattr(
        &self,
        _: Request,
        inode: InodeId,
        _fh: Option<FileHandleId>,
        set: SetAttr,
    ) -> FsResult<ReplyAttr> {
        count(c::SETATTR);
        let a = self.core().setattr(inode.0, set.size, set.mode)?;
        Ok(ReplyAttr {
            ttl: self.ttl,
            attr: attr(&a),
        })
    }

    async fn open(&self, _: Request, inode: InodeId, _flags: u32) -> FsResult<ReplyOpen> {
        count(c::OPEN);
        self.core().open(inode.0, false)?;
        Ok(ReplyOpen {
            fh: FileHandleId(0),
            flags: 0,
            backing_id: 0,
        })
    }

    async fn read(
        &self,
        _: Request,
        inode: InodeId,
        _fh: FileHandleId,
        offset: u64,
        buf: &mut [u8],
    ) -> FsResult<usize> {
        count(c::READ);
        let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut core = self.core();
        let data = core.read(inode.0, offset, size)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    async fn write(
        &self,
        _: Request,
        inode: InodeId,
        _fh: FileHandleId,
        offset: u64,
        data: &[u8],
        _write_flags: u32,
        _flags: u32,
    ) -> FsResult<usize> {
        count(c::WRITE);
        let n = self.core().write(inode.0, offset, data)?;
        Ok(n as usize)
    }

    async fn flush(&self, _: Request, _: InodeId, _: FileHandleId, _: u64) -> FsResult<()> {
        count(c::FLUSH);
        Ok(())
    }

    async fn release(
        &self,
        _: Request,
        _: InodeId,
        _: FileHandleId,
        _: u32,
        _: u64,
        _: bool,
        _: bool,
    ) -> FsResult<()> {
        count(c::RELEASE);
        Ok(())
    }

    async fn fsync(&self, _: Request, _: InodeId, _: FileHandleId, _: bool) -> FsResult<()> {
        count(c::FSYNC);
        Ok(())
    }

    async fn opendir(&self, _: Request, inode: InodeId, _flags: u32) -> FsResult<ReplyOpen> {
        count(c::OPENDIR);
        self.core().open(inode.0, true)?;
        Ok(ReplyOpen {
            fh: FileHandleId(0),
            flags: 0,
            backing_id: 0,
        })
    }

    async fn readdir(
        &self,
        _: Request,
        inode: InodeId,
        _fh: FileHandleId,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<DirectoryEntry>> {
        count(c::READDIR);
        let mut out = Vec::new();
        let mut room = size as usize;
        self.core()
            .readdir(inode.0, offset, |child, k, cookie, name| {
                let len = dirent_len(name);
                if len > room {
                    return false;
                }
                room -= len;
                out.push(DirectoryEntry {
                    ino: child,
                    offset: cookie,
                    kind: kind(k),
                    name: name.to_vec(),
                });
                true
            })?;
        Ok(out)
    }

    async fn readdirplus(
        &self,
        _: Request,
        inode: InodeId,
        _fh: FileHandleId,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<DirectoryEntryPlus>> {
        count(c::READDIRPLUS);
        let mut listed = Vec::new();
        let mut room = size as usize;
        let mut core = self.core();
        core.readdir(inode.0, offset, |child, k, cookie, name| {
            // fuse_direntplus: a 128-byte fuse_entry_out before the dirent.
            let len = 128 + dirent_len(name);
            if len > room {
                return false;
            }
            room -= len;
            listed.push((child, k, cookie, name.to_vec()));
            true
        })?;
        let mut out = Vec::with_capacity(listed.len());
        for (child, k, cookie, name) in listed {
            // The kernel takes a lookup reference on every entry with attributes (FORGET
            // gives it back), except `.` and `..`: the core counts it as a lookup (not a
            // request: nothing is counted).
            let a = if name == b"." || name == b".." {
                core.getattr(child)?
            } else {
                core.lookup(inode.0, &name)?.0
            };
            out.push(DirectoryEntryPlus {
                ino: child,
                offset: cookie,
                kind: kind(k),
                name,
                entry_ttl: self.ttl,
                attr: attr(&a),
                generation: 0,
            });
        }
        Ok(out)
    }

    async fn releasedir(&self, _: Request, _: InodeId, _: FileHandleId, _: u32) -> FsResult<()> {
        count(c::RELEASEDIR);
        Ok(())
    }

    async fn fsyncdir(&self, _: Request, _: InodeId, _: FileHandleId, _: bool) -> FsResult<()> {
        count(c::FSYNCDIR);
        Ok(())
    }

    async fn statfs(&self, _: Request, _: InodeId) -> FsResult<ReplyStatfs> {
        count(c::STATFS);
        Ok(ReplyStatfs {
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

    async fn access(&self, _: Request, _: InodeId, _: u32) -> FsResult<()> {
        count(c::ACCESS);
        Err(ENOSYS)
    }

    async fn create(
        &self,
        _: Request,
        parent: InodeId,
        name: &OsStr,
        mode: u32,
        _flags: u32,
    ) -> FsResult<ReplyCreate> {
        count(c::CREATE);
        let (a, generation) = self.core().create(parent.0, name.as_bytes(), mode)?;
        Ok(ReplyCreate {
            ttl: self.ttl,
            attr: attr(&a),
            generation,
            fh: FileHandleId(0),
            flags: 0,
        })
    }

    async fn mkdir(
        &self,
        _: Request,
        parent: InodeId,
        name: &OsStr,
        mode: u32,
        _umask: u32,
    ) -> FsResult<ReplyEntry> {
        count(c::MKDIR);
        let (a, generation) = self.core().mkdir(parent.0, name.as_bytes(), mode)?;
        Ok(ReplyEntry {
            ttl: self.ttl,
            attr: attr(&a),
            generation,
        })
    }

    async fn unlink(&self, _: Request, parent: InodeId, name: &OsStr) -> FsResult<()> {
        count(c::UNLINK);
        self.core().unlink(parent.0, name.as_bytes())
    }

    async fn rmdir(&self, _: Request, parent: InodeId, name: &OsStr) -> FsResult<()> {
        count(c::RMDIR);
        self.core().rmdir(parent.0, name.as_bytes())
    }
}
