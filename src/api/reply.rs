//! Typed replies, written in place into the request's reply buffer.
//!
//! Every [`Filesystem`](crate::Filesystem) method that the kernel expects an answer to gets a
//! [`Reply<'_, K>`], where the kind `K` says what the answer may be: a [`ReplyEntry`] can
//! answer with an [`Entry`] or an [`Errno`], a [`ReplyData`] with bytes, and so on. Each
//! answering method consumes the reply and returns [`Done`], which nothing else can make,
//! so a method answers exactly once (or defers, see below) by construction.
//!
//! Replies are encoded straight into the transport's preallocated buffer: nothing is
//! allocated and, for data, [`ReplyData::buffer`] hands out the buffer itself so a
//! filesystem can read file contents directly into place.
//!
//! # Deferring
//!
//! [`Reply::defer`] keeps the request open: it returns [`Done`] for the method and a
//! [`Deferred<K>`] token (no heap, a few words) that the filesystem stores and later turns
//! back into a reply with [`Cx::resume`](crate::Cx::resume), typically when its own I/O
//! submitted on the loop's ring completes. The request's buffers stay reserved until then.
//! Resuming in the very call that deferred works too (the answer then goes out as if the
//! method had answered directly).
//!
//! A token dropped without being resumed cannot leave its caller waiting: the loop answers
//! the request `EIO`, counts it in [`Stats::lost_deferred`](crate::Stats::lost_deferred)
//! and says so once on stderr. A token kept but never resumed holds its request until the
//! session stops, which then waits [`Config::stop_grace`](crate::Config::stop_grace) for it
//! before answering `EIO`.

use core::cell::Cell;
use core::marker::PhantomData;
use core::time::Duration;

use crate::abi::Errno;
use crate::abi::dirent::{DirentPlusWriter, DirentWriter};
use crate::abi::flags::FopenFlags;
use crate::abi::kernel::{
    fuse_attr_out, fuse_file_lock, fuse_ioctl_out, fuse_kstatfs, fuse_open_out, fuse_statx_out,
};
use crate::abi::reply as enc;
use crate::api::attr::{Attr, Entry, FileType, ttl_parts};
use crate::state::Outcome;

/// Proof that a request was answered or deferred. Only replies make one.
#[must_use = "return it from the Filesystem method"]
#[derive(Debug)]
pub struct Done(());

/// The reply kinds: marker types naming what a [`Reply`] may answer with.
pub mod kind {
    macro_rules! kinds {
        ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
            $(#[$m])*
            #[derive(Debug)]
            pub enum $name {}
        )*};
    }
    kinds! {
        /// LOOKUP, MKNOD, MKDIR, SYMLINK, LINK: an entry.
        Entry,
        /// GETATTR, SETATTR: attributes.
        Attr,
        /// UNLINK, RMDIR, RENAME, RELEASE, FLUSH, FSYNC, SETXATTR, ...: success or error.
        Empty,
        /// OPEN, OPENDIR: a file handle.
        Open,
        /// CREATE, TMPFILE: an entry and a file handle.
        Create,
        /// WRITE: the number of bytes written.
        Write,
        /// COPY_FILE_RANGE(_64): the number of bytes copied.
        Copied,
        /// READ, READLINK: bytes.
        Data,
        /// GETXATTR, LISTXATTR: a value (or its size, if the caller asked for the size).
        Xattr,
        /// READDIR: directory entries.
        Dir,
        /// READDIRPLUS: directory entries with their attributes.
        DirPlus,
        /// STATFS.
        Statfs,
        /// GETLK.
        Lock,
        /// BMAP.
        Bmap,
        /// IOCTL.
        Ioctl,
        /// POLL.
        Poll,
        /// LSEEK.
        Lseek,
        /// STATX.
        Statx,
    }
}

