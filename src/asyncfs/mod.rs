//! [`AsyncFilesystem`]: filesystems written with `async fn`, whose handlers do their own
//! I/O on the loop's ring and keep many requests in flight on one thread — and [`Async`],
//! which serves one on the same event loop as any [`Filesystem`](crate::Filesystem).
//!
//! ```
//! use std::ffi::CStr;
//! use std::time::Duration;
//! use ringfuse::{Async, AsyncCx, AsyncFilesystem, Attr, Entry, Errno, FileType, NodeId, ReadBuf, Timestamp};
//!
//! /// One file, `slow`, whose every read waits 1 ms on the ring (no thread sleeps).
//! struct Slow;
//!
//! const DATA: &[u8] = b"hello\n";
//!
//! fn attr(node: NodeId) -> Attr {
//!     let (kind, perm, size) = if node == NodeId::ROOT {
//!         (FileType::Directory, 0o755, 0)
//!     } else {
//!         (FileType::RegularFile, 0o444, DATA.len() as u64)
//!     };
//!     let mut a = Attr::new(node.0, kind, perm, Timestamp::now());
//!     a.size = size;
//!     a
//! }
//!
//! impl AsyncFilesystem for Slow {
//!     async fn lookup(&self, _cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
//!         if parent != NodeId::ROOT || name != c"slow" {
//!             return Err(Errno::ENOENT);
//!         }
//!         let ttl = Duration::from_secs(1);
//!         Ok(Entry { node: NodeId(2), generation: 0, attr: attr(NodeId(2)), entry_ttl: ttl, attr_ttl: ttl })
//!     }
//!
//!     async fn getattr(&self, _cx: &AsyncCx, node: NodeId, _fh: Option<u64>) -> Result<(Attr, Duration), Errno> {
//!         Ok((attr(node), Duration::from_secs(1)))
//!     }
//!
//!     async fn read(&self, cx: &AsyncCx, _node: NodeId, _fh: u64, offset: u64, mut buf: ReadBuf<'_>) -> Result<usize, Errno> {
//!         cx.sleep(Duration::from_millis(1)).await;
//!         let start = (offset as usize).min(DATA.len());
//!         Ok(buf.fill(&DATA[start..]))
//!     }
//! }
//!
//! // Served like any filesystem: `Session::new(Async::new(Slow), mountpoint, ...)`.
//! let mut h = ringfuse::testing::Harness::new(Async::new(Slow));
//! h.init().unwrap();
//! assert_eq!(h.lookup(1, c"slow").unwrap().nodeid, 2);
//! ```
//!
//! # How requests are served
//!
//! [`Async<F>`] implements [`Filesystem`](crate::Filesystem): for each request it builds the future of `F`'s
//! method in the request's slot (see the `task` module docs for how it is stored, polled
//! and woken, and the rule that keeps buffers valid), polls it once, and answers at once
//! if it is ready; otherwise it defers the request and polls the future again as its ring
//! operations complete. So a filesystem that computes its answers (memfs) pays one poll
//! per request, and one that waits (a disk, a network, a timer) keeps as many requests in
//! flight as the loop has slots, on one thread.
//!
//! # Futures live in slot memory
//!
//! Every slot gets [`AsyncFilesystem::FUTURE_BYTES`] bytes for its future (plus a header
//! with the request's [`AsyncCx`] and its operation table), allocated when the loop starts
//! and counted by [`Config::buffer_bytes_for`](crate::Config::buffer_bytes_for) and
//! [`Config::static_bytes_for`](crate::Config::static_bytes_for). A method whose future
//! needs more is a compile-time error (post-monomorphization: `cargo build`, not `cargo
//! check`) that names the size it needs; raise the limit in the impl:
//!
//! ```text
//! impl AsyncFilesystem for MyFs {
//!     const FUTURE_BYTES: usize = 8192;
//!     ...
//! }
//! ```
//!
//! A future's size is what it keeps across its `.await`s (its arguments, locals that live
//! across an await, and the futures it awaits); an operation of [`AsyncCx`] adds a few
//! dozen bytes. Keep large buffers out of futures: use the request's own buffers
//! ([`ReadBuf`], [`WriteBuf`]).
//!
//! # Interrupts and stopping
//!
//! When the kernel interrupts a request (the caller got a signal) or the session stops,
//! the operations the request's future has in flight are cancelled; the future keeps
//! running and sees them end with `ECANCELED` (or their result, if they had completed
//! first), and any operation it starts afterwards fails at once with `ECANCELED`. So its
//! own code closes what it opened, and nothing it owns goes away while the kernel may
//! still use it. It is dropped when it ends, or as soon as it has nothing in flight (a
//! future waiting on something other than the ring), and the request is answered `EINTR`
//! (`EIO` on a stop) whatever it returned: a handler that creates state the kernel must
//! learn of checks [`AsyncCx::is_cancelled`] after its last `.await` and undoes it.
#![allow(unsafe_code)]

