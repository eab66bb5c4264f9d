//! [`Passthrough`]: the [`Filesystem`] that mirrors a backing directory.
//!
//! A request whose backing operation io_uring can do is answered in three moves: the
//! method takes an operation slot, queues the SQE on the loop's own ring with
//! [`Cx::submit`] (tag = slot index and a sequence number) and defers its reply; the
//! completion comes back through [`Filesystem::completion`], which either queues the next
//! step of the same request (LOOKUP is `openat2` then `statx`) or resumes the reply with
//! [`Cx::resume`] and answers. The loop never waits for the backing filesystem: a slow
//! backing file delays only the requests that touch it.
//!
//! Slots (their memory is in [`Io`]) are made at start, one per request the session can
//! hold at once, so no request allocates; if more were ever in flight, a slot is added.
//!
//! When the loop starts ending ([`Filesystem::stopping`]), every operation in flight is
//! cancelled ([`Cx::cancel`]) and no new one is queued: requests still waiting are answered
//! with the cancelled operation's error, so a backing filesystem that never answers cannot
//! keep the server from exiting.

use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::time::Duration;
use std::collections::HashMap;

use ringfuse::abi::flags::{FopenFlags, InitFlags};
use ringfuse::reply::kind;
use ringfuse::ring::Sqe;
use ringfuse::{
    Attr, Cx, Deferred, Done, Entry, Errno, FileType, Filesystem, InitConfig, NodeId, Reply,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDir, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, SetAttr, Statfs, TimeOrNow, Timestamp,
};
use rustix::fd::{AsFd as _, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags, RenameFlags, Statx, XattrFlags};

use crate::handles::{Backings, Handles};
use crate::io::{Io, fd_path};
use crate::nodes::{Nodes, ROOT};

/// Bits of a tag that name the slot; the rest is the slot's sequence number.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// The tag of operations nobody waits for (closes after FORGET): its index part is
/// `INDEX_MASK`, which no slot has.
const DETACHED: u64 = ringfuse::MAX_TAG;
/// Largest extended attribute value (`XATTR_SIZE_MAX`): the data buffers hold one.
pub(crate) const XATTR_SIZE_MAX: usize = 64 * 1024;

/// How the filesystem is set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// How long the kernel may trust names and attributes.
    pub ttl: Duration,
    /// Ask for kernel passthrough (`-o passthrough`).
    pub passthrough: bool,
    /// Operation slots made at start.
    pub slots: usize,
    /// Bytes per slot data buffer (the session's `max_write`, at least 64 KiB).
    pub data_len: usize,
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

/// What the filesystem did, printed at exit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    /// SQEs submitted to the loop's ring.
    pub ring_ops: u64,
    /// Blocking syscalls made in request handlers (no io_uring opcode for them).
    pub blocking: u64,
    /// READ requests that reached the server (none for files opened with kernel
    /// passthrough).
    pub reads: u64,
    /// WRITE requests that reached the server.
    pub writes: u64,
    /// OPENs and CREATEs answered with a kernel passthrough backing id.
    pub passthrough_opens: u64,
    /// Backing ids registered (`FUSE_DEV_IOC_BACKING_OPEN`), one per node open at once.
    pub backing_opened: u64,
    /// Backing ids closed (`FUSE_DEV_IOC_BACKING_CLOSE`) at the release of their node's
    /// last open file.
    pub backing_closed: u64,
    /// Operations cancelled when the loop started ending.
    pub cancelled: u64,
    /// Times a slot had to be added (more requests in flight than expected).
    pub slots_added: u64,
}

/// An open file: the backing descriptor, its node, and whether it was opened with kernel
/// passthrough (then it holds one reference to its node's backing id).
#[derive(Debug)]
struct File {
    fd: OwnedFd,
    node: u64,
    passthrough: bool,
    /// On a FUSE filesystem: READ, WRITE and CLOSE go to io-wq at once (`io.rs`, `punted`).
    punt: bool,
}

/// The reply an operation slot answers in the end.
#[derive(Debug)]
enum Waiter {
    None,
    Entry(Deferred<kind::Entry>),
    Attr(Deferred<kind::Attr>),
    Empty(Deferred<kind::Empty>),
    Open(Deferred<kind::Open>),
    Create(Deferred<kind::Create>),
    Write(Deferred<kind::Write>),
    Data(Deferred<kind::Data>),
    Xattr(Deferred<kind::Xattr>),
}

impl Waiter {
    /// Answers the request with `e` (nothing if it was interrupted meanwhile).
    fn fail(self, cx: &mut Cx<'_>, e: Errno) {
        fn err<K>(cx: &mut Cx<'_>, d: Deferred<K>, e: Errno) {
            if let Some(r) = cx.resume(d) {
                let _ = r.error(e);
            }
        }
        match self {
            Waiter::None => {}
            Waiter::Entry(d) => err(cx, d, e),
            Waiter::Attr(d) => err(cx, d, e),
            Waiter::Empty(d) => err(cx, d, e),
            Waiter::Open(d) => err(cx, d, e),
            Waiter::Create(d) => err(cx, d, e),
            Waiter::Write(d) => err(cx, d, e),
            Waiter::Data(d) => err(cx, d, e),
            Waiter::Xattr(d) => err(cx, d, e),
        }
    }
}

/// Who asked for a creation, when that is not root: the new inode is given to them (and
/// their group, unless it inherited a set-group-ID directory's group: `gid` is then
/// `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: Option<u32>,
}

/// What the operation in flight on a slot is, and what to do when it completes.
#[derive(Debug)]
enum Step {
    Idle,
    /// `openat2(parent, name, O_PATH | O_NOFOLLOW)` of LOOKUP (and the last steps of MKDIR,
    /// MKNOD, SYMLINK and LINK); then [`Step::EntryStat`].
    EntryOpen {
        owner: Option<Owner>,
    },
    /// `statx` of the new node's descriptor; then the entry is answered.
    EntryStat {
        fd: OwnedFd,
    },
    /// MKDIR, SYMLINK or LINK in `parent`; then [`Step::EntryOpen`] of the same name.
    MakeEntry {
        parent: u64,
        owner: Option<Owner>,
    },
    /// MKNOD of a regular file: `openat2(O_CREAT | O_EXCL)`; then close and
    /// [`Step::EntryOpen`].
    MknodOpen {
        parent: u64,
        owner: Option<Owner>,
    },
    /// `statx` of a node (GETATTR, and the end of SETATTR).
    GetAttr,
    /// SETATTR with a size and no open file: reopening the node for writing.
    SetAttrReopen {
        node: u64,
        set: SetAttr,
    },
    /// SETATTR's `ftruncate`; `temp` is the descriptor reopened for it.
    SetAttrTruncate {
        node: u64,
        set: SetAttr,
        temp: Option<OwnedFd>,
    },
    /// OPEN of `node`: reopening it with the caller's flags.
    Open {
        node: u64,
    },
    /// OPENDIR: reopening the directory for reading.
    OpenDir,
    /// CREATE: `openat2(O_CREAT)`; then [`Step::CreatePath`].
    Create {
        owner: Option<Owner>,
    },
    /// CREATE: an `O_PATH` descriptor of the new file for its node; then
    /// [`Step::CreateStat`].
    CreatePath {
        file: OwnedFd,
    },
    /// CREATE: `statx` of the new file; then the entry and the handle are answered.
    CreateStat {
        file: OwnedFd,
        path: OwnedFd,
    },
    /// READ, first move: a NOP, whose completion is the first call in which the deferred
    /// request's reply buffer can be had ([`Cx::deferred_buffer`] answers `None` in the
    /// call that deferred it); then [`Step::Read`].
    ReadArm {
        fh: u64,
        offset: u64,
        len: usize,
    },
    /// READ of the backing file straight into the reply buffer (the token is in [`Io`]).
    Read,
    /// WRITE from the slot's buffer.
    Write,
    /// GETXATTR into the slot's buffer.
    GetXattr,
    /// An operation answered with success or its errno: UNLINK, RMDIR, RENAME, FSYNC,
    /// FSYNCDIR, FALLOCATE, RELEASE, RELEASEDIR, SETXATTR.
    Simple,
}