/// The reply to one request, of kind `K`.
#[must_use = "answer the request (or defer it) and return the Done"]
pub struct Reply<'r, K> {
    payload: &'r mut [u8],
    outcome: &'r mut Outcome,
    /// The slot and unique of the request, for deferring.
    slot: u32,
    unique: u64,
    /// The size the request allows (READ size, xattr size, directory buffer size), or
    /// `u32::MAX` where the kernel sets no limit.
    limit: u32,
    /// Extra per-kind facts: for [`kind::Copied`], whether the 64-bit reply is wanted.
    wide: bool,
    /// The id of the loop that holds the request (carried by its token).
    owner: u16,
    /// For the request being handled: where [`defer`](Self::defer) leaves the payload area,
    /// so that [`Cx::resume`](crate::Cx::resume) can answer in the same call.
    lent: Option<&'r Lent<'r>>,
    _kind: PhantomData<fn() -> K>,
}

/// Where a deferring reply leaves its payload area for a resume within the same call.
pub(crate) type Lent<'r> = Cell<Option<&'r mut [u8]>>;

/// Which request of which loop a reply answers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Whose {
    pub slot: u32,
    pub unique: u64,
    /// The loop's id (see `lost`).
    pub owner: u16,
}

/// A deferred request of reply kind `K`: turn it back into a [`Reply`] with
/// [`Cx::resume`](crate::Cx::resume). It is deliberately neither `Copy` nor `Clone`: a
/// request is answered once.
///
/// Dropping a token unresumed answers its request `EIO` (the loop does it at its next
/// pass, counting it in [`Stats::lost_deferred`](crate::Stats::lost_deferred)): a bug in
/// the filesystem, but not one that leaves a caller waiting for good.
#[must_use = "a deferred request must be resumed and answered (dropped, it is answered EIO)"]
#[derive(Debug)]
pub struct Deferred<K> {
    pub(crate) slot: u32,
    pub(crate) unique: u64,
    pub(crate) limit: u32,
    pub(crate) wide: bool,
    pub(crate) owner: u16,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Deferred<K> {
    /// The request's `unique` (as in the kernel's `fuse_in_header`).
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Uses the token up without posting it as lost (it was resumed).
    pub(crate) fn spend(self) {
        core::mem::forget(self);
    }
}

impl<K> Drop for Deferred<K> {
    fn drop(&mut self) {
        crate::state::lost::post(self.owner, self.slot, self.unique);
    }
}

/// `ReplyEntry`: answers LOOKUP, MKNOD, MKDIR, SYMLINK and LINK.
pub type ReplyEntry<'r> = Reply<'r, kind::Entry>;
/// `ReplyAttr`: answers GETATTR and SETATTR.
pub type ReplyAttr<'r> = Reply<'r, kind::Attr>;
/// `ReplyEmpty`: answers requests whose success carries no data.
pub type ReplyEmpty<'r> = Reply<'r, kind::Empty>;
/// `ReplyOpen`: answers OPEN and OPENDIR.
pub type ReplyOpen<'r> = Reply<'r, kind::Open>;
/// `ReplyCreate`: answers CREATE and TMPFILE.
pub type ReplyCreate<'r> = Reply<'r, kind::Create>;
/// `ReplyWrite`: answers WRITE.
pub type ReplyWrite<'r> = Reply<'r, kind::Write>;
/// `ReplyCopied`: answers COPY_FILE_RANGE and COPY_FILE_RANGE_64.
pub type ReplyCopied<'r> = Reply<'r, kind::Copied>;
/// `ReplyData`: answers READ and READLINK.
pub type ReplyData<'r> = Reply<'r, kind::Data>;
/// `ReplyXattr`: answers GETXATTR and LISTXATTR.
pub type ReplyXattr<'r> = Reply<'r, kind::Xattr>;
/// `ReplyDir`: answers READDIR.
pub type ReplyDir<'r> = Reply<'r, kind::Dir>;
/// `ReplyDirPlus`: answers READDIRPLUS.
pub type ReplyDirPlus<'r> = Reply<'r, kind::DirPlus>;
/// `ReplyStatfs`: answers STATFS.
pub type ReplyStatfs<'r> = Reply<'r, kind::Statfs>;
/// `ReplyLock`: answers GETLK.
pub type ReplyLock<'r> = Reply<'r, kind::Lock>;
/// `ReplyBmap`: answers BMAP.
pub type ReplyBmap<'r> = Reply<'r, kind::Bmap>;
/// `ReplyIoctl`: answers IOCTL.
pub type ReplyIoctl<'r> = Reply<'r, kind::Ioctl>;
/// `ReplyPoll`: answers POLL.
pub type ReplyPoll<'r> = Reply<'r, kind::Poll>;
/// `ReplyLseek`: answers LSEEK.
pub type ReplyLseek<'r> = Reply<'r, kind::Lseek>;
/// `ReplyStatx`: answers STATX.
pub type ReplyStatx<'r> = Reply<'r, kind::Statx>;

impl<'r, K> Reply<'r, K> {
    pub(crate) fn new(
        payload: &'r mut [u8],
        outcome: &'r mut Outcome,
        whose: Whose,
        limit: u32,
        lent: Option<&'r Lent<'r>>,
    ) -> Self {
        *outcome = Outcome::Pending;
        Self {
            payload,
            outcome,
            slot: whose.slot,
            unique: whose.unique,
            limit,
            wide: false,
            owner: whose.owner,
            lent,
            _kind: PhantomData,
        }
    }

