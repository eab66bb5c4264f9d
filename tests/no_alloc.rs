//! No heap allocation per request (STYLE.md rule 20).
//!
//! A counting `#[global_allocator]` forwards to [`System`] and counts `alloc`,
//! `alloc_zeroed` and `realloc` only on a thread whose thread-local [`ARMED`] flag is set.
//! The filesystem below never allocates while serving (fixed arrays allocated when it is
//! made); it sets the flag on the session's loop thread when it is asked to look up the
//! name `arm`, clears it on `disarm`, and counts the requests it serves in between.
//!
//! The test mounts it for real (root and `/dev/fuse`; without them it fails loudly unless
//! `RINGFUSE_SKIP_MOUNT_TESTS=1`), warms up with every operation of the mix, arms, drives
//! well over 10,000 requests with plain syscalls from the test thread (checking every
//! answer, so the requests were really served), disarms and asserts that the loop thread
//! allocated nothing in between. Entry and attribute TTLs are 0 and files are opened with
//! `DIRECT_IO`, so every path walk, `fstat`, read and write really reaches the filesystem.
//! Then the same for an asynchronous filesystem ([`RingFs`], served by `Async`) whose every
//! request but OPEN and RELEASE does ring I/O: `statx`, reads into the reply buffer, writes
//! from the WRITE payload, `fdatasync`, timeouts — futures in slot memory, no heap.
//! It does each twice: on the classic transport, then with `TransportMode::Auto` (the
//! native FUSE-over-io_uring transport when the kernel offers it).
//!
//! When something does allocate, the allocator keeps the backtraces of the first few
//! allocations (captured with a re-entrancy flag set, so capturing is not counted) and the
//! test prints them.
//!
//! This binary has exactly one `#[test]`: the allocator and the flag are process-wide.
// Unlike the other tests (STYLE.md rule 5), this one cannot forbid `unsafe`: a
// `GlobalAlloc` cannot be written without it. Each block forwards
// one call to `System` under the caller's own contract.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

use core::ffi::CStr;
use core::time::Duration;
use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use arrayvec::ArrayVec;
use ringfuse::abi::flags::{FopenFlags, InitFlags};
use ringfuse::abi::request::Forgets;
use ringfuse::mount::MountOptions;
use ringfuse::{
    Async, AsyncCx, AsyncFilesystem, Attr, Config, Cx, Done, Entry, Errno, FileType, Filesystem,
    InitConfig, NodeId, Opened, ReadBuf, ReplyAttr, ReplyCreate, ReplyData, ReplyDir, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Session, SetAttr, Statfs, Stats, StopHandle,
    Timestamp, Transport, TransportMode, WriteBuf,
};
use rustix::mount::UnmountFlags;

// ---------------------------------------------------------------------------------------------
// The counting allocator

thread_local! {
    /// Set on the loop thread between `arm` and `disarm`: allocations there are counted.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Set while the allocator records an allocation (capturing a backtrace allocates).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

/// Allocations made by armed threads.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// How many backtraces to keep.
const MAX_TRACES: usize = 8;
/// The first [`MAX_TRACES`] counted allocations: size and where.
static TRACES: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

/// Counts an allocation of `size` bytes if this thread is armed, and keeps its backtrace if
/// it is one of the first.
fn note(size: usize) {
    if !armed() || RECORDING.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    RECORDING.set(true);
    let mut traces = TRACES.lock().unwrap_or_else(PoisonError::into_inner);
    if traces.len() < MAX_TRACES {
        traces.push((size, Backtrace::force_capture()));
    }
    drop(traces);
    RECORDING.set(false);
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System` upholds the `GlobalAlloc` contract; `note` only touches atomics, thread-locals
// and (re-entrantly guarded) the global allocator itself, never the block being returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller guarantees `layout` has a non-zero size (`GlobalAlloc::alloc`).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller guarantees `layout` has a non-zero size.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`)
        // with `layout`, and that `new_size` is non-zero and does not overflow when rounded
        // up to `layout.align()`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// The filesystem: one directory of regular files, all state preallocated

/// Node slots (node id = slot + 2; the root is 1).
const MAX_NODES: usize = 1024;
/// Longest file name.
const NAME_MAX: usize = 40;
/// Largest file.
const DATA_MAX: usize = 4096;
/// Entry and attribute TTL: 0, so that the kernel asks for every lookup and getattr.
const TTL: Duration = Duration::ZERO;
/// How files are opened: `DIRECT_IO`, so that every read and write reaches the filesystem.
const OPEN_FLAGS: FopenFlags = FopenFlags::DIRECT_IO;

/// The operations the filesystem counts while armed.
#[derive(Clone, Copy, Debug)]
enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Opendir,
    Readdir,
    Releasedir,
    Create,
    Unlink,
    Statfs,
}

