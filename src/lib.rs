//! ringfuse: Linux FUSE filesystems served by one io_uring event loop per CPU.
//!
//! A filesystem implements [`Filesystem`]; a [`Session`] mounts it and serves its requests
//! on the calling thread. Requests arrive as io_uring completions and replies leave as
//! submissions, one `io_uring_enter` per batch; every buffer is allocated when the session
//! starts, so no request allocates.
//!
//! # Layers
//! - [`abi`]: the FUSE protocol (structs, parsing, encoding), `no_std`;
//! - [`ring`]: io_uring through raw syscalls, `no_std`;
//! - [`mount`]: mounting as root through `/dev/fuse` and `mount(2)`;
//! - the session: INIT negotiation, the loop of the classic transport, dispatch to the
//!   [`Filesystem`] methods, typed in-place [`reply`]s, deferred replies, notifications;
//! - [`testing`]: the in-memory transport, to test a filesystem without mounting it.
//!
//! - [`AsyncFilesystem`] and [`Async`]: `async fn` handlers whose futures live in slot
//!   memory and whose own I/O runs on the loop's ring ([`AsyncCx`]).
//!
//! `unsafe` lives in `sys` (device ioctls, signals, the notification WRITE),
//! `event_loop` (handing the kernel slot buffers for READ, WRITE and the native
//! transport's commands), `slab` (one slot's bytes at a time from the base pointer),
//! `task` (futures stored and polled in place, ring operations' buffers, wakers) and
//! `asyncfs` (lending a request's bytes to its future), each block with its proof.
#![cfg_attr(not(feature = "std"), no_std)]

pub use ringfuse_abi as abi;
pub use ringfuse_ring as ring;

mod asyncfs;
mod attr;
mod cx;
mod dispatch;
mod error;
mod event_loop;
mod fs;
mod init;
mod lost;
pub mod mount;
mod notifier;
mod open_flags;
pub mod reply;
mod session;
mod slab;
mod stats;
mod sys;
mod task;
#[cfg(feature = "std")]
pub mod testing;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use abi::Errno;
/// The protocol's flag sets, also at the root (`ringfuse::FopenFlags`): each has the usual
/// set API (`empty()`, `all()`, `contains`, `insert`, `remove`, `|`, `&`, `-`, `!`).
pub use abi::flags::{
    AttrFlags, FopenFlags, FsyncFlags, GetattrFlags, InitFlags, IoctlFlags, LkFlags,
    NotifyEntryFlags, OpenInFlags, PollFlags, ReadFlags, ReleaseFlags, SetattrValid, SetxattrFlags,
    WriteFlags,
};
pub use asyncfs::{Async, AsyncFilesystem, Opened, XattrOut};
pub use attr::{Attr, Entry, FileType, NodeId, Timestamp};
pub use cx::{Cx, MAX_CHAIN, MAX_TAG};
pub use error::Error;
pub use fs::{CopyRange, Filesystem, InitConfig, IoctlArgs, SetAttr, TimeOrNow};
pub use init::Negotiated;
pub use open_flags::{AccessMode, OpenFlags, RenameFlags};
pub use reply::{
    Deferred, DirAdd, DirFill, DirPlusFill, Done, FileLock, Reply, ReplyAttr, ReplyBmap,
    ReplyCopied, ReplyCreate, ReplyData, ReplyDir, ReplyDirPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyStatx, ReplyWrite,
    ReplyXattr, Statfs,
};
#[cfg(feature = "std")]
pub use session::StopHandle;
pub use session::{Config, MAX_SLOTS, STATIC_SLOTS, Session, Transport, TransportMode};
#[cfg(feature = "std")]
pub use session::{PerCpuReport, run_per_cpu};
pub use stats::Stats;
pub use task::{AsyncCx, IoBuf, MAX_OPS, Op, ReadBuf, WriteBuf};