    /// The reply of a resumed token, which it uses up.
    pub(crate) fn resumed(payload: &'r mut [u8], outcome: &'r mut Outcome, d: Deferred<K>) -> Self {
        let whose = Whose {
            slot: d.slot,
            unique: d.unique,
            owner: d.owner,
        };
        let mut r = Self::new(payload, outcome, whose, d.limit, None);
        r.wide = d.wide;
        d.spend();
        r
    }

    pub(crate) fn with_wide(mut self, wide: bool) -> Self {
        self.wide = wide;
        self
    }

    /// The request's `unique`.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// The slot of the request (for the asynchronous adapter).
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// The payload area as raw parts `(start, len)`, `len` capped at the request's limit,
    /// and the limit and width facts, for the asynchronous adapter, which writes the
    /// answer there from a later call.
    pub(crate) fn raw_parts(&mut self) -> (core::ptr::NonNull<u8>, usize, usize, u32, bool) {
        let cap = self.capacity();
        let full = self.payload.len();
        let ptr = core::ptr::NonNull::from(&mut *self.payload).cast::<u8>();
        (ptr, full, cap, self.limit, self.wide)
    }

    /// Answers with an outcome the asynchronous adapter computed (its payload, if any, is
    /// already in place).
    pub(crate) fn finish(self, outcome: Outcome) -> Done {
        *self.outcome = outcome;
        Done(())
    }

    /// Answers with an error.
    pub fn error(self, err: Errno) -> Done {
        *self.outcome = Outcome::Error(err);
        Done(())
    }

    /// Keeps the request open to answer it later with [`Cx::resume`](crate::Cx::resume)
    /// (from a later call, or from this one).
    pub fn defer(self) -> (Done, Deferred<K>) {
        *self.outcome = Outcome::Deferred;
        let d = Deferred {
            slot: self.slot,
            unique: self.unique,
            limit: self.limit,
            wide: self.wide,
            owner: self.owner,
            _kind: PhantomData,
        };
        if let Some(lent) = self.lent {
            lent.set(Some(self.payload));
        }
        (Done(()), d)
    }

    /// Defers with no token: the asynchronous adapter answers by slot and unique.
    pub(crate) fn hold(self) -> Done {
        *self.outcome = Outcome::Deferred;
        Done(())
    }