mod adapter;
pub(crate) mod task;

pub use adapter::Async;

use core::ffi::CStr;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use crate::abi::Errno;
use crate::abi::flags::FopenFlags;
use crate::abi::request::Forgets;
use crate::api::attr::{Attr, Entry, NodeId};
use crate::api::fs::{CopyRange, InitConfig, IoctlArgs, SetAttr};
use crate::api::open_flags::{OpenFlags, RenameFlags};
use crate::api::reply::{DirFill, DirPlusFill, FileLock, Reply, Statfs, Whose, kind};
use crate::asyncfs::task::{AsyncCx, ReadBuf, WriteBuf};
use crate::state::Outcome;

/// An open file handle and how the kernel should treat the open file: the answer to OPEN,
/// OPENDIR, CREATE and TMPFILE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// The handle, passed back in every request on this open file.
    pub fh: u64,
    /// `FOPEN_*` flags ([`FopenFlags::KEEP_CACHE`], `DIRECT_IO`, ...).
    pub flags: FopenFlags,
    /// A kernel passthrough backing id ([`AsyncCx::backing_open`]): reads and writes then
    /// go straight to the backing file (`FOPEN_PASSTHROUGH` is added).
    pub backing_id: Option<i32>,
}

impl Opened {
    /// Handle `fh`, no flags.
    pub const fn new(fh: u64) -> Self {
        Self {
            fh,
            flags: FopenFlags::EMPTY,
            backing_id: None,
        }
    }

    /// With `FOPEN_*` flags.
    #[must_use]
    pub const fn flags(mut self, flags: FopenFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Backed by the passthrough file `backing_id`.
    #[must_use]
    pub const fn passthrough(mut self, backing_id: i32) -> Self {
        self.backing_id = Some(backing_id);
        self
    }
}

/// The answer to GETXATTR and LISTXATTR being filled: [`set`](Self::set) the value (or the
/// NUL-terminated list of names); the size query (`size() == 0`) and `ERANGE` are handled
/// as the kernel expects.
pub struct XattrOut<'t> {
    pub(super) ptr: NonNull<u8>,
    pub(super) full: usize,
    pub(super) limit: u32,
    pub(super) result: Option<Result<usize, Errno>>,
    pub(super) _buf: PhantomData<&'t mut [u8]>,
}

impl XattrOut<'_> {
    /// The caller's buffer size: 0 asks for the size only.
    pub fn size(&self) -> u32 {
        self.limit
    }

    /// Answers with `bytes` (or their size, if that is what the caller asked); a value that
    /// does not fit the caller's buffer answers `ERANGE`.
    pub fn set(&mut self, bytes: &[u8]) {
        // SAFETY:
        // - `ptr..ptr + full` is this request's reply payload area in its slot, lent to
        //   this `XattrOut` alone while its handler runs (`Out::xattr`); the borrow ends
        //   within this call.
        let buf = unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.full) };
        let mut outcome = Outcome::Pending;
        let whose = Whose {
            slot: 0,
            unique: 0,
            owner: 0,
        };
        let reply = Reply::<kind::Xattr>::new(buf, &mut outcome, whose, self.limit, None);
        let _ = reply.value(bytes);
        self.result = Some(match outcome {
            Outcome::Payload(n) => Ok(n),
            Outcome::Error(e) => Err(e),
            Outcome::Pending | Outcome::Deferred => Err(Errno::EIO),
        });
    }
}

