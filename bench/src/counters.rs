//! Counters a server keeps, read by the orchestrator from outside.
//!
//! The server prints the address of [`COUNTERS`] when it is ready; the orchestrator (root)
//! reads them with `pread` on `/proc/PID/mem` at the edges of each measured window. The
//! server does nothing to publish them: no thread, no syscall, no signal.
//!
//! Allocations are counted by a `#[global_allocator]` wrapping the system allocator; FUSE
//! requests by the adapters (one increment per filesystem call, by opcode).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters in separate cache lines (allocations, requests).
#[repr(C, align(64))]
pub struct Counters {
    /// `alloc` + `alloc_zeroed` + `realloc` calls.
    pub allocs: AtomicU64,
    /// Bytes asked for by those calls.
    pub alloc_bytes: AtomicU64,
    _pad: [u64; 6],
    /// FUSE requests by opcode (FORGET counts once per forgotten node, see `adapters`).
    pub ops: [AtomicU64; OPS],
}

/// Opcode slots (FUSE opcodes are below 64; CUSE and notifications are not counted).
pub const OPS: usize = 64;
/// Words in [`Counters`] as read from outside: 8 + `OPS`.
pub const WORDS: usize = 8 + OPS;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

/// The process's counters.
pub static COUNTERS: Counters = Counters {
    allocs: AtomicU64::new(0),
    alloc_bytes: AtomicU64::new(0),
    _pad: [0; 6],
    ops: [ZERO; OPS],
};

/// Counts one request of `opcode`.
#[inline]
pub fn count(opcode: u32) {
    if let Some(c) = COUNTERS.ops.get(opcode as usize) {
        c.fetch_add(1, Relaxed);
    }
}

/// The allocator wrapper.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNTERS.allocs.fetch_add(1, Relaxed);
        COUNTERS
            .alloc_bytes
            .fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        COUNTERS.allocs.fetch_add(1, Relaxed);
        COUNTERS
            .alloc_bytes
            .fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        COUNTERS.allocs.fetch_add(1, Relaxed);
        COUNTERS.alloc_bytes.fetch_add(new_size as u64, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A snapshot of a server's counters, as read from its memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub ops: Vec<u64>,
}

impl Snapshot {
    /// Decodes the `WORDS` native-endian words of a [`Counters`].
    pub fn from_words(w: &[u64]) -> Self {
        Self {
            allocs: w.first().copied().unwrap_or(0),
            alloc_bytes: w.get(1).copied().unwrap_or(0),
            ops: w.get(8..).map(<[u64]>::to_vec).unwrap_or_default(),
        }
    }

    /// `self - earlier`, per field.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            allocs: self.allocs.saturating_sub(earlier.allocs),
            alloc_bytes: self.alloc_bytes.saturating_sub(earlier.alloc_bytes),
            ops: self
                .ops
                .iter()
                .zip(earlier.ops.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// Requests that get a reply (everything but FORGET and BATCH_FORGET).
    pub fn replied(&self) -> u64 {
        self.ops
            .iter()
            .enumerate()
            .filter(|(op, _)| *op != FORGET as usize && *op != BATCH_FORGET as usize)
            .map(|(_, n)| n)
            .sum()
    }

    /// Nodes forgotten.
    pub fn forgets(&self) -> u64 {
        self.ops.get(FORGET as usize).copied().unwrap_or(0)
    }
}

// The opcodes the adapters count (include/uapi/linux/fuse.h).
pub const LOOKUP: u32 = 1;
pub const FORGET: u32 = 2;
pub const GETATTR: u32 = 3;
pub const SETATTR: u32 = 4;
pub const MKDIR: u32 = 9;
pub const UNLINK: u32 = 10;
pub const RMDIR: u32 = 11;
pub const OPEN: u32 = 14;
pub const READ: u32 = 15;
pub const WRITE: u32 = 16;
pub const STATFS: u32 = 17;
pub const RELEASE: u32 = 18;
pub const FSYNC: u32 = 20;
pub const GETXATTR: u32 = 22;
pub const LISTXATTR: u32 = 23;
pub const FLUSH: u32 = 25;
pub const OPENDIR: u32 = 27;
pub const READDIR: u32 = 28;
pub const RELEASEDIR: u32 = 29;
pub const FSYNCDIR: u32 = 30;
pub const ACCESS: u32 = 34;
pub const CREATE: u32 = 35;
pub const BATCH_FORGET: u32 = 42;
pub const FALLOCATE: u32 = 43;
pub const LSEEK: u32 = 46;
pub const READDIRPLUS: u32 = 44;

/// A short name for an opcode number, for reports.
pub fn opcode_name(op: usize) -> String {
    let name = match op as u32 {
        LOOKUP => "LOOKUP",
        FORGET => "FORGET(nodes)",
        GETATTR => "GETATTR",
        SETATTR => "SETATTR",
        MKDIR => "MKDIR",
        UNLINK => "UNLINK",
        RMDIR => "RMDIR",
        OPEN => "OPEN",
        READ => "READ",
        WRITE => "WRITE",
        STATFS => "STATFS",
        RELEASE => "RELEASE",
        FSYNC => "FSYNC",
        GETXATTR => "GETXATTR",
        LISTXATTR => "LISTXATTR",
        FLUSH => "FLUSH",
        OPENDIR => "OPENDIR",
        READDIR => "READDIR",
        RELEASEDIR => "RELEASEDIR",
        FSYNCDIR => "FSYNCDIR",
        ACCESS => "ACCESS",
        CREATE => "CREATE",
        BATCH_FORGET => "BATCH_FORGET",
        FALLOCATE => "FALLOCATE",
        LSEEK => "LSEEK",
        READDIRPLUS => "READDIRPLUS",
        _ => return format!("op{op}"),
    };
    name.to_string()
}