    /// Writes a payload with an abi encoder; a buffer too small for a fixed-size reply is
    /// a configuration bug (buffers are at least 8 KiB), answered as EIO rather than a panic.
    fn encoded(self, f: impl FnOnce(&mut [u8]) -> Result<usize, enc::BufferTooSmall>) -> Done {
        *self.outcome = match f(self.payload) {
            Ok(n) => Outcome::Payload(n),
            Err(_) => Outcome::Error(Errno::EIO),
        };
        Done(())
    }

    fn capacity(&self) -> usize {
        self.payload.len().min(self.limit as usize)
    }
}

impl Reply<'_, kind::Entry> {
    /// Answers with an entry. Adds one to the node's lookup count (unless `node` is 0).
    pub fn entry(self, entry: &Entry) -> Done {
        let e = entry.to_kernel();
        self.encoded(|b| enc::entry(b, &e))
    }

    /// Answers "no such name" and lets the kernel cache that for `ttl` (a negative entry).
    pub fn negative(self, ttl: Duration) -> Done {
        let (entry_valid, entry_valid_nsec) = ttl_parts(ttl);
        let e = crate::abi::kernel::fuse_entry_out {
            entry_valid,
            entry_valid_nsec,
            ..Default::default()
        };
        self.encoded(|b| enc::entry(b, &e))
    }
}

impl Reply<'_, kind::Attr> {
    /// Answers with attributes the kernel may cache for `ttl`.
    pub fn attr(self, attr: &Attr, ttl: Duration) -> Done {
        let (attr_valid, attr_valid_nsec) = ttl_parts(ttl);
        let out = fuse_attr_out {
            attr_valid,
            attr_valid_nsec,
            dummy: 0,
            attr: attr.to_kernel(),
        };
        self.encoded(|b| enc::attr(b, &out))
    }
}

impl Reply<'_, kind::Empty> {
    /// Answers success.
    pub fn ok(self) -> Done {
        *self.outcome = Outcome::Payload(0);
        Done(())
    }
}

fn open_out(fh: u64, flags: FopenFlags, backing_id: i32) -> fuse_open_out {
    fuse_open_out {
        fh,
        open_flags: flags.bits(),
        backing_id,
    }
}

impl Reply<'_, kind::Open> {
    /// Answers with a file handle (passed back in later requests on this open file) and
    /// `FOPEN_*` flags (for example [`FopenFlags::KEEP_CACHE`]).
    pub fn opened(self, fh: u64, flags: FopenFlags) -> Done {
        let out = open_out(fh, flags, 0);
        self.encoded(|b| enc::open(b, &out))
    }

    /// Answers with a kernel passthrough backing file (`FOPEN_PASSTHROUGH`, protocol 7.40):
    /// reads and writes then go straight to the backing file registered as `backing_id`.
    pub fn opened_passthrough(self, fh: u64, flags: FopenFlags, backing_id: i32) -> Done {
        let out = open_out(fh, flags | FopenFlags::PASSTHROUGH, backing_id);
        self.encoded(|b| enc::open(b, &out))
    }
}

impl Reply<'_, kind::Create> {
    /// Answers with the new entry and its open file handle.
    pub fn created(self, entry: &Entry, fh: u64, flags: FopenFlags) -> Done {
        let e = entry.to_kernel();
        let o = open_out(fh, flags, 0);
        self.encoded(|b| enc::create(b, &e, &o))
    }

    /// Answers with the new entry and its open file handle, backed in the kernel by the
    /// passthrough file `backing_id` (see
    /// [`Cx::backing_open`](crate::Cx::backing_open)).
    pub fn created_passthrough(
        self,
        entry: &Entry,
        fh: u64,
        flags: FopenFlags,
        backing_id: i32,
    ) -> Done {
        let e = entry.to_kernel();
        let o = open_out(fh, flags | FopenFlags::PASSTHROUGH, backing_id);
        self.encoded(|b| enc::create(b, &e, &o))
    }
}

impl Reply<'_, kind::Write> {
    /// Answers with the number of bytes written.
    pub fn written(self, size: u32) -> Done {
        self.encoded(|b| enc::write(b, size))
    }
}

