//! Testing a [`Filesystem`] without mounting: the in-memory transport.
//!
//! A [`Harness`] owns a filesystem and the same request handling a mounted session uses
//! (INIT negotiation, dispatch, typed replies, deferred replies), but takes request bytes
//! from the test and hands reply bytes back instead of talking to the kernel. Every reply
//! is checked against the rules the kernel applies when it reads a reply
//! ([`abi::reply::check_reply`](crate::abi::reply::check_reply)), so a reply the kernel
//! would refuse is a test failure, not a hung caller.
//!
//! ```
//! use ringfuse::testing::Harness;
//! use ringfuse::{Errno, Filesystem};
//!
//! struct Empty;
//! impl Filesystem for Empty {}
//!
//! let mut h = Harness::new(Empty);
//! h.init().unwrap();
//! // Unimplemented operations answer ENOSYS.
//! assert_eq!(h.lookup(1, c"x").unwrap_err(), Errno::ENOSYS);
//! ```
//!
//! There is no ring behind a harness: [`Cx::submit`](crate::Cx::submit) and the
//! notifications answer `EOPNOTSUPP`. Requests a filesystem defers stay open until it
//! resumes them from a later call; their replies are collected by [`Harness::resumed`].

use std::ffi::CStr;
use std::vec::Vec;

use crate::abi::Errno;
use crate::abi::Opcode;
use crate::abi::dirent::{Dirents, DirentsPlus};
use crate::abi::kernel::{
    FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, fuse_attr_out, fuse_entry_out, fuse_init_in,
    fuse_mkdir_in, fuse_open_in, fuse_open_out, fuse_out_header, fuse_read_in, fuse_write_in,
    fuse_write_out,
};
use crate::abi::pod::read_prefix;
use crate::abi::reply::{OUT_HEADER_SIZE, ReplyError, check_reply, parse_reply};
use crate::abi::request::{EncodeError, Operation, ParseConfig, Request};
use crate::api::cx::Env;
use crate::api::fs::Filesystem;
use crate::event_loop::init::Negotiated;
use crate::event_loop::request::{Action, Core};
use crate::session::Config;
use crate::state::slab::{Layout, SlotMeta, Storage};
use crate::state::stats::Stats;

/// What INIT offers by default: the flags Linux 6.18 offered on the development machines
/// (`flags = 0x73fffffb`, `flags2 = 0x5fd`, captured in `abi/tests/fixtures`).
pub const LINUX_6_18_INIT_FLAGS: (u32, u32) = (0x73ff_fffb, 0x05fd);

/// Why a harness call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HarnessError {
    /// The request could not be encoded.
    Encode(EncodeError),
    /// The filesystem's reply would be refused by the kernel.
    KernelWouldReject(ReplyError),
    /// Every slot holds a deferred request: resume some first.
    AllSlotsHeld,
    /// The request got no reply where one was expected (deferred, or a no-reply opcode).
    NoReply,
    /// The reply's payload is not what the operation answers.
    BadPayload,
}

impl core::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HarnessError::Encode(e) => write!(f, "cannot encode the request: {e}"),
            HarnessError::KernelWouldReject(e) => {
                write!(
                    f,
                    "the filesystem's reply would be refused by the kernel: {e}"
                )
            }
            HarnessError::AllSlotsHeld => f.write_str("every slot holds a deferred request"),
            HarnessError::NoReply => f.write_str("the request got no reply"),
            HarnessError::BadPayload => f.write_str("the reply's payload has the wrong shape"),
        }
    }
}

impl std::error::Error for HarnessError {}

/// What a request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A reply, as the kernel would read it from `/dev/fuse` (out header, then payload).
    Reply(Vec<u8>),
    /// No reply: FORGET, BATCH_FORGET, NOTIFY_REPLY, INTERRUPT, or a request whose header
    /// could not even be read.
    Nothing,
    /// The filesystem deferred the request; its reply comes with [`Harness::resumed`].
    Deferred,
}