impl Step {
    /// Whether a successful completion of this step queues another operation.
    fn chains(&self) -> bool {
        matches!(
            self,
            Step::EntryOpen { .. }
                | Step::MakeEntry { .. }
                | Step::MknodOpen { .. }
                | Step::SetAttrReopen { .. }
                | Step::SetAttrTruncate { .. }
                | Step::Create { .. }
                | Step::CreatePath { .. }
                | Step::ReadArm { .. }
        )
    }
}

/// One operation slot.
#[derive(Debug)]
struct Op {
    seq: u64,
    step: Step,
    waiter: Waiter,
    /// The nodes the request pinned (0: none), unpinned when it is answered.
    pins: [u64; 2],
}

impl Op {
    fn new() -> Self {
        Self {
            seq: 0,
            step: Step::Idle,
            waiter: Waiter::None,
            pins: [0; 2],
        }
    }
}

/// The passthrough filesystem.
pub(crate) struct Passthrough {
    nodes: Nodes,
    files: Handles<File>,
    dirs: Handles<OwnedFd>,
    io: Io,
    ops: Vec<Op>,
    free: Vec<usize>,
    /// `getdents64` lands here (READDIR, a blocking call).
    dirbuf: Vec<MaybeUninit<u8>>,
    /// LISTXATTR lands here (a blocking call).
    xbuf: Vec<u8>,
    ttl: Duration,
    kernel: KernelPassthrough,
    /// Backing ids by node (see [`Backings`]).
    backing: Backings,
    /// Whether a backing device (`st_dev`) is a FUSE filesystem's, learnt once per device.
    fuse_devs: HashMap<u64, bool>,
    /// The loop is ending: nothing new is queued.
    stopping: bool,
    counters: Counters,
}

/// A `rustix` error as a FUSE errno.
fn errno(e: rustix::io::Errno) -> Errno {
    Errno::new_or_eio(e.raw_os_error())
}

/// A completion's result: the value, or its errno.
fn result(res: i32) -> Result<u32, Errno> {
    match Errno::from_wire(res) {
        Some(e) => Err(e),
        None => u32::try_from(res).map_err(|_| Errno::EIO),
    }
}

/// A name from the kernel, checked: one path component, never `.` or `..` (the kernel
/// sends neither, but nothing may walk out of a directory through this server).
pub(crate) fn check_name(name: &CStr) -> Result<&[u8], Errno> {
    match name.to_bytes() {
        b"" | b"." | b".." => Err(Errno::EINVAL),
        n if n.contains(&b'/') => Err(Errno::EINVAL),
        n => Ok(n),
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

/// Whether device `dev` is a FUSE filesystem's, from `/proc/self/mountinfo`.
fn fuse_device(dev: u64) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| fuse_in_mountinfo(&text, dev))
}

/// Whether `mountinfo` (as in `/proc/self/mountinfo`: the third field is `major:minor`, the
/// first after ` - ` the type) mounts a FUSE filesystem (`fuse`, `fuseblk`, `fuse.*`) on
/// device `dev`.
fn fuse_in_mountinfo(mountinfo: &str, dev: u64) -> bool {
    let want = format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev));
    mountinfo.lines().any(|line| {
        let fstype = line
            .split_once(" - ")
            .and_then(|(_, rest)| rest.split(' ').next());
        line.split(' ').nth(2) == Some(want.as_str())
            && fstype.is_some_and(|t| t == "fuse" || t == "fuseblk" || t.starts_with("fuse."))
    })
}

/// The `d_type` of a `getdents64` entry (`DT_* = S_IF* >> 12`; `DT_UNKNOWN` = 0).
fn dtype(t: rustix::fs::FileType) -> u8 {
    match t {
        rustix::fs::FileType::Unknown => 0,
        t => (t.as_raw_mode() >> 12) as u8,
    }
}

/// The `(st_dev, st_ino)` key of a `statx` answer.
fn key_of(st: &Statx) -> (u64, u64) {
    (
        rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        st.stx_ino,
    )
}

/// Open flags for the backing file: the caller's, without the ones the server cannot or
/// need not honour: `O_DIRECT` needs aligned buffers; the kernel already did `O_CREAT`,
/// `O_EXCL` and `O_NOCTTY` (and `O_TRUNC`, or sends it as SETATTR); it also resolved the
/// path, so `O_NOFOLLOW` (which `cp -a` passes) would only make the reopen through the
/// `/proc/self/fd/N` magic link fail with ELOOP.
fn backing_flags(flags: u32) -> OFlags {
    OFlags::from_bits_retain(flags).difference(
        OFlags::DIRECT | OFlags::NOCTTY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
    )
}

impl Passthrough {
    /// A filesystem over `root` (an `O_PATH` descriptor of the source directory).
    pub(crate) fn new(root: OwnedFd, opts: Options) -> std::io::Result<Self> {
        let data_len = opts.data_len.max(XATTR_SIZE_MAX);
        let io = Io::new(opts.slots, data_len)?;
        Ok(Self {
            nodes: Nodes::new(root, 1024),
            files: Handles::with_capacity(256),
            dirs: Handles::with_capacity(64),
            io,
            ops: (0..opts.slots).map(|_| Op::new()).collect(),
            free: (0..opts.slots).rev().collect(),
            dirbuf: vec![MaybeUninit::new(0); 8192],
            xbuf: vec![0; XATTR_SIZE_MAX],
            ttl: opts.ttl,
            kernel: if opts.passthrough {
                KernelPassthrough::Asked
            } else {
                KernelPassthrough::Off
            },
            backing: Backings::default(),
            fuse_devs: HashMap::new(),
            stopping: false,
            counters: Counters::default(),
        })
    }