/// A FUSE filesystem written with `async fn`: one method per operation, each taking
/// `&self` (one loop polls all of a filesystem's futures on one thread, so futures need
/// not be `Send`; keep mutable state in `Cell`/`RefCell`) and the request's [`AsyncCx`],
/// and returning its answer as a typed `Result`. READ, READLINK and IOCTL fill a
/// [`ReadBuf`] the library lends (the request's own reply buffer: read a backing file
/// straight into it with [`AsyncCx::read_at`]); READDIR fills a [`DirFill`]; a WRITE's
/// data is a [`WriteBuf`] in the request's buffer (write it to a backing file with
/// [`AsyncCx::write_at`], no copy).
///
/// Serve it with [`Async`]: `Session::new(Async::new(fs), ...)`, or `run_per_cpu` with a
/// factory returning `Async::new(..)`, on either transport.
///
/// Every method has a default: `ENOSYS` (which the kernel remembers for the operations
/// where it has a fallback, as for [`Filesystem`](crate::Filesystem)), except RELEASE and
/// RELEASEDIR (success), STATFS (an empty filesystem) and FORGET (nothing).
///
/// Use this trait when handlers wait on I/O; a filesystem that only computes (memfs,
/// hello) is as well served by the synchronous [`Filesystem`](crate::Filesystem), which is
/// what those examples use. See the module docs for how futures are stored and the
/// [`FUTURE_BYTES`](Self::FUTURE_BYTES) limit.
#[allow(unused_variables, clippy::too_many_arguments)]
#[allow(async_fn_in_trait)] // the futures run on the loop's thread: no `Send` bound wanted
pub trait AsyncFilesystem {
    /// Bytes each request's future may occupy (checked at compile time per method; see
    /// the module docs). Every slot reserves this much, plus about 2.4 KiB of header.
    const FUTURE_BYTES: usize = 2048;

    /// Called once before INIT is answered; adjust `cfg.want` and the limits (as
    /// [`Filesystem::init`](crate::Filesystem::init)).
    ///
    /// # Errors
    ///
    /// An error is sent as the INIT reply, which fails the mount.
    fn init(&self, cfg: &mut InitConfig) -> Result<(), Errno> {
        Ok(())
    }

    /// Called once when the session ends.
    fn destroy(&self) {}

    /// LOOKUP: the node named `name` in `parent` (adds one to its lookup count).
    async fn lookup(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
        Err(Errno::ENOSYS)
    }

    /// FORGET: the kernel drops `nlookup` lookups of `node`. No reply.
    fn forget(&self, node: NodeId, nlookup: u64) {}

    /// BATCH_FORGET: the default calls [`forget`](Self::forget) for each.
    fn batch_forget(&self, forgets: Forgets<'_>) {
        for f in forgets {
            self.forget(NodeId(f.nodeid), f.nlookup);
        }
    }