impl Reply<'_, kind::Copied> {
    /// Answers with the number of bytes copied (capped at `u32::MAX` for the 32-bit
    /// COPY_FILE_RANGE, whose length the kernel already caps).
    pub fn copied(self, bytes: u64) -> Done {
        if self.wide {
            self.encoded(|b| enc::copy_file_range_64(b, bytes))
        } else {
            let n = u32::try_from(bytes).unwrap_or(u32::MAX);
            self.encoded(|b| enc::write(b, n))
        }
    }
}

impl<'r> Reply<'r, kind::Data> {
    /// Defers the request and hands out its reply buffer ([`max_len`](Self::max_len)
    /// bytes) to fill while it stays deferred — for example as the target of the
    /// filesystem's own READ of a backing file, so data reaches the kernel with no copy.
    /// The loop does not touch the buffer until the token is resumed; answer then with
    /// [`commit`](Self::commit)`(n)` on the resumed reply. (The buffer is out, so this
    /// token cannot be resumed in the same call: [`Cx::resume`](crate::Cx::resume) then
    /// gives `None` and the request is answered `EIO`. To answer at once, fill
    /// [`buffer`](Self::buffer) and [`commit`](Self::commit) instead of deferring.)
    pub fn defer_into(self) -> (Done, Deferred<kind::Data>, &'r mut [u8]) {
        let cap = self.capacity();
        let Reply {
            payload,
            outcome,
            slot,
            unique,
            limit,
            wide,
            owner,
            ..
        } = self;
        *outcome = Outcome::Deferred;
        let d = Deferred {
            slot,
            unique,
            limit,
            wide,
            owner,
            _kind: PhantomData,
        };
        (Done(()), d, payload.get_mut(..cap).unwrap_or_default())
    }
}

impl Reply<'_, kind::Data> {
    /// The largest answer allowed: the request's size (READ), or what fits.
    pub fn max_len(&self) -> usize {
        self.capacity()
    }

    /// Answers with `bytes`, truncated to [`max_len`](Self::max_len) (the kernel rejects a
    /// longer reply).
    pub fn data(self, bytes: &[u8]) -> Done {
        let n = bytes.len().min(self.capacity());
        let bytes = bytes.get(..n).unwrap_or_default();
        self.encoded(|b| enc::data(b, bytes))
    }

    /// The reply buffer itself, [`max_len`](Self::max_len) bytes, to fill in place; then
    /// answer with [`commit`](Self::commit).
    pub fn buffer(&mut self) -> &mut [u8] {
        let n = self.capacity();
        self.payload.get_mut(..n).unwrap_or_default()
    }

    /// Answers with the first `len` bytes of [`buffer`](Self::buffer) (capped at its
    /// length).
    pub fn commit(self, len: usize) -> Done {
        *self.outcome = Outcome::Payload(len.min(self.capacity()));
        Done(())
    }
}

impl Reply<'_, kind::Xattr> {
    /// The caller's buffer size: 0 means "tell me the size".
    pub fn size(&self) -> u32 {
        self.limit
    }

    /// Answers with a value (GETXATTR) or a list of NUL-terminated names (LISTXATTR): its
    /// size if the caller asked for the size, `ERANGE` if it does not fit the caller's
    /// buffer, else the bytes.
    pub fn value(self, bytes: &[u8]) -> Done {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return self.error(Errno::E2BIG);
        };
        if self.limit == 0 {
            self.encoded(|b| enc::xattr_size(b, len))
        } else if len > self.limit {
            self.error(Errno::ERANGE)
        } else {
            self.encoded(|b| enc::data(b, bytes))
        }
    }
}

/// An entry did not go into a directory reply because its name or offset is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidDirent(pub crate::abi::dirent::DirentError);

impl core::fmt::Display for InvalidDirent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid directory entry: {}", self.0)
    }
}