    /// What was done so far.
    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    /// Where kernel passthrough stands.
    pub(crate) fn kernel_passthrough(&self) -> KernelPassthrough {
        self.kernel
    }

    /// Takes a free slot (adding one if every slot is busy) and returns it with the tag of
    /// its next operation.
    fn take_slot(&mut self) -> Result<(usize, u64), Errno> {
        if self.stopping {
            // Nothing new once the loop is ending: it could wait on a backing filesystem
            // that never answers.
            return Err(Errno::ECANCELED);
        }
        let i = if let Some(i) = self.free.pop() {
            i
        } else {
            if self.ops.len() >= INDEX_MASK as usize {
                return Err(Errno::EAGAIN);
            }
            self.counters.slots_added += 1;
            self.ops.push(Op::new());
            self.io.add_slot()
        };
        Ok((i, self.next_tag(i)))
    }

    /// A new tag for slot `i`'s next operation.
    fn next_tag(&mut self, i: usize) -> u64 {
        let Some(op) = self.ops.get_mut(i) else {
            return DETACHED;
        };
        op.seq = (op.seq + 1) & (ringfuse::MAX_TAG >> INDEX_BITS);
        (op.seq << INDEX_BITS) | i as u64
    }

    /// Gives slot `i` back, unpinning the nodes its request used. A node forgotten while
    /// pinned has its descriptor closed here, at once (rare: a FORGET right after an
    /// interrupted request).
    fn put_slot(&mut self, i: usize) {
        if let Some(op) = self.ops.get_mut(i) {
            op.step = Step::Idle;
            op.waiter = Waiter::None;
            for id in core::mem::take(&mut op.pins) {
                if id != 0 {
                    drop(self.nodes.unpin(id));
                }
            }
            self.free.push(i);
        }
    }

    /// Takes a slot for a request on `nodes` (pinned until it is answered).
    fn start(&mut self, nodes: [u64; 2]) -> Result<(usize, u64), Errno> {
        let (i, tag) = self.take_slot()?;
        let mut pinned = [0; 2];
        for (slot, id) in pinned.iter_mut().zip(nodes) {
            if id != 0 && self.nodes.pin(id) {
                *slot = id;
            }
        }
        if let Some(op) = self.ops.get_mut(i) {
            op.pins = pinned;
        }
        Ok((i, tag))
    }

    /// After a submit: on success the request waits in slot `i` doing `step`; on failure
    /// the slot is freed and the request answered with the error.
    fn defer<K>(
        &mut self,
        i: usize,
        submitted: Result<(), Errno>,
        step: Step,
        reply: Reply<'_, K>,
        wrap: fn(Deferred<K>) -> Waiter,
    ) -> Done {
        match submitted {
            Ok(()) => {
                self.counters.ring_ops += 1;
                let (done, d) = reply.defer();
                if let Some(op) = self.ops.get_mut(i) {
                    op.step = step;
                    op.waiter = wrap(d);
                }
                done
            }
            Err(e) => {
                self.put_slot(i);
                reply.error(e)
            }
        }
    }