const OPS: [Op; 15] = [
    Op::Lookup,
    Op::Forget,
    Op::Getattr,
    Op::Setattr,
    Op::Open,
    Op::Read,
    Op::Write,
    Op::Flush,
    Op::Release,
    Op::Opendir,
    Op::Readdir,
    Op::Releasedir,
    Op::Create,
    Op::Unlink,
    Op::Statfs,
];

/// What the filesystem shares with the test thread.
#[derive(Default)]
struct Counters {
    /// Requests served while armed (FORGETs and each node of a BATCH_FORGET included).
    served: AtomicU64,
    /// The same, per [`Op`].
    per_op: [AtomicU64; OPS.len()],
    /// The kernel offered `FUSE_OVER_IO_URING` at INIT (the native transport is then used
    /// if the session offers it).
    uring_offered: AtomicBool,
}

struct Node {
    /// The slot holds a node (named, or still known to the kernel).
    used: bool,
    /// The node has its name in the root.
    linked: bool,
    /// The kernel's lookup count.
    nlookup: u64,
    generation: u64,
    name: ArrayVec<u8, NAME_MAX>,
    size: usize,
    /// File contents; always zero past `size`.
    data: [u8; DATA_MAX],
}

struct FixedFs {
    nodes: Box<[Node]>,
    counters: Arc<Counters>,
    time: Timestamp,
}

impl FixedFs {
    fn new(counters: Arc<Counters>) -> Self {
        let nodes = (0..MAX_NODES)
            .map(|_| Node {
                used: false,
                linked: false,
                nlookup: 0,
                generation: 0,
                name: ArrayVec::new(),
                size: 0,
                data: [0; DATA_MAX],
            })
            .collect();
        Self {
            nodes,
            counters,
            time: Timestamp::now(),
        }
    }