impl Response {
    /// The reply's out header and payload.
    pub fn reply(&self) -> Option<(fuse_out_header, &[u8])> {
        match self {
            Response::Reply(bytes) => parse_reply(bytes).ok(),
            _ => None,
        }
    }

    /// The reply's payload, or its error.
    ///
    /// # Errors
    ///
    /// The reply's errno; [`Errno::EIO`] if there was no reply.
    pub fn result(&self) -> Result<&[u8], Errno> {
        let (h, payload) = self.reply().ok_or(Errno::EIO)?;
        match Errno::from_wire(h.error) {
            Some(e) => Err(e),
            None => Ok(payload),
        }
    }
}

/// One decoded directory entry: `(ino, off, type, name)`.
pub type DirEntry = (u64, u64, u32, Vec<u8>);

/// A filesystem driven by request bytes, with no kernel and no mount.
pub struct Harness<F: Filesystem> {
    core: Core<F>,
    slab: Storage,
    layout: Layout,
    meta: Vec<SlotMeta>,
    stats: Stats,
    lost: crate::state::lost::Watch,
    next_unique: u64,
    resumed: Vec<Vec<u8>>,
    /// Uid, gid and pid the typed helpers put in their requests.
    pub caller: (u32, u32, u32),
}

impl<F: Filesystem> Harness<F> {
    /// A harness with the default [`Config`] (128 KiB `max_write`, 8 slots).
    pub fn new(fs: F) -> Self {
        Self::with_config(fs, &Config::default())
    }

    /// A harness whose buffers follow `config` (`max_write`, `slots`).
    pub fn with_config(fs: F, config: &Config) -> Self {
        let layout = crate::event_loop::layout(config.max_write, F::TASK_BYTES);
        let slots = usize::from(config.slots.max(1));
        Self {
            core: Core::new(
                fs,
                crate::event_loop::init::clamp_max_write(config.max_write),
            ),
            slab: Storage::heap(layout.size(slots)),
            layout,
            meta: std::vec![SlotMeta::default(); slots],
            stats: Stats::default(),
            lost: crate::state::lost::Watch::new(),
            next_unique: 2,
            resumed: Vec::new(),
            caller: (0, 0, 1),
        }
    }

    /// The filesystem.
    pub fn fs(&self) -> &F {
        &self.core.fs
    }

    /// The filesystem, mutably.
    pub fn fs_mut(&mut self) -> &mut F {
        &mut self.core.fs
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What INIT settled, once [`init`](Self::init) ran.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.core.negotiated
    }

    /// The layout the negotiated flags give requests (`SETXATTR_EXT`).
    pub fn parse_config(&self) -> ParseConfig {
        self.core.parse
    }

    /// Sends INIT as Linux 6.18 does (protocol 7.45, [`LINUX_6_18_INIT_FLAGS`], 128 KiB
    /// readahead) and returns what was settled.
    ///
    /// # Errors
    ///
    /// The filesystem's refusal, as [`Errno`].
    pub fn init(&mut self) -> Result<Negotiated, Errno> {
        let (flags, flags2) = LINUX_6_18_INIT_FLAGS;
        self.init_with(fuse_init_in {
            major: FUSE_KERNEL_VERSION,
            minor: FUSE_KERNEL_MINOR_VERSION,
            max_readahead: 128 * 1024,
            flags,
            flags2,
            ..Default::default()
        })
    }

    /// Sends this INIT.
    ///
    /// # Errors
    ///
    /// The error the INIT reply carried.
    pub fn init_with(&mut self, arg: fuse_init_in) -> Result<Negotiated, Errno> {
        let req = self.request_for(0, Operation::Init { arg });
        let response = self.call(&req).map_err(|_| Errno::EIO)?;
        response.result()?;
        self.core.negotiated.ok_or(Errno::EIO)
    }