    /// Continues slot `i`'s request with another operation; on failure answers it.
    fn chain(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        submitted: Result<(), Errno>,
        step: Step,
        waiter: Waiter,
    ) {
        match submitted {
            Ok(()) => {
                self.counters.ring_ops += 1;
                if let Some(op) = self.ops.get_mut(i) {
                    op.step = step;
                    op.waiter = waiter;
                }
            }
            Err(e) => {
                waiter.fail(cx, e);
                self.put_slot(i);
            }
        }
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

    /// Who a creation in `parent` is for, if not root (a blocking `fstat` of the parent,
    /// for the non-root case only, to see whether it is set-group-ID).
    fn owner(&mut self, cx: &Cx<'_>, parent: u64) -> Option<Owner> {
        if cx.uid() == 0 {
            return None;
        }
        self.counters.blocking += 1;
        let sgid = self
            .nodes
            .fd(parent)
            .and_then(|fd| rustix::fs::fstat(fd).ok())
            .is_some_and(|st| st.st_mode & 0o2000 != 0);
        Some(Owner {
            uid: cx.uid(),
            gid: (!sgid).then(|| cx.gid()),
        })
    }

    /// Gives a new inode to its non-root creator (a blocking `fchownat`: io_uring has no
    /// chown; the server creates everything as root).
    fn chown_new(&mut self, fd: BorrowedFd<'_>, owner: Option<Owner>) {
        let Some(o) = owner else { return };
        self.counters.blocking += 1;
        let _ = rustix::fs::chownat(
            fd,
            c"",
            Some(rustix::fs::Uid::from_raw(o.uid)),
            o.gid.map(rustix::fs::Gid::from_raw),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        );
    }

    /// Queues the `O_PATH` open of `parent/name` (the name is in slot `i`).
    fn entry_open(&mut self, cx: &mut Cx<'_>, i: usize, parent: u64) -> Result<(), Errno> {
        let tag = self.next_tag(i);
        let dirfd = self.nodes.fd(parent).ok_or(Errno::ENOENT)?;
        self.io
            .open_beneath(cx, i, tag, dirfd, OFlags::PATH | OFlags::NOFOLLOW, 0)
    }

    /// Applies SETATTR's mode, owner and times (blocking: io_uring has no chmod, chown or
    /// utimensat).
    fn set_meta(&mut self, node: u64, set: &SetAttr) -> Result<(), Errno> {
        let fd = self.nodes.fd(node).ok_or(Errno::ENOENT)?;
        if let Some(mode) = set.mode {
            self.counters.blocking += 1;
            let mut buf = [0u8; 16];
            let num = fd_path(&mut buf, b"", fd)?;
            rustix::fs::chmodat(
                self.io.procfd(),
                num,
                Mode::from_raw_mode(mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(errno)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            self.counters.blocking += 1;
            rustix::fs::chownat(
                fd,
                c"",
                set.uid.map(rustix::fs::Uid::from_raw),
                set.gid.map(rustix::fs::Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
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
            self.counters.blocking += 1;
            rustix::fs::utimensat(
                fd,
                c"",
                &times,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        Ok(())
    }

    /// SETATTR after the truncate (if any): the metadata, then `statx`.
    fn setattr_rest(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        node: u64,
        set: &SetAttr,
        waiter: Waiter,
    ) {
        let submitted = self.set_meta(node, set).and_then(|()| {
            let tag = self.next_tag(i);
            let fd = self.nodes.fd(node).ok_or(Errno::ENOENT)?;
            self.io.stat(cx, i, tag, fd)
        });
        self.chain(cx, i, submitted, Step::GetAttr, waiter);
    }

    /// The last step of an entry: the node's descriptor `fd` and the `statx` in slot `i`.
    fn answer_entry(&mut self, cx: &mut Cx<'_>, i: usize, fd: OwnedFd, waiter: Waiter) {
        let (attr, key) = match self.io.statx(i) {
            Ok(st) => (attr_of(st), key_of(st)),
            Err(e) => {
                waiter.fail(cx, e);
                Io::close_detached(cx, fd, DETACHED);
                return;
            }
        };
        let Waiter::Entry(d) = waiter else {
            waiter.fail(cx, Errno::EIO);
            Io::close_detached(cx, fd, DETACHED);
            return;
        };
        let Some(reply) = cx.resume(d) else {
            // Interrupted: the kernel never sees this entry, so it is not counted.
            Io::close_detached(cx, fd, DETACHED);
            return;
        };
        let (node, generation, extra) = self.nodes.add_lookup(fd, key);
        let _ = reply.entry(&self.entry(node, generation, attr));
        if let Some(extra) = extra {
            Io::close_detached(cx, extra, DETACHED);
        }
    }

    /// The last step of CREATE.
    fn answer_create(
        &mut self,
        cx: &mut Cx<'_>,
        i: usize,
        file: OwnedFd,
        path: OwnedFd,
        waiter: Waiter,
    ) {
        let (attr, key) = match self.io.statx(i) {
            Ok(st) => (attr_of(st), key_of(st)),
            Err(e) => {
                waiter.fail(cx, e);
                Io::close_detached(cx, file, DETACHED);
                Io::close_detached(cx, path, DETACHED);
                return;
            }
        };
        let Waiter::Create(d) = waiter else {
            waiter.fail(cx, Errno::EIO);
            Io::close_detached(cx, file, DETACHED);
            Io::close_detached(cx, path, DETACHED);
            return;
        };
        let (node, generation, extra) = self.nodes.add_lookup(path, key);
        if let Some(extra) = extra {
            Io::close_detached(cx, extra, DETACHED);
        }
        let backing = self.acquire_backing(cx, node, file.as_fd());
        let punt = self.punt_io(node);
        let Some(reply) = cx.resume(d) else {
            // Interrupted: the kernel never sees this entry nor this open file.
            if backing.is_some() {
                self.release_backing(cx, node);
            }
            if let Some(fd) = self.nodes.forget(node, 1) {
                Io::close_detached(cx, fd, DETACHED);
            }
            Io::close_detached(cx, file, DETACHED);
            return;
        };
        let fh = self.files.insert(File {
            fd: file,
            node,
            passthrough: backing.is_some(),
            punt,
        });
        let entry = self.entry(node, generation, attr);
        let _ = match backing {
            Some(id) => {
                self.counters.passthrough_opens += 1;
                reply.created_passthrough(&entry, fh, FopenFlags::EMPTY, id)
            }
            None => reply.created(&entry, fh, FopenFlags::EMPTY),
        };
    }

    /// The last step of OPEN of `node`: `fd` is the reopened backing file.
    fn answer_open(&mut self, cx: &mut Cx<'_>, node: u64, fd: OwnedFd, waiter: Waiter) {
        let Waiter::Open(d) = waiter else {
            waiter.fail(cx, Errno::EIO);
            Io::close_detached(cx, fd, DETACHED);
            return;
        };
        let backing = self.acquire_backing(cx, node, fd.as_fd());
        let punt = self.punt_io(node);
        let Some(reply) = cx.resume(d) else {
            if backing.is_some() {
                self.release_backing(cx, node);
            }
            Io::close_detached(cx, fd, DETACHED);
            return;
        };
        let fh = self.files.insert(File {
            fd,
            node,
            passthrough: backing.is_some(),
            punt,
        });
        let _ = match backing {
            Some(id) => {
                self.counters.passthrough_opens += 1;
                reply.opened_passthrough(fh, FopenFlags::EMPTY, id)
            }
            None => reply.opened(fh, FopenFlags::EMPTY),
        };
    }

    /// The kernel passthrough backing id for a new open file of `node` (`fd`, an open
    /// regular file), if kernel passthrough is on: the node's id if one of its files is
    /// open, else a new one registered from `fd` (a blocking ioctl). Each `Some` is one
    /// reference, given back by [`release_backing`](Self::release_backing) at RELEASE.
    /// `None`: serve this file through the ring.
    fn acquire_backing(&mut self, cx: &mut Cx<'_>, node: u64, fd: BorrowedFd<'_>) -> Option<i32> {
        if !matches!(
            self.kernel,
            KernelPassthrough::Asked | KernelPassthrough::On
        ) {
            return None;
        }
        if let Some(id) = self.backing.acquire(node) {
            return Some(id);
        }
        self.counters.blocking += 1;
        match cx.backing_open(fd) {
            Ok(id) => {
                self.kernel = KernelPassthrough::On;
                self.counters.backing_opened += 1;
                self.backing.insert(node, id);
                Some(id)
            }
            Err(e) if e == Errno::EPERM || self.kernel == KernelPassthrough::Asked => {
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
                self.kernel = KernelPassthrough::Refused(Some(e));
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
    /// the id (a blocking ioctl).
    fn release_backing(&mut self, cx: &mut Cx<'_>, node: u64) {
        let Some(id) = self.backing.release(node) else {
            return;
        };
        self.counters.blocking += 1;
        if cx.backing_close(id).is_ok() {
            self.counters.backing_closed += 1;
        }
    }

    /// Whether `node`'s file lives on a FUSE filesystem, whose READ and WRITE must not be
    /// tried inline by io_uring (`io.rs`, `punted`). Learnt once per backing device from
    /// `/proc/self/mountinfo` (a blocking read of procfs, never of the backing filesystem).
    fn punt_io(&mut self, node: u64) -> bool {
        let Some(dev) = self.nodes.dev(node) else {
            return false;
        };
        if let Some(&fuse) = self.fuse_devs.get(&dev) {
            return fuse;
        }
        self.counters.blocking += 1;
        let fuse = fuse_device(dev);
        self.fuse_devs.insert(dev, fuse);
        fuse
    }

    /// Backing ids still registered (at exit: opens the kernel never released).
    pub(crate) fn backing_ids(&self) -> usize {
        self.backing.len()
    }

    /// A failed operation: closes what the request held and answers it with `err`.
    fn abort(cx: &mut Cx<'_>, step: Step, waiter: Waiter, err: Errno) {
        waiter.fail(cx, err);
        match step {
            Step::EntryStat { fd }
            | Step::CreatePath { file: fd }
            | Step::SetAttrTruncate { temp: Some(fd), .. } => Io::close_detached(cx, fd, DETACHED),
            Step::CreateStat { file, path } => {
                Io::close_detached(cx, file, DETACHED);
                Io::close_detached(cx, path, DETACHED);
            }
            _ => {}
        }
    }

    /// One completion of slot `i` with result `res` (`opened`: the descriptor an open
    /// made): the next step, or the answer. The slot is freed unless a next step was
    /// queued.
    #[allow(clippy::too_many_lines)] // one arm per step reads best whole
    fn advance(
        &mut self,
        cx: &mut Cx<'_>,
        slot: usize,
        (step, waiter): (Step, Waiter),
        res: i32,
        opened: Option<OwnedFd>,
    ) {
        let value = match result(res) {
            Ok(v) => v,
            Err(err) => {
                if let Some(fd) = opened {
                    Io::close_detached(cx, fd, DETACHED);
                }
                Self::abort(cx, step, waiter, err);
                return self.put_slot(slot);
            }
        };
        if self.stopping && step.chains() {
            // The loop is ending: queue no next step (it could wait forever).
            if let Some(fd) = opened {
                Io::close_detached(cx, fd, DETACHED);
            }
            Self::abort(cx, step, waiter, Errno::ECANCELED);
            return self.put_slot(slot);
        }
        match step {
            Step::Idle => waiter.fail(cx, Errno::EIO),
            Step::EntryOpen { owner } => {
                let Some(fd) = opened else {
                    waiter.fail(cx, Errno::EIO);
                    return self.put_slot(slot);
                };
                self.chown_new(fd.as_fd(), owner);
                let tag = self.next_tag(slot);
                let submitted = self.io.stat(cx, slot, tag, fd.as_fd());
                return self.chain(cx, slot, submitted, Step::EntryStat { fd }, waiter);
            }
            Step::EntryStat { fd } => self.answer_entry(cx, slot, fd, waiter),
            Step::MakeEntry { parent, owner } => {
                let submitted = self.entry_open(cx, slot, parent);
                return self.chain(cx, slot, submitted, Step::EntryOpen { owner }, waiter);
            }
            Step::MknodOpen { parent, owner } => {
                if let Some(fd) = opened {
                    Io::close_detached(cx, fd, DETACHED);
                }
                let submitted = self.entry_open(cx, slot, parent);
                return self.chain(cx, slot, submitted, Step::EntryOpen { owner }, waiter);
            }
            Step::GetAttr => {
                let attr = self.io.statx(slot).map(attr_of);
                match (waiter, attr) {
                    (Waiter::Attr(d), Ok(attr)) => {
                        if let Some(reply) = cx.resume(d) {
                            let _ = reply.attr(&attr, self.ttl);
                        }
                    }
                    (w, Err(e)) => w.fail(cx, e),
                    (w, Ok(_)) => w.fail(cx, Errno::EIO),
                }
            }
            Step::SetAttrReopen { node, set } => {
                let Some(fd) = opened else {
                    waiter.fail(cx, Errno::EIO);
                    return self.put_slot(slot);
                };
                let tag = self.next_tag(slot);
                let size = set.size.unwrap_or(0);
                let submitted = cx.submit(&Sqe::ftruncate(fd.as_fd(), size), tag);
                let temp = Some(fd);
                let step = Step::SetAttrTruncate { node, set, temp };
                return self.chain(cx, slot, submitted, step, waiter);
            }
            Step::SetAttrTruncate { node, set, temp } => {
                if let Some(fd) = temp {
                    Io::close_detached(cx, fd, DETACHED);
                }
                return self.setattr_rest(cx, slot, node, &set, waiter);
            }
            Step::Open { node } => match opened {
                Some(fd) => self.answer_open(cx, node, fd, waiter),
                None => waiter.fail(cx, Errno::EIO),
            },
            Step::OpenDir => match (waiter, opened) {
                (Waiter::Open(d), Some(fd)) => match cx.resume(d) {
                    Some(reply) => {
                        let fh = self.dirs.insert(fd);
                        let _ = reply.opened(fh, FopenFlags::EMPTY);
                    }
                    None => Io::close_detached(cx, fd, DETACHED),
                },
                (w, _) => w.fail(cx, Errno::EIO),
            },
            Step::Create { owner } => {
                let Some(file) = opened else {
                    waiter.fail(cx, Errno::EIO);
                    return self.put_slot(slot);
                };
                self.chown_new(file.as_fd(), owner);
                let tag = self.next_tag(slot);
                // Not O_NOFOLLOW: that would open the magic link itself.
                let submitted = self.io.reopen(cx, slot, tag, file.as_fd(), OFlags::PATH);
                return self.chain(cx, slot, submitted, Step::CreatePath { file }, waiter);
            }
            Step::CreatePath { file } => {
                let Some(path) = opened else {
                    waiter.fail(cx, Errno::EIO);
                    Io::close_detached(cx, file, DETACHED);
                    return self.put_slot(slot);
                };
                let tag = self.next_tag(slot);
                let submitted = self.io.stat(cx, slot, tag, path.as_fd());
                let step = Step::CreateStat { file, path };
                return self.chain(cx, slot, submitted, step, waiter);
            }
            Step::CreateStat { file, path } => self.answer_create(cx, slot, file, path, waiter),
            Step::ReadArm { fh, offset, len } => {
                let Waiter::Data(d) = waiter else {
                    waiter.fail(cx, Errno::EIO);
                    return self.put_slot(slot);
                };
                let tag = self.next_tag(slot);
                let Some(file) = self.files.get(fh) else {
                    Waiter::Data(d).fail(cx, Errno::EBADF);
                    return self.put_slot(slot);
                };
                let (fd, punt) = (file.fd.as_fd(), file.punt);
                match self
                    .io
                    .read_reply(cx, slot, tag, fd, (len, offset), punt, d)
                {
                    Ok(()) => {
                        // The token waits in `Io` until the READ completed.
                        return self.chain(cx, slot, Ok(()), Step::Read, Waiter::None);
                    }
                    Err((e, d)) => Waiter::Data(d).fail(cx, e),
                }
            }
            Step::Read => match waiter {
                Waiter::Data(d) => {
                    if let Some(reply) = cx.resume(d) {
                        // The data is in the reply buffer already: no copy.
                        let _ = reply.commit(value as usize);
                    }
                }
                w => w.fail(cx, Errno::EIO),
            },
            Step::Write => match waiter {
                Waiter::Write(d) => {
                    if let Some(reply) = cx.resume(d) {
                        let _ = reply.written(value);
                    }
                }
                w => w.fail(cx, Errno::EIO),
            },
            Step::GetXattr => match waiter {
                Waiter::Xattr(d) => {
                    if let Some(reply) = cx.resume(d) {
                        // A size query (size 0) answers with the length only; the buffer
                        // holds at least XATTR_SIZE_MAX bytes.
                        let _ = match self.io.data(slot, value as usize) {
                            Ok(bytes) => reply.value(bytes),
                            Err(_) => reply.error(Errno::E2BIG),
                        };
                    }
                }
                w => w.fail(cx, Errno::EIO),
            },
            Step::Simple => match waiter {
                Waiter::Empty(d) => {
                    if let Some(reply) = cx.resume(d) {
                        let _ = reply.ok();
                    }
                }
                w => w.fail(cx, Errno::EIO),
            },
        }
        self.put_slot(slot);
    }
}

impl Filesystem for Passthrough {
    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        if self.kernel == KernelPassthrough::Asked {
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
                self.kernel = KernelPassthrough::Refused(None);
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        // Descriptors close when dropped; nothing is in flight any more. Backing ids go
        // with the connection.
        self.files.drain().for_each(drop);
        self.dirs.drain().for_each(drop);
    }

    fn stopping(&mut self, cx: &mut Cx<'_>) {
        // The loop waits for every operation queued here: cancel them all, since any may
        // wait on a backing filesystem that never answers (a hung network or FUSE mount).
        // Each completes early with -ECANCELED (or -EINTR, or normally if it was done), and
        // its request is answered with that; `take_slot` and `advance` queue nothing new.
        self.stopping = true;
        for (i, op) in self.ops.iter().enumerate() {
            if matches!(op.step, Step::Idle) {
                continue;
            }
            let tag = (op.seq << INDEX_BITS) | i as u64;
            if cx.cancel(tag).is_ok() {
                self.counters.cancelled += 1;
            }
        }
    }

    fn lookup(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let i = match self.start([parent.0, 0]) {
            Ok((i, _)) => i,
            Err(e) => return reply.error(e),
        };
        let submitted = self
            .io
            .set_name(i, name)
            .and_then(|()| self.entry_open(cx, i, parent.0));
        self.defer(
            i,
            submitted,
            Step::EntryOpen { owner: None },
            reply,
            Waiter::Entry,
        )
    }

    fn forget(&mut self, cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {
        if let Some(fd) = self.nodes.forget(node.0, nlookup) {
            self.counters.ring_ops += 1;
            Io::close_detached(cx, fd, DETACHED);
        }
    }

    fn getattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.nodes.fd(node.0) {
            Some(fd) => self.io.stat(cx, i, tag, fd),
            None => Err(Errno::ENOENT),
        };
        self.defer(i, submitted, Step::GetAttr, reply, Waiter::Attr)
    }

    fn setattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        set: &SetAttr,
        reply: ReplyAttr<'_>,
    ) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let Some(nfd) = self.nodes.fd(node.0) else {
            self.put_slot(i);
            return reply.error(Errno::ENOENT);
        };
        if let Some(size) = set.size {
            // Truncate first (it changes mtime), through the ring: on the open file if the
            // kernel named one, else on the node reopened for writing.
            if let Some(file) = set.fh.and_then(|fh| self.files.get(fh)) {
                let submitted = cx.submit(&Sqe::ftruncate(file.fd.as_fd(), size), tag);
                let step = Step::SetAttrTruncate {
                    node: node.0,
                    set: *set,
                    temp: None,
                };
                return self.defer(i, submitted, step, reply, Waiter::Attr);
            }
            let submitted = self.io.reopen(cx, i, tag, nfd, OFlags::WRONLY);
            let step = Step::SetAttrReopen {
                node: node.0,
                set: *set,
            };
            return self.defer(i, submitted, step, reply, Waiter::Attr);
        }
        let submitted = self.set_meta(node.0, set).and_then(|()| {
            let fd = self.nodes.fd(node.0).ok_or(Errno::ENOENT)?;
            self.io.stat(cx, i, tag, fd)
        });
        self.defer(i, submitted, Step::GetAttr, reply, Waiter::Attr)
    }

    fn readlink(&mut self, _cx: &mut Cx<'_>, node: NodeId, mut reply: ReplyData<'_>) -> Done {
        // Blocking: io_uring has no readlink. The target goes straight into the reply.
        let Some(fd) = self.nodes.fd(node.0) else {
            return reply.error(Errno::ENOENT);
        };
        self.counters.blocking += 1;
        match rustix::fs::readlinkat_raw(fd, c"", reply.buffer()) {
            Ok(n) => reply.commit(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        target: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self
            .io
            .set_name(i, name)
            .and_then(|()| self.io.set_aux(i, target.to_bytes()))
            .and_then(|()| {
                let dirfd = self.nodes.fd(parent.0).ok_or(Errno::ENOENT)?;
                self.io.symlink(cx, i, tag, dirfd)
            });
        let step = Step::MakeEntry {
            parent: parent.0,
            owner: self.owner(cx, parent.0),
        };
        self.defer(i, submitted, step, reply, Waiter::Entry)
    }

    fn mknod(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let cname = name;
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let owner = self.owner(cx, parent.0);
        if let Err(e) = self.io.set_name(i, name) {
            self.put_slot(i);
            return reply.error(e);
        }
        let Some(dirfd) = self.nodes.fd(parent.0) else {
            self.put_slot(i);
            return reply.error(Errno::ENOENT);
        };
        let kind = FileType::from_mode(mode);
        if kind == Some(FileType::RegularFile) {
            let flags = OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
            let submitted = self.io.open_beneath(cx, i, tag, dirfd, flags, mode);
            let step = Step::MknodOpen {
                parent: parent.0,
                owner,
            };
            return self.defer(i, submitted, step, reply, Waiter::Entry);
        }
        // FIFOs, sockets and devices: blocking mknodat (io_uring has no mknod).
        let file_type = match kind {
            Some(FileType::NamedPipe) => rustix::fs::FileType::Fifo,
            Some(FileType::Socket) => rustix::fs::FileType::Socket,
            Some(FileType::CharDevice) => rustix::fs::FileType::CharacterDevice,
            Some(FileType::BlockDevice) => rustix::fs::FileType::BlockDevice,
            _ => {
                self.put_slot(i);
                return reply.error(Errno::EINVAL);
            }
        };
        let (major, minor) = decode_dev(rdev);
        self.counters.blocking += 1;
        let created = rustix::fs::mknodat(
            dirfd,
            cname,
            file_type,
            Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::makedev(major, minor),
        );
        let submitted = created
            .map_err(errno)
            .and_then(|()| self.entry_open(cx, i, parent.0));
        self.defer(
            i,
            submitted,
            Step::EntryOpen { owner },
            reply,
            Waiter::Entry,
        )
    }

    fn mkdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self.io.set_name(i, name).and_then(|()| {
            let dirfd = self.nodes.fd(parent.0).ok_or(Errno::ENOENT)?;
            self.io.mkdir(cx, i, tag, dirfd, mode)
        });
        let step = Step::MakeEntry {
            parent: parent.0,
            owner: self.owner(cx, parent.0),
        };
        self.defer(i, submitted, step, reply, Waiter::Entry)
    }

    fn unlink(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.remove(cx, parent, name, false, reply)
    }

    fn rmdir(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        self.remove(cx, parent, name, true, reply)
    }

    fn rename(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        newparent: NodeId,
        newname: &CStr,
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let (name, newname) = match (check_name(name), check_name(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, newparent.0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self
            .io
            .set_name(i, name)
            .and_then(|()| self.io.set_aux(i, newname))
            .and_then(|()| {
                let old = self.nodes.fd(parent.0).ok_or(Errno::ENOENT)?;
                let new = self.nodes.fd(newparent.0).ok_or(Errno::ENOENT)?;
                let flags = RenameFlags::from_bits_retain(flags);
                self.io.rename(cx, i, tag, old, new, flags)
            });
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    fn link(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let newname = match check_name(newname) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([node.0, newparent.0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self.io.set_name(i, newname).and_then(|()| {
            let fd = self.nodes.fd(node.0).ok_or(Errno::ENOENT)?;
            let dirfd = self.nodes.fd(newparent.0).ok_or(Errno::ENOENT)?;
            self.io.link(cx, i, tag, fd, dirfd)
        });
        let step = Step::MakeEntry {
            parent: newparent.0,
            owner: None,
        };
        self.defer(i, submitted, step, reply, Waiter::Entry)
    }

    fn open(&mut self, cx: &mut Cx<'_>, node: NodeId, flags: u32, reply: ReplyOpen<'_>) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.nodes.fd(node.0) {
            Some(fd) => self.io.reopen(cx, i, tag, fd, backing_flags(flags)),
            None => Err(Errno::ENOENT),
        };
        let step = Step::Open { node: node.0 };
        self.defer(i, submitted, step, reply, Waiter::Open)
    }

    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        offset: u64,
        size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        self.counters.reads += 1;
        if self.files.get(fh).is_none() {
            return reply.error(Errno::EBADF);
        }
        let (i, tag) = match self.take_slot() {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let len = reply.max_len().min(size as usize);
        // The backing READ goes straight into this request's reply buffer, which the
        // session hands out (`Cx::deferred_buffer`) only from a call after the one that
        // deferred the request: a NOP's completion is that call (see main.rs, "Reads").
        let submitted = cx.submit(&Sqe::nop(), tag);
        let step = Step::ReadArm { fh, offset, len };
        self.defer(i, submitted, step, reply, Waiter::Data)
    }

    fn write(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        offset: u64,
        data: &[u8],
        _write_flags: u32,
        _flags: u32,
        reply: ReplyWrite<'_>,
    ) -> Done {
        // `data` is borrowed for this call only and the backing WRITE outlives it: the data
        // is copied into the slot's buffer (see main.rs, "Reads").
        self.counters.writes += 1;
        let (i, tag) = match self.take_slot() {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.files.get(fh) {
            Some(f) => self
                .io
                .write(cx, i, tag, f.fd.as_fd(), data, offset, f.punt),
            None => Err(Errno::EBADF),
        };
        self.defer(i, submitted, Step::Write, reply, Waiter::Write)
    }

    fn release(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        _flags: u32,
        _release_flags: u32,
        _lock_owner: u64,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let Some(file) = self.files.remove(fh) else {
            return reply.error(Errno::EBADF);
        };
        if file.passthrough {
            self.release_backing(cx, file.node);
        }
        self.close_and_answer(cx, file.fd, file.punt, reply)
    }

    fn fsync(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let (i, tag) = match self.take_slot() {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.files.get(fh) {
            Some(f) => Io::fsync(cx, f.fd.as_fd(), datasync, tag),
            None => Err(Errno::EBADF),
        };
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    fn opendir(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        _flags: u32,
        reply: ReplyOpen<'_>,
    ) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.nodes.fd(node.0) {
            Some(fd) => self
                .io
                .reopen(cx, i, tag, fd, OFlags::RDONLY | OFlags::DIRECTORY),
            None => Err(Errno::ENOENT),
        };
        self.defer(i, submitted, Step::OpenDir, reply, Waiter::Open)
    }

    fn readdir(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        // Blocking: io_uring has no getdents. One lseek to the kernel's cookie (the
        // backing filesystem's d_off), then one getdents64 per buffer. Each entry's type is
        // the backing d_type as it is (DT_UNKNOWN too: the caller's kernel then asks with
        // LOOKUP), so no entry costs a stat here.
        let Some(dfd) = self.dirs.get(fh) else {
            return reply.error(Errno::EBADF);
        };
        self.counters.blocking += 2;
        if let Err(e) = rustix::fs::seek(dfd, rustix::fs::SeekFrom::Start(offset)) {
            return reply.error(errno(e));
        }
        let buf = &mut self.dirbuf;
        reply.dir(|fill| {
            let mut raw = rustix::fs::RawDir::new(dfd, buf);
            while let Some(entry) = raw.next() {
                let Ok(entry) = entry else { break };
                match fill.add_dtype(
                    entry.ino(),
                    entry.next_entry_cookie(),
                    dtype(entry.file_type()),
                    entry.file_name().to_bytes(),
                ) {
                    Ok(true) => {}
                    Ok(false) | Err(_) => break,
                }
            }
        })
    }

    fn releasedir(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        _flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        match self.dirs.remove(fh) {
            Some(fd) => self.close_and_answer(cx, fd, false, reply),
            None => reply.error(Errno::EBADF),
        }
    }

    fn fsyncdir(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let (i, tag) = match self.take_slot() {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.dirs.get(fh) {
            Some(fd) => Io::fsync(cx, fd.as_fd(), datasync, tag),
            None => Err(Errno::EBADF),
        };
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    fn statfs(&mut self, _cx: &mut Cx<'_>, _node: NodeId, reply: ReplyStatfs<'_>) -> Done {
        // Blocking: io_uring has no statfs.
        let Some(root) = self.nodes.fd(ROOT) else {
            return reply.error(Errno::EIO);
        };
        self.counters.blocking += 1;
        match rustix::fs::fstatvfs(root) {
            Ok(s) => reply.statfs(&Statfs {
                blocks: s.f_blocks,
                bfree: s.f_bfree,
                bavail: s.f_bavail,
                files: s.f_files,
                ffree: s.f_ffree,
                bsize: u32::try_from(s.f_bsize).unwrap_or(u32::MAX),
                namelen: u32::try_from(s.f_namemax).unwrap_or(255),
                frsize: u32::try_from(s.f_frsize).unwrap_or(u32::MAX),
            }),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self.io.set_name(i, name.to_bytes()).and_then(|()| {
            let fd = self.nodes.fd(node.0).ok_or(Errno::ENOENT)?;
            let flags = XattrFlags::from_bits_retain(flags);
            self.io.setxattr(cx, i, tag, fd, value, flags)
        });
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    fn getxattr(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyXattr<'_>,
    ) -> Done {
        let (i, tag) = match self.start([node.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let size = reply.size() as usize;
        let submitted = self.io.set_name(i, name.to_bytes()).and_then(|()| {
            let fd = self.nodes.fd(node.0).ok_or(Errno::ENOENT)?;
            self.io.getxattr(cx, i, tag, fd, size)
        });
        self.defer(i, submitted, Step::GetXattr, reply, Waiter::Xattr)
    }

    fn listxattr(&mut self, _cx: &mut Cx<'_>, node: NodeId, reply: ReplyXattr<'_>) -> Done {
        // Blocking: io_uring has no listxattr.
        let Some(fd) = self.nodes.fd(node.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut path = [0u8; 40];
        let path = match fd_path(&mut path, b"/proc/self/fd/", fd) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.counters.blocking += 1;
        match rustix::fs::listxattr(path, &mut self.xbuf[..]) {
            Ok(n) => reply.value(self.xbuf.get(..n).unwrap_or_default()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        name: &CStr,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        // Blocking: io_uring has no removexattr.
        let Some(fd) = self.nodes.fd(node.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut path = [0u8; 40];
        let path = match fd_path(&mut path, b"/proc/self/fd/", fd) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        self.counters.blocking += 1;
        match rustix::fs::removexattr(path, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
        flags: u32,
        reply: ReplyCreate<'_>,
    ) -> Done {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let owner = self.owner(cx, parent.0);
        let submitted = self.io.set_name(i, name).and_then(|()| {
            let dirfd = self.nodes.fd(parent.0).ok_or(Errno::ENOENT)?;
            // O_NOFOLLOW: never create through a symlink (RESOLVE_NO_SYMLINKS refuses it
            // too).
            let flags = backing_flags(flags) | OFlags::CREATE | OFlags::NOFOLLOW;
            self.io.open_beneath(cx, i, tag, dirfd, flags, mode)
        });
        self.defer(i, submitted, Step::Create { owner }, reply, Waiter::Create)
    }

    fn fallocate(
        &mut self,
        cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let (i, tag) = match self.take_slot() {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = match self.files.get(fh) {
            Some(f) => {
                let mode = FallocateFlags::from_bits_retain(mode);
                cx.submit(&Sqe::fallocate(f.fd.as_fd(), mode, offset, length), tag)
            }
            None => Err(Errno::EBADF),
        };
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    fn lseek(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        fh: u64,
        offset: u64,
        whence: u32,
        reply: ReplyLseek<'_>,
    ) -> Done {
        // Blocking: io_uring has no lseek (only SEEK_DATA and SEEK_HOLE come here). The
        // file position it moves is not used: reads and writes carry their offsets.
        let Some(f) = self.files.get(fh) else {
            return reply.error(Errno::EBADF);
        };
        let pos = match whence {
            3 => rustix::fs::SeekFrom::Data(offset),
            4 => rustix::fs::SeekFrom::Hole(offset),
            _ => return reply.error(Errno::EINVAL),
        };
        self.counters.blocking += 1;
        match rustix::fs::seek(&f.fd, pos) {
            Ok(at) => reply.offset(at),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn completion(&mut self, cx: &mut Cx<'_>, tag: u64, result: i32, _flags: u32) {
        if tag & INDEX_MASK == INDEX_MASK {
            // A detached close: nobody waits for it.
            return;
        }
        let i = (tag & INDEX_MASK) as usize;
        let Some(op) = self.ops.get_mut(i) else {
            return;
        };
        if op.seq != tag >> INDEX_BITS {
            eprintln!("passthrough: stale completion (tag {tag:#x}) ignored");
            return;
        }
        let step = core::mem::replace(&mut op.step, Step::Idle);
        let mut waiter = core::mem::replace(&mut op.waiter, Waiter::None);
        let opened = self.io.completed(i, result);
        if let Some(d) = self.io.take_reply(i) {
            // A READ into the reply buffer completed: the token can be resumed now.
            waiter = Waiter::Data(d);
        }
        self.advance(cx, i, (step, waiter), result, opened);
    }
}

impl Passthrough {
    /// UNLINK and RMDIR.
    fn remove(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        dir: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let (i, tag) = match self.start([parent.0, 0]) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let submitted = self.io.set_name(i, name).and_then(|()| {
            let dirfd = self.nodes.fd(parent.0).ok_or(Errno::ENOENT)?;
            self.io.unlink(cx, i, tag, dirfd, dir)
        });
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }

    /// RELEASE and RELEASEDIR: closes `fd` through the ring (`punt`: see `io.rs`) and
    /// answers when it is closed.
    fn close_and_answer(
        &mut self,
        cx: &mut Cx<'_>,
        fd: OwnedFd,
        punt: bool,
        reply: ReplyEmpty<'_>,
    ) -> Done {
        let Ok((i, tag)) = self.take_slot() else {
            drop(fd);
            return reply.ok();
        };
        let submitted = Io::close(cx, fd, tag, punt);
        self.defer(i, submitted, Step::Simple, reply, Waiter::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        assert_eq!(check_name(c"a.txt"), Ok(&b"a.txt"[..]));
        assert_eq!(check_name(c"..."), Ok(&b"..."[..]));
        for bad in [c"", c".", c"..", c"a/b", c"/", c"../x"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 65536), (4095, 0xfffff)] {
            assert_eq!(decode_dev(encode_dev(major, minor)), (major, minor));
        }
        // /dev/null is 1:3 = 0x103 in the old encoding too.
        assert_eq!(encode_dev(1, 3), 0x103);
    }

    #[test]
    fn fuse_devices_are_found_in_mountinfo() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    98 22 0:61 / /mnt/a rw,nosuid,nodev shared:50 - fuse.passthrough /src rw,user_id=0\n\
                    99 22 0:62 / /mnt/b rw shared:51 - fuseblk /dev/sdb rw\n\
                    100 22 0:63 / /mnt/c rw shared:52 - tmpfs tmpfs rw\n";
        let dev = rustix::fs::makedev;
        assert!(fuse_in_mountinfo(text, dev(0, 61)));
        assert!(fuse_in_mountinfo(text, dev(0, 62)));
        assert!(!fuse_in_mountinfo(text, dev(0, 63)), "tmpfs");
        assert!(!fuse_in_mountinfo(text, dev(254, 0)), "ext4");
        assert!(!fuse_in_mountinfo(text, dev(0, 6)), "a prefix of 0:61");
    }

    #[test]
    fn dirent_types_are_passed_as_they_are() {
        use rustix::fs::FileType as T;
        assert_eq!(dtype(T::Unknown), 0);
        assert_eq!(dtype(T::Fifo), 1);
        assert_eq!(dtype(T::CharacterDevice), 2);
        assert_eq!(dtype(T::Directory), 4);
        assert_eq!(dtype(T::BlockDevice), 6);
        assert_eq!(dtype(T::RegularFile), 8);
        assert_eq!(dtype(T::Symlink), 10);
        assert_eq!(dtype(T::Socket), 12);
    }

    #[test]
    fn completion_results() {
        assert_eq!(result(5), Ok(5));
        assert_eq!(result(0), Ok(0));
        assert_eq!(result(-2), Err(Errno::ENOENT));
    }

    #[test]
    fn backing_flags_drop_what_the_server_cannot_honour() {
        let f = OFlags::RDWR | OFlags::APPEND | OFlags::DIRECT | OFlags::CREATE | OFlags::EXCL;
        assert_eq!(backing_flags(f.bits()), OFlags::RDWR | OFlags::APPEND);
        let f = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOATIME;
        assert_eq!(backing_flags(f.bits()), OFlags::RDONLY | OFlags::NOATIME);
    }
}
