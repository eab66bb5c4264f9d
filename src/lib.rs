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
//!
//! and in this crate, bottom first, each using only what is below it (the README's
//! "Workspace" has the tree; `tests/layers.rs` checks the rule):
//! - `sys`: the OS outside io_uring (device ioctls, `mount(2)`, fusectl, eventfds, signals,
//!   fusermount3's socket, the auto-unmount watcher);
//! - [`mount`]: mounting for every user: `mount(2)` as root (or uid 0 of a user namespace),
//!   fusermount3 for everyone else, `auto_unmount`, and the `mount.fuse.NAME` helper;
//! - `error`: [`Error`];
//! - `state`: what a loop allocates once (slots, notification buffers, the tags of ring
//!   operations, [`Stats`]);
//! - `api`: what a filesystem is written against: [`Filesystem`], [`Cx`], typed in-place
//!   [`reply`]s and deferred replies, [`Attr`] and [`Entry`];
//! - `asyncfs`: [`AsyncFilesystem`] and [`Async`]: `async fn` handlers whose futures live
//!   in slot memory and whose own I/O runs on the loop's ring ([`AsyncCx`]);
//! - `event_loop`: the loop both transports share, the classic and native transports,
//!   the handling of one request, dispatch to the [`Filesystem`] methods, INIT;
//! - `session`: [`Session`], [`Config`], [`run_per_cpu`];
//! - [`testing`]: the in-memory transport, to test a filesystem without mounting it.
//!
//! `unsafe` lives in `sys` (device ioctls, signals, the notification WRITE, `fork` and
//! `pre_exec`),
//! `state::slab` (one slot's bytes at a time from the base pointer), `event_loop`,
//! `event_loop::classic` and `event_loop::native` (handing the kernel event buffers, slot
//! buffers for READ and WRITE, and the native transport's commands), `asyncfs::task`
//! (futures stored and polled in place, ring operations' buffers, wakers), `asyncfs` and
//! `asyncfs::adapter` (lending a request's bytes to its future and to its reply), each
//! block with its proof.
#![cfg_attr(not(feature = "std"), no_std)]

pub use ringfuse_abi as abi;
pub use ringfuse_ring as ring;

mod api;
mod asyncfs;
mod error;
mod event_loop;
pub mod mount;
mod session;
mod state;
mod sys;
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
pub use api::attr::{Attr, Entry, FileType, NodeId, Timestamp};
pub use api::cx::{Cx, MAX_CHAIN, MAX_TAG};
pub use api::fs::{CopyRange, Filesystem, InitConfig, IoctlArgs, SetAttr, TimeOrNow};
pub use api::open_flags::{AccessMode, OpenFlags, RenameFlags};
pub use api::reply;
pub use asyncfs::task::{AsyncCx, IoBuf, MAX_OPS, Op, ReadBuf, WriteBuf};
pub use asyncfs::{Async, AsyncFilesystem, Opened, XattrOut};
pub use error::Error;
pub use event_loop::init::Negotiated;
#[doc(no_inline)]
pub use reply::{
    Deferred, DirAdd, DirFill, DirPlusFill, Done, FileLock, Reply, ReplyAttr, ReplyBmap,
    ReplyCopied, ReplyCreate, ReplyData, ReplyDir, ReplyDirPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLock, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyStatx, ReplyWrite,
    ReplyXattr, Statfs,
};
#[cfg(feature = "std")]
pub use session::StopHandle;
pub use session::{Config, STATIC_SLOTS, Session, Transport, TransportMode};
#[cfg(feature = "std")]
pub use session::{PerCpuReport, run_per_cpu};
pub use state::{MAX_SLOTS, Stats};