    /// Counts one request of kind `op` if the loop thread is armed.
    fn tick(&self, op: Op) {
        if armed() {
            self.counters.served.fetch_add(1, Ordering::Relaxed);
            self.counters.per_op[op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn slot(node: NodeId) -> Option<usize> {
        let slot = usize::try_from(node.0.checked_sub(2)?).ok()?;
        (slot < MAX_NODES).then_some(slot)
    }

    fn node_id(slot: usize) -> NodeId {
        NodeId(slot as u64 + 2)
    }

    fn file(&mut self, node: NodeId) -> Result<&mut Node, Errno> {
        if node == NodeId::ROOT {
            return Err(Errno::EISDIR);
        }
        match Self::slot(node) {
            Some(slot) if self.nodes[slot].used => Ok(&mut self.nodes[slot]),
            _ => Err(Errno::ENOENT),
        }
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.linked && n.name.as_slice() == name)
    }

    fn attr(&self, node: NodeId) -> Result<Attr, Errno> {
        if node == NodeId::ROOT {
            let mut attr = Attr::new(1, FileType::Directory, 0o755, self.time);
            attr.nlink = 2;
            return Ok(attr);
        }
        let slot = Self::slot(node).ok_or(Errno::ENOENT)?;
        let n = &self.nodes[slot];
        if !n.used {
            return Err(Errno::ENOENT);
        }
        let mut attr = Attr::new(node.0, FileType::RegularFile, 0o644, self.time);
        attr.size = n.size as u64;
        attr.blocks = (n.size as u64).div_ceil(512);
        attr.nlink = u32::from(n.linked);
        Ok(attr)
    }

    fn entry(&self, slot: usize) -> Entry {
        let node = Self::node_id(slot);
        Entry {
            node,
            generation: self.nodes[slot].generation,
            attr: self.attr(node).unwrap(),
            entry_ttl: TTL,
            attr_ttl: TTL,
        }
    }

    /// Frees the slot once the node has no name and the kernel has forgotten it.
    fn maybe_free(&mut self, slot: usize) {
        let n = &mut self.nodes[slot];
        if !n.linked && n.nlookup == 0 {
            n.used = false;
            n.name.clear();
            n.data[..n.size].fill(0);
            n.size = 0;
        }
    }
}

impl Filesystem for FixedFs {
    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        let uring = cfg.offered.contains(InitFlags::OVER_IO_URING);
        self.counters.uring_offered.store(uring, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        self.tick(Op::Lookup);
        if parent != NodeId::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        match name.to_bytes() {
            b"arm" => {
                ARMED.set(true);
                return reply.error(Errno::ENOENT);
            }
            b"disarm" => {
                ARMED.set(false);
                return reply.error(Errno::ENOENT);
            }
            _ => {}
        }
        match self.find(name.to_bytes()) {
            Some(slot) => {
                self.nodes[slot].nlookup += 1;
                reply.entry(&self.entry(slot))
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn forget(&mut self, _cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {
        self.tick(Op::Forget);
        if let Some(slot) = Self::slot(node) {
            let n = &mut self.nodes[slot];
            n.nlookup = n.nlookup.saturating_sub(nlookup);
            self.maybe_free(slot);
        }
    }

    fn batch_forget(&mut self, cx: &mut Cx<'_>, forgets: Forgets<'_>) {
        for f in forgets {
            self.forget(cx, NodeId(f.nodeid), f.nlookup);
        }
    }

    fn getattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        self.tick(Op::Getattr);
        match self.attr(node) {
            Ok(attr) => reply.attr(&attr, TTL),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        self.tick(Op::Setattr);
        if let Some(size) = set.size {
            let n = match self.file(node) {
                Ok(n) => n,
                Err(e) => return reply.error(e),
            };
            let Some(size) = usize::try_from(size).ok().filter(|&s| s <= DATA_MAX) else {
                return reply.error(Errno::EFBIG);
            };
            if size < n.size {
                n.data[size..n.size].fill(0);
            }
            n.size = size;
        }
        // Mode, owner and times are accepted and ignored.
        match self.attr(node) {
            Ok(attr) => reply.attr(&attr, TTL),
            Err(e) => reply.error(e),
        }
    }

    fn open(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        self.tick(Op::Open);
        match self.file(node) {
            Ok(_) => reply.opened(node.0, OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        _size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        self.tick(Op::Read);
        match self.file(node) {
            Ok(n) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(n.size);
                reply.data(&n.data[start..n.size])
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        data: &[u8],
        _write_flags: u32,
        _flags: u32,
        reply: ReplyWrite<'_>,
    ) -> Done {
        self.tick(Op::Write);
        let n = match self.file(node) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let Some(start) = usize::try_from(offset).ok().filter(|&o| o <= DATA_MAX) else {
            return reply.error(Errno::EFBIG);
        };
        let Some(end) = start.checked_add(data.len()).filter(|&e| e <= DATA_MAX) else {
            return reply.error(Errno::EFBIG);
        };
        n.data[start..end].copy_from_slice(data);
        n.size = n.size.max(end);
        reply.written(data.len() as u32)
    }

    fn flush(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tick(Op::Flush);
        reply.ok()
    }

    fn release(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _flags: u32,
        _release_flags: u32,
        _lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tick(Op::Release);
        reply.ok()
    }

    fn opendir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        self.tick(Op::Opendir);
        if node == NodeId::ROOT {
            reply.opened(0, FopenFlags::default())
        } else {
            reply.error(Errno::ENOTDIR)
        }
    }

    fn readdir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        self.tick(Op::Readdir);
        if node != NodeId::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        // Cookies: "." is 1, ".." is 2, the node in slot s is s + 3 (stable across unlinks).
        let nodes = &self.nodes;
        reply.dir(|fill| {
            for (cookie, name) in [(1, &b"."[..]), (2, &b".."[..])] {
                if cookie > offset
                    && fill
                        .add(1, cookie, FileType::Directory, name)
                        .unwrap()
                        .is_full()
                {
                    return;
                }
            }
            for (slot, n) in nodes.iter().enumerate() {
                let cookie = slot as u64 + 3;
                if cookie <= offset || !n.linked {
                    continue;
                }
                let ino = Self::node_id(slot).0;
                if fill
                    .add(ino, cookie, FileType::RegularFile, &n.name)
                    .unwrap()
                    .is_full()
                {
                    return;
                }
            }
        })
    }

    fn releasedir(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _fh: u64,
        _flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tick(Op::Releasedir);
        reply.ok()
    }

    fn statfs(&mut self, _cx: &mut Cx<'_>, _node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        self.tick(Op::Statfs);
        let used = self.nodes.iter().filter(|n| n.used).count() as u64;
        reply.statfs(&Statfs {
            blocks: (MAX_NODES * DATA_MAX / 4096) as u64,
            bfree: 0,
            bavail: 0,
            files: MAX_NODES as u64,
            ffree: MAX_NODES as u64 - used,
            bsize: 4096,
            namelen: NAME_MAX as u32,
            frsize: 4096,
        })
    }

    fn create(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        _mode: u32,
        _umask: u32,
        _flags: ringfuse::OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        self.tick(Op::Create);
        if parent != NodeId::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let name = name.to_bytes();
        if self.find(name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        let Ok(name) = ArrayVec::try_from(name) else {
            return reply.error(Errno::ENAMETOOLONG);
        };
        let Some(slot) = self.nodes.iter().position(|n| !n.used) else {
            return reply.error(Errno::ENOSPC);
        };
        let n = &mut self.nodes[slot];
        n.used = true;
        n.linked = true;
        n.nlookup = 1;
        n.generation += 1;
        n.name = name;
        n.size = 0;
        let entry = self.entry(slot);
        reply.created(&entry, entry.node.0, OPEN_FLAGS)
    }

    fn unlink(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.tick(Op::Unlink);
        if parent != NodeId::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        match self.find(name.to_bytes()) {
            Some(slot) => {
                self.nodes[slot].linked = false;
                self.maybe_free(slot);
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness: skip or fail, scratch directory, running session

/// Whether the test can mount here. If it cannot, says why loudly and fails, unless
/// `RINGFUSE_SKIP_MOUNT_TESTS=1`, in which case it is skipped (returns false).
fn can_mount() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "not running as root (mount(2) of a FUSE filesystem needs CAP_SYS_ADMIN)"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse does not exist (modprobe fuse)"
    } else {
        return true;
    };
    eprintln!("\n!!!!! ringfuse no_alloc test NOT RUN: {why} !!!!!\n");
    if std::env::var_os("RINGFUSE_SKIP_MOUNT_TESTS").as_deref() == Some(OsStr::new("1")) {
        eprintln!("(skipped because RINGFUSE_SKIP_MOUNT_TESTS=1)");
        return false;
    }
    panic!("cannot run the no_alloc test: {why}; run as root, or set RINGFUSE_SKIP_MOUNT_TESTS=1");
}

/// A fresh temporary directory; dropping it lazily unmounts whatever is still mounted there,
/// then removes it.
struct Scratch {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ringfuse-noalloc-")
            .tempdir()
            .expect("create a temporary directory");
        let path = std::fs::canonicalize(dir.path()).expect("canonicalize the temporary dir");
        Self { path, _dir: dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for _ in 0..16 {
            if rustix::mount::unmount(&self.path, UnmountFlags::DETACH).is_err() {
                break;
            }
        }
    }
}

/// How long a stopped (or unmounted) session may take to finish what is in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the loop thread hands back: what `run` returned, the transport it used, its stats.
type LoopResult = (Result<(), ringfuse::Error>, Transport, Stats);

/// How the loop thread ended.
enum Ended {
    /// After [`StopHandle::stop`], as it should.
    Stopped(std::thread::Result<LoopResult>),
    /// Only after the mount was lazily unmounted, when the stop did not end it in time.
    Unmounted(std::thread::Result<LoopResult>),
    /// Not even then: the thread is left to die with the process.
    Stuck,
}

/// The session serving on its own thread. Dropping it stops the session and joins the
/// thread (the session unmounts as it ends).
struct Running {
    /// The transport the session offers the kernel ([`Session::transport`] before INIT).
    offered: Transport,
    mountpoint: PathBuf,
    stop: StopHandle,
    thread: Option<JoinHandle<LoopResult>>,
}

impl Running {
    fn start<F: Filesystem + Send + 'static>(
        mountpoint: &Path,
        fs: F,
        mode: TransportMode,
    ) -> Self {
        let mut options = MountOptions::new();
        options
            .fsname("rf-noalloc")
            .unwrap()
            .subtype("rf-noalloc")
            .unwrap();
        let config = Config::default().handle_signals(false).transport(mode);
        let mut session = Session::new(fs, mountpoint, &options, config).expect("mount");
        let stop = session.stop_handle();
        let offered = session.transport();
        let thread = std::thread::Builder::new()
            .name("ringfuse-loop".into())
            .spawn(move || {
                let result = session.run();
                (result, session.transport(), session.stats())
            })
            .expect("spawn the loop thread");
        Self {
            offered,
            mountpoint: mountpoint.to_owned(),
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the session and joins its thread. If the stop has not ended it within
    /// [`STOP_TIMEOUT`], lazily unmounts (which ends the connection once nothing uses it)
    /// and waits as long again, so that no thread outlives the test if it can be helped.
    fn stop_and_join(&mut self) -> Option<Ended> {
        fn join_within(thread: &JoinHandle<LoopResult>) -> bool {
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() {
                if std::time::Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            true
        }
        let thread = self.thread.take()?;
        self.stop.stop();
        if join_within(&thread) {
            return Some(Ended::Stopped(thread.join()));
        }
        eprintln!(
            "!!!!! the session did not stop within {STOP_TIMEOUT:?} of StopHandle::stop; \
             unmounting it lazily"
        );
        let _ = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH);
        if join_within(&thread) {
            return Some(Ended::Unmounted(thread.join()));
        }
        eprintln!("!!!!! the session did not end within {STOP_TIMEOUT:?} of the unmount either");
        Some(Ended::Stuck)
    }

    /// Stops the session and waits for its thread: what it returned, or why the stop
    /// failed.
    fn finish(&mut self) -> Result<LoopResult, String> {
        match self.stop_and_join().expect("finished once") {
            Ended::Stopped(Ok(joined)) => Ok(joined),
            Ended::Stopped(Err(_)) => Err("the loop thread panicked".to_owned()),
            Ended::Unmounted(joined) => Err(format!(
                "the session did not stop within {STOP_TIMEOUT:?} of StopHandle::stop \
                 (it ended only when unmounted: {:?})",
                joined.map(|(result, transport, _)| (result, transport))
            )),
            Ended::Stuck => Err("the session ended neither on stop nor on unmount".to_owned()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

// ---------------------------------------------------------------------------------------------
// The request mix

/// Files that stay for the whole test: enough names (about 39 KiB of dirents) that a
/// listing takes several READDIRs even with the 32 KiB buffer of `readdir(3)`.
const KEEP: u64 = 700;
/// Rounds of the mix before arming.
const WARMUP_ROUNDS: u64 = 40;
/// Rounds of the mix while armed (each is about 30 requests).
const ARMED_ROUNDS: u64 = 500;
/// Requests the armed window must serve at least.
const MIN_REQUESTS: u64 = 10_000;

fn keep_name(k: u64) -> String {
    // 32 bytes: 56 bytes of dirent each.
    format!("keep-{k:04}-padding-padding-pad")
}

/// Contents that differ per `seed`.
fn pattern(seed: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = (seed.wrapping_mul(131) ^ (i as u64).wrapping_mul(7)) as u8;
    }
}

fn expect_not_found(path: &Path) {
    let err = std::fs::metadata(path).expect_err("no such file");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}: {err}", path.display());
}

fn keep_files(mnt: &Path) {
    for k in 0..KEEP {
        let mut content = [0u8; 64];
        pattern(k, &mut content);
        std::fs::write(mnt.join(keep_name(k)), content).unwrap();
    }
}

/// One round: create, write, read back, fstat, truncate, stat by path, reopen and read,
/// a failing lookup, read a kept file, list the directory, statfs, unlink.
fn round(mnt: &Path, i: u64) {
    let name = format!("round-{}", i % 4);
    let path = mnt.join(&name);
    let mut content = [0u8; 256];
    pattern(i + 1000, &mut content);

    // LOOKUP (negative) + CREATE
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    // WRITE, READ
    file.write_all_at(&content, 0).unwrap();
    let mut back = [0u8; 256];
    file.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, content, "read back what was written");
    // GETATTR, SETATTR (size), GETATTR
    assert_eq!(file.metadata().unwrap().len(), 256);
    file.set_len(100).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 100);
    // FLUSH + RELEASE
    drop(file);

    // LOOKUP (+ GETATTR)
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 100);

    // LOOKUP + OPEN, READ (100 bytes), READ (end of file), FLUSH + RELEASE
    let mut file = File::open(&path).unwrap();
    let mut buf = [0u8; 512];
    assert_eq!(file.read(&mut buf).unwrap(), 100);
    assert_eq!(buf[..100], content[..100]);
    assert_eq!(file.read(&mut buf).unwrap(), 0);
    drop(file);

    // LOOKUP (negative)
    expect_not_found(&mnt.join("missing"));

    // A kept file: LOOKUP + OPEN + READ + READ + FLUSH + RELEASE
    let k = i % KEEP;
    let mut expected = [0u8; 64];
    pattern(k, &mut expected);
    assert_eq!(std::fs::read(mnt.join(keep_name(k))).unwrap(), expected);

    // OPENDIR + READDIR (several pages and the empty end) + RELEASEDIR
    let names: Vec<_> = std::fs::read_dir(mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len() as u64, KEEP + 1, "the kept files and {name}");
    assert!(names.iter().any(|n| *n == *name), "{name} is listed");
    assert!(
        names.iter().any(|n| *n == *keep_name(k)),
        "kept file listed"
    );

    // STATFS
    let st = rustix::fs::statvfs(mnt).unwrap();
    assert_eq!(st.f_namemax, NAME_MAX as u64);
    assert_eq!(st.f_files, MAX_NODES as u64);

    // LOOKUP + UNLINK (then FORGET)
    std::fs::remove_file(&path).unwrap();
    expect_not_found(&path);
}

/// What one armed window measured.
struct Measured {
    mode: TransportMode,
    /// Known once the session has ended.
    transport: Option<Transport>,
    allocations: u64,
    served: u64,
    per_op: [u64; OPS.len()],
    traces: Vec<(usize, Backtrace)>,
    /// Whether the session stopped cleanly on [`StopHandle::stop`].
    stop: Result<(), String>,
}

impl Measured {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn print(&self) {
        eprintln!(
            "no_alloc [{:?} mode]: {} allocations / {} requests served while armed \
             = {:.6} allocations per request",
            self.mode,
            self.allocations,
            self.served,
            self.allocations as f64 / self.served.max(1) as f64,
        );
        let ops: Vec<_> = OPS
            .iter()
            .zip(self.per_op)
            .map(|(op, n)| format!("{op:?} {n}"))
            .collect();
        eprintln!("  per operation: {}", ops.join(", "));
        for (n, (size, trace)) in self.traces.iter().enumerate() {
            eprintln!(
                "----- allocation #{} ({size} bytes) on the loop thread:\n{trace}",
                n + 1
            );
        }
    }
}

/// Mounts a fresh filesystem with `mode`, warms up, runs the armed window, stops.
fn measure(mode: TransportMode) -> Measured {
    let scratch = Scratch::new();
    let mnt = scratch.path.clone();
    let counters = Arc::new(Counters::default());
    let mut running = Running::start(&mnt, FixedFs::new(Arc::clone(&counters)), mode);

    // Blocks until the loop has answered INIT; ino 1 shows it is our filesystem.
    let root = std::fs::metadata(&mnt).unwrap();
    assert!(root.is_dir());
    assert_eq!(root.ino(), 1, "the mount is served");

    // Warm up: every operation of the mix, several times.
    keep_files(&mnt);
    for i in 0..WARMUP_ROUNDS {
        round(&mnt, i);
    }
    assert_eq!(counters.served.load(Ordering::Relaxed), 0, "not armed yet");
    ALLOCATIONS.store(0, Ordering::Relaxed);
    TRACES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();

    expect_not_found(&mnt.join("arm"));
    for i in 0..ARMED_ROUNDS {
        round(&mnt, WARMUP_ROUNDS + i);
    }
    expect_not_found(&mnt.join("disarm"));

    let allocations = ALLOCATIONS.swap(0, Ordering::Relaxed);
    let traces = core::mem::take(&mut *TRACES.lock().unwrap_or_else(PoisonError::into_inner));
    let mut measured = Measured {
        mode,
        transport: None,
        allocations,
        served: counters.served.load(Ordering::Relaxed),
        per_op: core::array::from_fn(|i| counters.per_op[i].load(Ordering::Relaxed)),
        traces,
        stop: Ok(()),
    };
    // Print before stopping, so that the figures show even if stopping goes wrong.
    measured.print();
    eprintln!(
        "  transport the session offers: {:?}; kernel offered FUSE_OVER_IO_URING: {}",
        running.offered,
        counters.uring_offered.load(Ordering::Relaxed)
    );

    match running.finish() {
        Ok((Ok(()), transport, stats)) => {
            measured.transport = Some(transport);
            eprintln!(
                "  transport used: {transport:?}; {} requests in the whole session",
                stats.requests()
            );
        }
        Ok((Err(e), transport, _)) => {
            measured.transport = Some(transport);
            measured.stop = Err(format!("the session ended with an error: {e}"));
        }
        Err(e) => measured.stop = Err(e),
    }
    drop(running);
    drop(scratch);
    measured
}

// ---------------------------------------------------------------------------------------------
// An asynchronous filesystem whose every request does ring I/O

/// Files of the asynchronous filesystem: `data` (node 2) is a real file in a scratch
/// directory; its attributes come from a `statx` on the ring, its reads land in the reply
/// buffer through a ring READ and its writes go from the WRITE payload through a ring
/// WRITE. `arm` and `disarm` are looked up to start and end the counted window; every
/// other lookup waits 1 µs on a ring timeout before answering ENOENT.
struct RingFs {
    backing: File,
    counters: Arc<Counters>,
}

impl RingFs {
    fn tick(&self, op: Op) {
        if armed() {
            self.counters.served.fetch_add(1, Ordering::Relaxed);
            self.counters.per_op[op as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn attr(&self, cx: &AsyncCx, node: NodeId) -> Result<Attr, Errno> {
        match node.0 {
            1 => Ok(Attr::new(
                1,
                FileType::Directory,
                0o755,
                Timestamp::new(1, 0),
            )),
            2 => {
                let st = cx
                    .statx(
                        self.backing.as_fd(),
                        c"",
                        rustix::fs::AtFlags::EMPTY_PATH,
                        rustix::fs::StatxFlags::SIZE,
                    )
                    .await?;
                let mut a = Attr::new(2, FileType::RegularFile, 0o644, Timestamp::new(1, 0));
                a.size = st.stx_size;
                Ok(a)
            }
            _ => Err(Errno::ENOENT),
        }
    }
}

impl AsyncFilesystem for RingFs {
    fn init(&self, cfg: &mut InitConfig) -> Result<(), Errno> {
        self.counters.uring_offered.store(
            cfg.offered.contains(InitFlags::OVER_IO_URING),
            Ordering::Relaxed,
        );
        Ok(())
    }

    async fn lookup(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
        match name.to_bytes() {
            b"arm" => ARMED.set(true),
            b"disarm" => ARMED.set(false),
            _ => {}
        }
        self.tick(Op::Lookup);
        if parent != NodeId::ROOT || name.to_bytes() != b"data" {
            cx.sleep(Duration::from_micros(1)).await;
            return Err(Errno::ENOENT);
        }
        Ok(Entry {
            node: NodeId(2),
            generation: 1,
            attr: self.attr(cx, NodeId(2)).await?,
            entry_ttl: TTL,
            attr_ttl: TTL,
        })
    }

    async fn getattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        _fh: Option<u64>,
    ) -> Result<(Attr, Duration), Errno> {
        self.tick(Op::Getattr);
        Ok((self.attr(cx, node).await?, TTL))
    }

    async fn open(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        _flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        self.tick(Op::Open);
        Ok(Opened::new(0).flags(OPEN_FLAGS))
    }

    async fn read(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        _fh: u64,
        offset: u64,
        buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        self.tick(Op::Read);
        cx.read_at(self.backing.as_fd(), buf, offset).await.0
    }

    async fn write(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        _fh: u64,
        offset: u64,
        data: WriteBuf<'_>,
        _write_flags: u32,
        _flags: u32,
    ) -> Result<u32, Errno> {
        self.tick(Op::Write);
        let n = cx.write_at(self.backing.as_fd(), &data, offset).await?;
        Ok(n as u32)
    }

    async fn flush(&self, cx: &AsyncCx, _node: NodeId, _fh: u64, _owner: u64) -> Result<(), Errno> {
        self.tick(Op::Flush);
        cx.fsync(self.backing.as_fd(), true).await
    }

    async fn release(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        _fh: u64,
        _flags: u32,
        _release_flags: u32,
        _owner: u64,
    ) -> Result<(), Errno> {
        self.tick(Op::Release);
        Ok(())
    }
}

/// The operations [`RingFs`] serves (each with ring I/O, but OPEN and RELEASE).
const RING_OPS: [Op; 7] = [
    Op::Lookup,
    Op::Getattr,
    Op::Open,
    Op::Read,
    Op::Write,
    Op::Flush,
    Op::Release,
];

/// One round against [`RingFs`]: stat, open, write and read back 4 KiB at a moving
/// offset, fstat, close (FLUSH: fdatasync on the ring), a failing lookup.
fn ring_round(mnt: &Path, i: u64) {
    let path = mnt.join("data");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 * 1024);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut content = [0u8; 4096];
    pattern(i, &mut content);
    let off = (i % 16) * 4096;
    file.write_all_at(&content, off).unwrap();
    let mut back = [0u8; 4096];
    file.read_exact_at(&mut back, off).unwrap();
    assert_eq!(back, content, "read back what was written");
    assert_eq!(file.metadata().unwrap().len(), 64 * 1024);
    drop(file);
    expect_not_found(&mnt.join("missing"));
}

/// [`measure`] for [`RingFs`].
fn measure_async(mode: TransportMode) -> Measured {
    let scratch = Scratch::new();
    let backing_dir = tempfile::tempdir().unwrap();
    let backing_path = backing_dir.path().join("data");
    std::fs::write(&backing_path, vec![0u8; 64 * 1024]).unwrap();
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&backing_path)
        .unwrap();
    let mnt = scratch.path.clone();
    let counters = Arc::new(Counters::default());
    let fs = Async::new(RingFs {
        backing,
        counters: Arc::clone(&counters),
    });
    let mut running = Running::start(&mnt, fs, mode);
    assert_eq!(
        std::fs::metadata(&mnt).unwrap().ino(),
        1,
        "the mount is served"
    );
    for i in 0..WARMUP_ROUNDS {
        ring_round(&mnt, i);
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    TRACES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    expect_not_found(&mnt.join("arm"));
    for i in 0..ASYNC_ROUNDS {
        ring_round(&mnt, WARMUP_ROUNDS + i);
    }
    expect_not_found(&mnt.join("disarm"));
    let allocations = ALLOCATIONS.swap(0, Ordering::Relaxed);
    let traces = core::mem::take(&mut *TRACES.lock().unwrap_or_else(PoisonError::into_inner));
    let mut per_op = [0; OPS.len()];
    for op in RING_OPS {
        per_op[op as usize] = counters.per_op[op as usize].load(Ordering::Relaxed);
    }
    let mut measured = Measured {
        mode,
        transport: None,
        allocations,
        served: counters.served.load(Ordering::Relaxed),
        per_op,
        traces,
        stop: Ok(()),
    };
    eprint!("async filesystem, ring I/O in every request but OPEN and RELEASE: ");
    measured.print();
    match running.finish() {
        Ok((Ok(()), transport, _)) => measured.transport = Some(transport),
        Ok((Err(e), transport, _)) => {
            measured.transport = Some(transport);
            measured.stop = Err(format!("the session ended with an error: {e}"));
        }
        Err(e) => measured.stop = Err(e),
    }
    drop(running);
    drop(scratch);
    measured
}

/// Rounds of [`ring_round`] while armed (each is about 10 requests).
const ASYNC_ROUNDS: u64 = 1200;

// ---------------------------------------------------------------------------------------------
// The test

/// The counter sees an allocation on an armed thread (and only there), and keeps its
/// backtrace.
fn self_check() {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    let unarmed = std::hint::black_box(vec![1u8; 16]);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    ARMED.set(true);
    let armed = std::hint::black_box(vec![2u8; 24]);
    ARMED.set(false);
    drop((unarmed, armed));
    assert_eq!(
        ALLOCATIONS.swap(0, Ordering::Relaxed),
        1,
        "the counter works"
    );
    let traces = core::mem::take(&mut *TRACES.lock().unwrap_or_else(PoisonError::into_inner));
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0].0, 24);
    assert!(
        traces[0].1.to_string().contains("self_check"),
        "the backtrace names its caller: {}",
        traces[0].1
    );
}

/// Both transports: classic, then the native one if the kernel offers it (else classic
/// again).
#[test]
fn serving_requests_does_not_allocate() {
    if !can_mount() {
        return;
    }
    self_check();
    let mut runs: Vec<Measured> = [TransportMode::Classic, TransportMode::Auto]
        .into_iter()
        .map(measure)
        .collect();
    let sync_runs = runs.len();
    runs.extend(
        [TransportMode::Classic, TransportMode::Auto]
            .into_iter()
            .map(measure_async),
    );
    for (k, m) in runs.iter().enumerate() {
        let ops: &[Op] = if k < sync_runs { &OPS } else { &RING_OPS };
        let what = match m.transport {
            Some(t) => format!("{:?} mode ({t:?} transport)", m.mode),
            None => format!("{:?} mode", m.mode),
        };
        assert!(
            m.served >= MIN_REQUESTS,
            "{what}: only {} requests served while armed",
            m.served
        );
        for op in ops {
            assert!(m.per_op[*op as usize] > 0, "{what}: no {op:?} while armed");
        }
        assert_eq!(
            m.allocations, 0,
            "{what}: the loop thread allocated {} times while serving {} requests \
             (backtraces above)",
            m.allocations, m.served
        );
    }
    for m in &runs {
        if let Err(e) = &m.stop {
            panic!("{:?} mode: {e}", m.mode);
        }
    }
}