    /// GETATTR: `node`'s attributes and how long the kernel may cache them.
    async fn getattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: Option<u64>,
    ) -> Result<(Attr, Duration), Errno> {
        Err(Errno::ENOSYS)
    }

    /// SETATTR: change attributes; answer with the result.
    async fn setattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        set: &SetAttr,
    ) -> Result<(Attr, Duration), Errno> {
        Err(Errno::ENOSYS)
    }

    /// READLINK: the symlink's target, into `buf`; answer with its length.
    async fn readlink(&self, cx: &AsyncCx, node: NodeId, buf: ReadBuf<'_>) -> Result<usize, Errno> {
        Err(Errno::ENOSYS)
    }

    /// SYMLINK: create `parent/name` pointing to `target`.
    async fn symlink(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
    ) -> Result<Entry, Errno> {
        Err(Errno::ENOSYS)
    }

    /// MKNOD: create a regular file, fifo, socket or device node.
    async fn mknod(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        Err(Errno::ENOSYS)
    }

    /// MKDIR: create directory `parent/name`.
    async fn mkdir(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> Result<Entry, Errno> {
        Err(Errno::ENOSYS)
    }

    /// UNLINK: remove `parent/name`.
    async fn unlink(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// RMDIR: remove the empty directory `parent/name`.
    async fn rmdir(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// RENAME and RENAME2 (`flags`: `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, ...).
    async fn rename(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// LINK: a new name `newparent/newname` for `node`.
    async fn link(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
    ) -> Result<Entry, Errno> {
        Err(Errno::ENOSYS)
    }

    /// OPEN: open `node` with `open(2)` `flags`.
    async fn open(&self, cx: &AsyncCx, node: NodeId, flags: OpenFlags) -> Result<Opened, Errno> {
        Err(Errno::ENOSYS)
    }

    /// READ: up to `buf.len()` bytes at `offset`, into `buf`; answer with how many (short
    /// means end of file, unless the file was opened `DIRECT_IO`).
    async fn read(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        Err(Errno::ENOSYS)
    }

    /// WRITE: `data` at `offset`; answer with the number of bytes written.
    async fn write(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        data: WriteBuf<'_>,
        write_flags: u32,
        flags: u32,
    ) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }

    /// FLUSH: on each `close(2)` of a descriptor.
    async fn flush(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        lock_owner: u64,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// RELEASE: the last reference to an open file is gone. Succeeds by default.
    async fn release(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        flags: u32,
        release_flags: u32,
        lock_owner: u64,
    ) -> Result<(), Errno> {
        Ok(())
    }

    /// FSYNC.
    async fn fsync(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        datasync: bool,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// OPENDIR.
    async fn opendir(&self, cx: &AsyncCx, node: NodeId, flags: OpenFlags) -> Result<Opened, Errno> {
        Err(Errno::ENOSYS)
    }

    /// READDIR: add entries after the cookie `offset` to `out` until it is full; an empty
    /// answer ends the listing.
    async fn readdir(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        out: &mut DirFill<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// READDIRPLUS (only with `DO_READDIRPLUS` asked for in [`init`](Self::init)).
    async fn readdirplus(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        out: &mut DirPlusFill<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// RELEASEDIR. Succeeds by default.
    async fn releasedir(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        flags: u32,
    ) -> Result<(), Errno> {
        Ok(())
    }

    /// FSYNCDIR.
    async fn fsyncdir(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        datasync: bool,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// STATFS. The default reports an empty filesystem with 255-byte names.
    async fn statfs(&self, cx: &AsyncCx, node: NodeId) -> Result<Statfs, Errno> {
        Ok(Statfs {
            bsize: 512,
            namelen: 255,
            ..Statfs::default()
        })
    }

    /// SETXATTR.
    async fn setxattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// GETXATTR: [`XattrOut::set`] the value.
    async fn getxattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        name: &CStr,
        out: &mut XattrOut<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// LISTXATTR: [`XattrOut::set`] the NUL-terminated names.
    async fn listxattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        out: &mut XattrOut<'_>,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// REMOVEXATTR.
    async fn removexattr(&self, cx: &AsyncCx, node: NodeId, name: &CStr) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// ACCESS (`ENOSYS`: always allowed).
    async fn access(&self, cx: &AsyncCx, node: NodeId, mask: u32) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// CREATE: create and open `parent/name` (`ENOSYS` falls back to MKNOD + OPEN).
    async fn create(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
    ) -> Result<(Entry, Opened), Errno> {
        Err(Errno::ENOSYS)
    }

    /// GETLK: the conflicting lock, or one of type `F_UNLCK`.
    async fn getlk(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
    ) -> Result<FileLock, Errno> {
        Err(Errno::ENOSYS)
    }

    /// SETLK and SETLKW (`sleep`: wait for the lock — a future can simply wait).
    async fn setlk(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        owner: u64,
        lock: &FileLock,
        sleep: bool,
        flock: bool,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// BMAP.
    async fn bmap(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        blocksize: u32,
        block: u64,
    ) -> Result<u64, Errno> {
        Err(Errno::ENOSYS)
    }

    /// IOCTL: the ioctl's result and how many output bytes were filled into `out`.
    async fn ioctl(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        args: &IoctlArgs<'_>,
        out: ReadBuf<'_>,
    ) -> Result<(i32, usize), Errno> {
        Err(Errno::ENOSYS)
    }

    /// POLL: the ready events.
    async fn poll(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
    ) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }

    /// FALLOCATE.
    async fn fallocate(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// LSEEK (`SEEK_DATA`/`SEEK_HOLE`): the new offset.
    async fn lseek(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: u64,
        offset: u64,
        whence: u32,
    ) -> Result<u64, Errno> {
        Err(Errno::ENOSYS)
    }

    /// COPY_FILE_RANGE: the number of bytes copied.
    async fn copy_file_range(&self, cx: &AsyncCx, range: &CopyRange) -> Result<u64, Errno> {
        Err(Errno::ENOSYS)
    }

    /// STATX (`ENOSYS` falls back to GETATTR).
    async fn statx(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        fh: Option<u64>,
        flags: u32,
        mask: u32,
    ) -> Result<(Attr, Duration), Errno> {
        Err(Errno::ENOSYS)
    }

    /// TMPFILE: create an unnamed file in `parent` and open it.
    async fn tmpfile(
        &self,
        cx: &AsyncCx,
        parent: NodeId,
        mode: u32,
        umask: u32,
        flags: OpenFlags,
    ) -> Result<(Entry, Opened), Errno> {
        Err(Errno::ENOSYS)
    }

    /// SYNCFS.
    async fn syncfs(&self, cx: &AsyncCx, node: NodeId) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }

    /// NOTIFY_REPLY: the kernel's answer to a retrieve notification. No reply.
    fn retrieve_reply(&self, node: NodeId, notify_unique: u64, offset: u64, data: &[u8]) {}
}