impl core::error::Error for InvalidDirent {}

/// A directory listing being filled ([`Reply::dir`]).
pub struct DirFill<'a> {
    writer: DirentWriter<'a>,
}

impl<'a> DirFill<'a> {
    /// A listing written into `buf` (the asynchronous adapter).
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            writer: DirentWriter::new(buf),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.writer.len() == 0
    }
}

/// What adding a directory entry did. (Not a `bool`: fuser's `ReplyDirectory::add`
/// answers `true` for "full", the opposite of "added", and ports must not break silently.)
#[must_use = "stop adding once the buffer is Full"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirAdd {
    /// The entry is in the listing; go on.
    Added,
    /// It did not fit and was not added: stop, and answer with what is there (the kernel
    /// asks again from the last added entry's offset).
    Full,
}

impl DirAdd {
    /// Whether the entry did not fit.
    pub fn is_full(self) -> bool {
        self == DirAdd::Full
    }

    fn from_fit(fit: bool) -> Self {
        if fit { DirAdd::Added } else { DirAdd::Full }
    }
}

impl DirFill<'_> {
    /// Adds an entry; [`DirAdd::Full`] when it does not fit (stop and send what you have:
    /// the kernel asks again from the last `offset`). `offset` is the opaque, non-zero cookie
    /// the kernel passes back to continue *after* this entry.
    ///
    /// # Errors
    ///
    /// [`InvalidDirent`] for an empty name, one over 1024 bytes or containing `/` or NUL,
    /// or `offset == 0`; nothing is added.
    pub fn add(
        &mut self,
        ino: u64,
        offset: u64,
        kind: FileType,
        name: &[u8],
    ) -> Result<DirAdd, InvalidDirent> {
        self.writer
            .push(ino, offset, kind.dirent_type(), name)
            .map(DirAdd::from_fit)
            .map_err(InvalidDirent)
    }

    /// As [`add`](Self::add) with a raw `DT_*` type (`d_type` as `getdents64` gives it;
    /// `DT_UNKNOWN` = 0 when the backing filesystem does not say).
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn add_dtype(
        &mut self,
        ino: u64,
        offset: u64,
        dtype: u8,
        name: &[u8],
    ) -> Result<DirAdd, InvalidDirent> {
        self.writer
            .push(ino, offset, u32::from(dtype), name)
            .map(DirAdd::from_fit)
            .map_err(InvalidDirent)
    }
}

impl Reply<'_, kind::Dir> {
    /// Fills the listing with `f`, then answers with what it added. An empty listing ends
    /// the directory.
    pub fn dir(self, f: impl FnOnce(&mut DirFill<'_>)) -> Done {
        let cap = self.capacity();
        let buf = self.payload.get_mut(..cap).unwrap_or_default();
        let mut fill = DirFill {
            writer: DirentWriter::new(buf),
        };
        f(&mut fill);
        let n = fill.writer.len();
        *self.outcome = Outcome::Payload(n);
        Done(())
    }
}

/// A READDIRPLUS listing being filled ([`Reply::dir_plus`]).
pub struct DirPlusFill<'a> {
    writer: DirentPlusWriter<'a>,
}

impl<'a> DirPlusFill<'a> {
    /// A listing written into `buf` (the asynchronous adapter).
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            writer: DirentPlusWriter::new(buf),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.writer.len() == 0
    }
}

impl DirPlusFill<'_> {
    /// Adds an entry with its attributes; [`DirAdd::Full`] when it does not fit. Each added
    /// entry whose node is not 0 (and whose name is not `.` or `..`) counts as a lookup.
    ///
    /// # Errors
    ///
    /// As [`DirFill::add`].
    pub fn add(
        &mut self,
        entry: &Entry,
        offset: u64,
        name: &[u8],
    ) -> Result<DirAdd, InvalidDirent> {
        let kind = entry.attr.mode >> 12;
        self.writer
            .push(&entry.to_kernel(), offset, kind, name)
            .map(DirAdd::from_fit)
            .map_err(InvalidDirent)
    }
}