    /// A request from [`caller`](Self::caller) with a fresh `unique`.
    pub fn request_for<'a>(&mut self, nodeid: u64, op: Operation<'a>) -> Request<'a> {
        let unique = self.next_unique;
        self.next_unique += 2;
        let (uid, gid, pid) = self.caller;
        Request::new(unique, nodeid, op).with_creds(uid, gid, pid)
    }

    /// Handles one request given as the bytes a `/dev/fuse` read would return.
    ///
    /// # Errors
    ///
    /// [`HarnessError::AllSlotsHeld`]; [`HarnessError::KernelWouldReject`] if the reply
    /// breaks the kernel's rules.
    pub fn request(&mut self, bytes: &[u8]) -> Result<Response, HarnessError> {
        let i = self
            .meta
            .iter()
            .position(|m| !m.fs_holds)
            .ok_or(HarnessError::AllSlotsHeld)?;
        let layout = self.layout;
        let reply_off = layout.request + OUT_HEADER_SIZE;
        if let Some(m) = self.meta.get_mut(i) {
            *m = SlotMeta {
                reply_off: reply_off as u32,
                reply_len: (layout.reply - OUT_HEADER_SIZE) as u32,
                ..SlotMeta::default()
            };
        }
        let n = bytes.len().min(layout.request);
        let mut resumed = 0u32;
        let (action, unique, opcode, hint) = {
            let mut slab = self.slab.slab(layout);
            let (view, request, reply) = slab
                .split(&mut self.meta, i)
                .ok_or(HarnessError::AllSlotsHeld)?;
            let dst = request.get_mut(..n).unwrap_or_default();
            dst.copy_from_slice(bytes.get(..n).unwrap_or_default());
            let payload = reply.get_mut(OUT_HEADER_SIZE..).unwrap_or_default();
            match self.core.parse(request.get(..n).unwrap_or_default()) {
                Ok(req) => {
                    let hint = size_hint(&req);
                    let (unique, opcode) = (req.header.unique, req.opcode());
                    let env = Env {
                        slab: view,
                        resumed: &mut resumed,
                        io: None,
                        stats: &mut self.stats,
                        owner: self.lost.id,
                    };
                    (
                        self.core.handle(env, i as u32, &req, payload, false),
                        unique,
                        opcode,
                        hint,
                    )
                }
                Err(e) => {
                    let action = Core::<F>::malformed(bytes, e, &mut self.stats);
                    (action, 0, Opcode::Unknown(0), None)
                }
            }
        };
        let response = match action {
            Action::Reply(h) => Response::Reply(self.reply_bytes(i, &h, opcode, hint)?),
            Action::Nothing => Response::Nothing,
            Action::Deferred => {
                self.stats.deferred += 1;
                let now = self.meta.get_mut(i).and_then(|m| {
                    m.unique = unique;
                    m.opcode_hint = (u32::from(opcode), hint.unwrap_or(u32::MAX));
                    // Resumed in the same call: answered now, as the loop would send it.
                    m.fs_holds = !m.resumed;
                    if m.resumed {
                        resumed = resumed.saturating_sub(1);
                        m.answered = true;
                        m.take_resumed()
                    } else {
                        None
                    }
                });
                match now {
                    Some(h) => Response::Reply(self.reply_bytes(i, &h, opcode, hint)?),
                    None => Response::Deferred,
                }
            }
        };
        self.collect_lost(&mut resumed);
        if resumed > 0 {
            self.collect_resumed()?;
        }
        Ok(response)
    }

    /// Encodes `req` (with the negotiated layout) and handles it.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request), and [`HarnessError::Encode`].
    pub fn call(&mut self, req: &Request<'_>) -> Result<Response, HarnessError> {
        let mut buf = std::vec![0u8; self.layout.request];
        let n = req
            .encode(&self.core.parse, &mut buf)
            .map_err(HarnessError::Encode)?;
        self.request(buf.get(..n).unwrap_or_default())
    }

    /// The replies of deferred requests the filesystem resumed since the last call, in
    /// order.
    pub fn resumed(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.resumed)
    }

    fn reply_bytes(
        &mut self,
        i: usize,
        h: &fuse_out_header,
        opcode: Opcode,
        hint: Option<u32>,
    ) -> Result<Vec<u8>, HarnessError> {
        let layout = self.layout;
        let len = h.len as usize;
        let mut slab = self.slab.slab(layout);
        let area = slab
            .slot(i)
            .and_then(|s| s.get(layout.request..layout.request + layout.reply))
            .unwrap_or_default();
        let payload = area.get(OUT_HEADER_SIZE..len).unwrap_or_default();
        self.stats.replies += 1;
        if h.error != 0 {
            self.stats.errors += 1;
        }
        check_reply(opcode, hint, h, payload).map_err(HarnessError::KernelWouldReject)?;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(crate::abi::pod::as_bytes(h));
        out.extend_from_slice(payload);
        Ok(out)
    }

    /// Answers `EIO` to requests whose token the filesystem dropped (as the loop does).
    fn collect_lost(&mut self, resumed: &mut u32) {
        let (meta, stats) = (&mut self.meta, &mut self.stats);
        self.lost.take(|slot, unique| {
            if meta
                .get_mut(slot as usize)
                .is_some_and(|m| m.release_lost(unique))
            {
                stats.lost_deferred += 1;
                *resumed += 1;
            }
        });
    }

    fn collect_resumed(&mut self) -> Result<(), HarnessError> {
        for i in 0..self.meta.len() {
            let Some(m) = self.meta.get_mut(i) else {
                continue;
            };
            if !m.resumed {
                continue;
            }
            let (op, hint) = m.opcode_hint;
            let header = m.take_resumed();
            if let Some(h) = header {
                if let Some(m) = self.meta.get_mut(i) {
                    m.answered = true;
                }
                let hint = (hint != u32::MAX).then_some(hint);
                let bytes = self.reply_bytes(i, &h, Opcode::from(op), hint)?;
                self.resumed.push(bytes);
            }
        }
        Ok(())
    }

    fn typed<T: crate::abi::pod::Pod>(
        &mut self,
        nodeid: u64,
        op: Operation<'_>,
    ) -> Result<T, Errno> {
        let req = self.request_for(nodeid, op);
        let response = self.call(&req).map_err(|_| Errno::EIO)?;
        let payload = response.result()?;
        read_prefix::<T>(payload).map(|(v, _)| v).ok_or(Errno::EIO)
    }

    fn empty(&mut self, nodeid: u64, op: Operation<'_>) -> Result<(), Errno> {
        let req = self.request_for(nodeid, op);
        self.call(&req)
            .map_err(|_| Errno::EIO)?
            .result()
            .map(|_| ())
    }

    /// LOOKUP of `name` in `parent`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn lookup(&mut self, parent: u64, name: &CStr) -> Result<fuse_entry_out, Errno> {
        self.typed(parent, Operation::Lookup { name })
    }

    /// GETATTR of `node`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn getattr(&mut self, node: u64) -> Result<fuse_attr_out, Errno> {
        self.typed(
            node,
            Operation::Getattr {
                arg: crate::abi::kernel::fuse_getattr_in::default(),
            },
        )
    }

    /// MKDIR of `parent/name`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn mkdir(&mut self, parent: u64, name: &CStr, mode: u32) -> Result<fuse_entry_out, Errno> {
        let arg = fuse_mkdir_in { mode, umask: 0o022 };
        self.typed(parent, Operation::Mkdir { arg, name })
    }

    /// UNLINK of `parent/name`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn unlink(&mut self, parent: u64, name: &CStr) -> Result<(), Errno> {
        self.empty(parent, Operation::Unlink { name })
    }

    /// RMDIR of `parent/name`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn rmdir(&mut self, parent: u64, name: &CStr) -> Result<(), Errno> {
        self.empty(parent, Operation::Rmdir { name })
    }

    /// OPEN of `node` with `open(2)` flags.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn open(&mut self, node: u64, flags: u32) -> Result<fuse_open_out, Errno> {
        self.typed(
            node,
            Operation::Open {
                arg: fuse_open_in {
                    flags,
                    open_flags: 0,
                },
            },
        )
    }

    /// CREATE of `parent/name`: the entry and the open file.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn create(
        &mut self,
        parent: u64,
        name: &CStr,
        mode: u32,
        flags: u32,
    ) -> Result<(fuse_entry_out, fuse_open_out), Errno> {
        let arg = crate::abi::kernel::fuse_create_in {
            flags,
            mode,
            umask: 0o022,
            open_flags: 0,
        };
        let req = self.request_for(parent, Operation::Create { arg, name });
        let response = self.call(&req).map_err(|_| Errno::EIO)?;
        let payload = response.result()?;
        let (entry, rest) = read_prefix::<fuse_entry_out>(payload).ok_or(Errno::EIO)?;
        let (open, _) = read_prefix::<fuse_open_out>(rest).ok_or(Errno::EIO)?;
        Ok((entry, open))
    }

    /// WRITE of `data` at `offset`; the number of bytes written.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn write(&mut self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let size = u32::try_from(data.len()).map_err(|_| Errno::E2BIG)?;
        let arg = fuse_write_in {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.typed::<fuse_write_out>(node, Operation::Write { arg, data })
            .map(|w| w.size)
    }

    /// READ of up to `size` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// The filesystem's errno.
    pub fn read(&mut self, node: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let arg = fuse_read_in {
            fh,
            offset,
            size,
            ..Default::default()
        };
        let req = self.request_for(node, Operation::Read { arg });
        let response = self.call(&req).map_err(|_| Errno::EIO)?;
        response.result().map(<[u8]>::to_vec)
    }

    /// READDIR (or READDIRPLUS with `plus`) of directory `node` from `offset`: each entry's
    /// `(ino, off, type, name)`. An empty list is the end.
    ///
    /// # Errors
    ///
    /// The filesystem's errno; `EIO` for a malformed listing.
    pub fn readdir(
        &mut self,
        node: u64,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> Result<Vec<DirEntry>, Errno> {
        let arg = fuse_read_in {
            fh,
            offset,
            size: 4096,
            ..Default::default()
        };
        let op = if plus {
            Operation::Readdirplus { arg }
        } else {
            Operation::Readdir { arg }
        };
        let req = self.request_for(node, op);
        let response = self.call(&req).map_err(|_| Errno::EIO)?;
        let payload = response.result()?;
        let mut out = Vec::new();
        if plus {
            for item in DirentsPlus::new(payload) {
                let (_, d, name) = item.map_err(|_| Errno::EIO)?;
                out.push((d.ino, d.off, d.r#type, name.to_vec()));
            }
        } else {
            for item in Dirents::new(payload) {
                let (d, name) = item.map_err(|_| Errno::EIO)?;
                out.push((d.ino, d.off, d.r#type, name.to_vec()));
            }
        }
        Ok(out)
    }

    /// FORGET of `nlookup` lookups of `node` (no reply).
    pub fn forget(&mut self, node: u64, nlookup: u64) {
        let req = self.request_for(
            node,
            Operation::Forget {
                arg: crate::abi::kernel::fuse_forget_in { nlookup },
            },
        );
        let _ = self.call(&req);
    }

    /// INTERRUPT of the request `unique` (no reply; a deferred request gets `EINTR`, see
    /// [`resumed`](Self::resumed)).
    pub fn interrupt(&mut self, unique: u64) {
        let arg = crate::abi::kernel::fuse_interrupt_in { unique };
        let mut req = self.request_for(0, Operation::Interrupt { arg });
        req.header.unique |= 1;
        let _ = self.call(&req);
    }

    /// The `unique` the next request will carry.
    pub fn next_unique(&self) -> u64 {
        self.next_unique
    }
}

/// The request size that bounds a reply, for the opcodes whose replies may be shorter.
fn size_hint(req: &Request<'_>) -> Option<u32> {
    match req.op {
        Operation::Read { arg } | Operation::Readdir { arg } | Operation::Readdirplus { arg } => {
            Some(arg.size)
        }
        Operation::Getxattr { arg, .. } | Operation::Listxattr { arg } => Some(arg.size),
        Operation::Ioctl { arg, .. } => Some(arg.out_size),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::kernel::{fuse_getattr_in, fuse_in_header};
    use crate::api::attr::{Attr, FileType, NodeId, Timestamp};
    use crate::api::cx::Cx;
    use crate::api::reply::{Deferred, Done, ReplyAttr, ReplyEntry, kind};
    use core::time::Duration;

    /// Defers every GETATTR; a LOOKUP of "go" resumes the oldest (answering it), of
    /// "drop" resumes it without answering, of "stale" resumes it after INTERRUPT.
    #[derive(Default)]
    struct Deferring {
        held: Vec<Deferred<kind::Attr>>,
        stale_resumes: usize,
    }

    impl Filesystem for Deferring {
        fn getattr(
            &mut self,
            _cx: &mut Cx<'_>,
            _node: NodeId,
            _fh: Option<u64>,
            reply: ReplyAttr<'_>,
        ) -> Done {
            let (done, d) = reply.defer();
            self.held.push(d);
            done
        }

        fn lookup(
            &mut self,
            cx: &mut Cx<'_>,
            _parent: NodeId,
            name: &CStr,
            reply: ReplyEntry<'_>,
        ) -> Done {
            if !self.held.is_empty() {
                let d = self.held.remove(0);
                match (name.to_bytes(), cx.resume(d)) {
                    (b"go", Some(r)) => {
                        let attr = Attr::new(7, FileType::RegularFile, 0o644, Timestamp::new(1, 2));
                        let _ = r.attr(&attr, Duration::from_secs(1));
                    }
                    (b"drop", Some(r)) => drop(r),
                    (_, None) => self.stale_resumes += 1,
                    (_, Some(r)) => {
                        let _ = r.error(Errno::EBUSY);
                    }
                }
            }
            reply.error(Errno::ENOENT)
        }
    }

    fn header(bytes: &[u8]) -> fuse_out_header {
        parse_reply(bytes).unwrap().0
    }

    #[test]
    fn unimplemented_and_defaults() {
        struct Empty;
        impl Filesystem for Empty {}
        let mut h = Harness::new(Empty);
        let n = h.init().unwrap();
        assert_eq!((n.minor, n.kernel_minor), (45, 45));
        assert_eq!(h.lookup(1, c"x").unwrap_err(), Errno::ENOSYS);
        // STATFS has a working default; RELEASE succeeds.
        let req = h.request_for(1, Operation::Statfs);
        let r = h.call(&req).unwrap();
        assert_eq!(r.result().unwrap().len(), 80);
    }

    /// READ of node 2 resumes in the deferring call; of node 3 drops the token; of node 4
    /// keeps it, and GETATTR then drops every kept one.
    #[derive(Default)]
    struct Careless {
        kept: Vec<Deferred<kind::Data>>,
    }

    impl Filesystem for Careless {
        fn read(
            &mut self,
            cx: &mut Cx<'_>,
            node: NodeId,
            _fh: u64,
            _offset: u64,
            _size: u32,
            reply: crate::api::reply::ReplyData<'_>,
        ) -> Done {
            let (done, d) = reply.defer();
            match node.0 {
                2 => {
                    if let Some(mut r) = cx.resume(d) {
                        r.buffer()[..3].copy_from_slice(b"ok\n");
                        let _ = r.commit(3);
                    }
                }
                3 => drop(d),
                _ => self.kept.push(d),
            }
            done
        }

        fn getattr(
            &mut self,
            _cx: &mut Cx<'_>,
            _node: NodeId,
            _fh: Option<u64>,
            reply: ReplyAttr<'_>,
        ) -> Done {
            self.kept.clear();
            reply.error(Errno::ENOENT)
        }
    }

    #[test]
    fn a_resume_in_the_deferring_call_answers_it() {
        let mut h = Harness::new(Careless::default());
        h.init().unwrap();
        assert_eq!(h.read(2, 0, 0, 4096).unwrap(), b"ok\n");
        assert!(h.resumed().is_empty(), "answered once, directly");
        // The slot is free again: as many such reads as slots and more.
        for _ in 0..20 {
            assert_eq!(h.read(2, 0, 0, 4096).unwrap(), b"ok\n");
        }
        assert_eq!(h.stats().lost_deferred, 0);
    }

    #[test]
    fn a_dropped_token_answers_eio_and_frees_its_slot() {
        let mut h = Harness::new(Careless::default());
        h.init().unwrap();
        // Dropped in the deferring call.
        let req = h.request_for(
            3,
            Operation::Read {
                arg: crate::abi::kernel::fuse_read_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        let replies = h.resumed();
        assert_eq!(replies.len(), 1);
        assert_eq!(header(&replies[0]).error, -i32::from(Errno::EIO.get()));
        // Kept, then dropped by a later call.
        let req = h.request_for(
            4,
            Operation::Read {
                arg: crate::abi::kernel::fuse_read_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        assert!(h.resumed().is_empty());
        assert_eq!(h.getattr(4).unwrap_err(), Errno::ENOENT);
        let replies = h.resumed();
        assert_eq!(
            replies.len(),
            1,
            "the kept READ is answered once its token is dropped"
        );
        assert_eq!(header(&replies[0]).error, -i32::from(Errno::EIO.get()));
        assert_eq!(h.stats().lost_deferred, 2);
        // No slot stays held: more reads than slots still go through.
        for _ in 0..20 {
            assert_eq!(h.read(2, 0, 0, 4096).unwrap(), b"ok\n");
        }
    }

    #[test]
    fn requests_before_init_get_eio() {
        struct Empty;
        impl Filesystem for Empty {}
        let mut h = Harness::new(Empty);
        assert_eq!(h.lookup(1, c"x").unwrap_err(), Errno::EIO);
    }

    #[test]
    fn deferred_reply_is_sent_when_resumed() {
        let mut h = Harness::new(Deferring::default());
        h.init().unwrap();
        let unique = h.next_unique();
        let req = h.request_for(
            5,
            Operation::Getattr {
                arg: fuse_getattr_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        assert!(h.resumed().is_empty());
        assert_eq!(h.lookup(1, c"go").unwrap_err(), Errno::ENOENT);
        let replies = h.resumed();
        assert_eq!(replies.len(), 1);
        let (hdr, payload) = parse_reply(&replies[0]).unwrap();
        assert_eq!((hdr.unique, hdr.error), (unique, 0));
        let (attr, _) = read_prefix::<fuse_attr_out>(payload).unwrap();
        assert_eq!(attr.attr.ino, 7);
        assert_eq!(attr.attr.mode, 0o100_644);
        // The slot is free again: many more deferrals than slots work once resumed.
        for _ in 0..20 {
            let req = h.request_for(
                5,
                Operation::Getattr {
                    arg: fuse_getattr_in::default(),
                },
            );
            assert_eq!(h.call(&req).unwrap(), Response::Deferred);
            let _ = h.lookup(1, c"go");
            assert_eq!(h.resumed().len(), 1);
        }
    }

    #[test]
    fn a_resumed_reply_dropped_unanswered_gets_eio() {
        let mut h = Harness::new(Deferring::default());
        h.init().unwrap();
        let req = h.request_for(
            5,
            Operation::Getattr {
                arg: fuse_getattr_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        let _ = h.lookup(1, c"drop");
        let replies = h.resumed();
        assert_eq!(replies.len(), 1);
        assert_eq!(header(&replies[0]).error, Errno::EIO.to_wire());
    }

    #[test]
    fn interrupt_answers_eintr_and_the_token_goes_stale() {
        let mut h = Harness::new(Deferring::default());
        h.init().unwrap();
        let unique = h.next_unique();
        let req = h.request_for(
            5,
            Operation::Getattr {
                arg: fuse_getattr_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        h.interrupt(unique);
        let replies = h.resumed();
        assert_eq!(replies.len(), 1);
        let hdr = header(&replies[0]);
        assert_eq!((hdr.unique, hdr.error), (unique, Errno::EINTR.to_wire()));
        // The filesystem's later resume finds the token stale, and nothing more is sent.
        let _ = h.lookup(1, c"go");
        assert_eq!(h.fs().stale_resumes, 1);
        assert!(h.resumed().is_empty());
        // An INTERRUPT for a request already answered is ignored.
        h.interrupt(unique);
        assert!(h.resumed().is_empty());
    }

    /// Resumes its held GETATTR inside `interrupted` and tries to answer it.
    #[derive(Default)]
    struct ResumesOnInterrupt {
        held: Vec<Deferred<kind::Attr>>,
        resumed_live: bool,
    }

    impl Filesystem for ResumesOnInterrupt {
        fn getattr(
            &mut self,
            _cx: &mut Cx<'_>,
            _node: NodeId,
            _fh: Option<u64>,
            reply: ReplyAttr<'_>,
        ) -> Done {
            let (done, d) = reply.defer();
            self.held.push(d);
            done
        }

        fn interrupted(&mut self, cx: &mut Cx<'_>, _unique: u64) {
            if let Some(d) = self.held.pop() {
                if let Some(r) = cx.resume(d) {
                    self.resumed_live = true;
                    let attr = Attr::new(7, FileType::RegularFile, 0o644, Timestamp::new(1, 2));
                    let _ = r.attr(&attr, Duration::from_secs(1));
                }
            }
        }
    }

    #[test]
    fn resume_inside_interrupted_cannot_replace_the_eintr() {
        let mut h = Harness::new(ResumesOnInterrupt::default());
        h.init().unwrap();
        let unique = h.next_unique();
        let req = h.request_for(
            5,
            Operation::Getattr {
                arg: fuse_getattr_in::default(),
            },
        );
        assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        h.interrupt(unique);
        assert!(
            !h.fs().resumed_live,
            "resume inside interrupted() must yield None"
        );
        let replies = h.resumed();
        assert_eq!(replies.len(), 1);
        let hdr = header(&replies[0]);
        assert_eq!((hdr.unique, hdr.error), (unique, Errno::EINTR.to_wire()));
        // The slot was released: more requests can be deferred than there are slots.
        for _ in 0..10 {
            let req = h.request_for(
                5,
                Operation::Getattr {
                    arg: fuse_getattr_in::default(),
                },
            );
            assert_eq!(h.call(&req).unwrap(), Response::Deferred);
            let u = req.header.unique;
            h.interrupt(u);
            assert_eq!(h.resumed().len(), 1);
        }
    }

    #[test]
    fn all_slots_held() {
        let mut h = Harness::with_config(Deferring::default(), &Config::default().slots(2));
        h.init().unwrap();
        for _ in 0..2 {
            let req = h.request_for(
                5,
                Operation::Getattr {
                    arg: fuse_getattr_in::default(),
                },
            );
            assert_eq!(h.call(&req).unwrap(), Response::Deferred);
        }
        let req = h.request_for(
            5,
            Operation::Getattr {
                arg: fuse_getattr_in::default(),
            },
        );
        assert_eq!(h.call(&req), Err(HarnessError::AllSlotsHeld));
    }

    #[test]
    fn malformed_requests_get_errors_not_panics() {
        struct Empty;
        impl Filesystem for Empty {}
        let mut h = Harness::new(Empty);
        h.init().unwrap();
        // A LOOKUP whose name lacks its NUL: answered EIO with the request's unique.
        let mut bytes = std::vec::Vec::new();
        let hdr = fuse_in_header {
            len: 43,
            opcode: 1,
            unique: 42,
            nodeid: 1,
            ..Default::default()
        };
        bytes.extend_from_slice(crate::abi::pod::as_bytes(&hdr));
        bytes.extend_from_slice(b"abc");
        let r = h.request(&bytes).unwrap();
        let (out, _) = r.reply().unwrap();
        assert_eq!((out.unique, out.error), (42, Errno::EIO.to_wire()));
        assert_eq!(h.stats().malformed, 1);
        // Garbage shorter than a header: no reply at all.
        assert_eq!(h.request(&[1, 2, 3]).unwrap(), Response::Nothing);
    }
}