impl Reply<'_, kind::DirPlus> {
    /// Fills the listing with `f`, then answers with what it added.
    pub fn dir_plus(self, f: impl FnOnce(&mut DirPlusFill<'_>)) -> Done {
        let cap = self.capacity();
        let buf = self.payload.get_mut(..cap).unwrap_or_default();
        let mut fill = DirPlusFill {
            writer: DirentPlusWriter::new(buf),
        };
        f(&mut fill);
        let n = fill.writer.len();
        *self.outcome = Outcome::Payload(n);
        Done(())
    }
}

/// Filesystem statistics (`struct fuse_kstatfs`, what `statfs(2)` shows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statfs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

impl Reply<'_, kind::Statfs> {
    /// Answers with statistics.
    pub fn statfs(self, st: &Statfs) -> Done {
        let k = fuse_kstatfs {
            blocks: st.blocks,
            bfree: st.bfree,
            bavail: st.bavail,
            files: st.files,
            ffree: st.ffree,
            bsize: st.bsize,
            namelen: st.namelen,
            frsize: st.frsize,
            padding: 0,
            spare: [0; 6],
        };
        self.encoded(|b| enc::statfs(b, &k))
    }
}

/// A POSIX record lock (`struct fuse_file_lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileLock {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive; `u64::MAX` = to the end).
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: u32,
    /// Process holding the lock.
    pub pid: u32,
}

impl FileLock {
    pub(crate) fn from_kernel(k: &fuse_file_lock) -> Self {
        Self {
            start: k.start,
            end: k.end,
            typ: k.r#type,
            pid: k.pid,
        }
    }
}

impl Reply<'_, kind::Lock> {
    /// Answers with the conflicting lock, or one of type `F_UNLCK` if there is none.
    pub fn lock(self, lock: &FileLock) -> Done {
        let k = fuse_file_lock {
            start: lock.start,
            end: lock.end,
            r#type: lock.typ,
            pid: lock.pid,
        };
        self.encoded(|b| enc::lk(b, &k))
    }
}

impl Reply<'_, kind::Bmap> {
    /// Answers with the device block.
    pub fn block(self, block: u64) -> Done {
        self.encoded(|b| enc::bmap(b, block))
    }
}

impl Reply<'_, kind::Ioctl> {
    /// The most output data the caller accepts.
    pub fn out_size(&self) -> u32 {
        self.limit
    }

    /// Answers with the ioctl's return value and its output data (truncated to
    /// [`out_size`](Self::out_size)).
    pub fn ioctl(self, result: i32, data: &[u8]) -> Done {
        let n = data.len().min(self.limit as usize);
        let data = data.get(..n).unwrap_or_default();
        let out = fuse_ioctl_out {
            result,
            flags: 0,
            in_iovs: 0,
            out_iovs: 0,
        };
        self.encoded(|b| enc::ioctl(b, &out, data))
    }
}

impl Reply<'_, kind::Poll> {
    /// Answers with the ready events (`POLLIN`...).
    pub fn revents(self, revents: u32) -> Done {
        self.encoded(|b| enc::poll(b, revents))
    }
}

impl Reply<'_, kind::Lseek> {
    /// Answers with the new offset.
    pub fn offset(self, offset: u64) -> Done {
        self.encoded(|b| enc::lseek(b, offset))
    }
}

impl Reply<'_, kind::Statx> {
    /// Answers with attributes the kernel may cache for `ttl`.
    pub fn statx(self, attr: &Attr, ttl: Duration) -> Done {
        let (attr_valid, attr_valid_nsec) = ttl_parts(ttl);
        let out = fuse_statx_out {
            attr_valid,
            attr_valid_nsec,
            flags: 0,
            spare: [0; 2],
            stat: attr.to_statx(),
        };
        self.encoded(|b| enc::statx(b, &out))
    }
}
