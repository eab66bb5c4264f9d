//! `hello-nolibc`: the `hello` example as a static binary that links no libc at all.
//!
//! ```text
//! hello-nolibc MOUNTPOINT
//! cat MOUNTPOINT/hello.txt    # Hello, world!
//! ```
//!
//! The same read-only filesystem as `examples/hello.rs` (one module,
//! `examples/common/hello_fs.rs`, serves both), served by ringfuse built without `std`:
//!
//! - the entry point (`_start`), `exit` and `memcpy`/`memset` come from the `origin` crate;
//! - every syscall goes through rustix's raw Linux backend;
//! - the session runs with [`Session::run_with`] on one static, page-aligned buffer of
//!   [`MEMORY_BYTES`]: nothing is allocated (there is no allocator);
//! - there is no signal handling: it serves until `umount MOUNTPOINT`, then exits 0.
//!
//! `unsafe` here, each with its proof: reading `argv`, borrowing fds 1 and 2, taking the
//! static buffer once, and exporting `origin_main` and a never-called
//! `rust_eh_personality` by name.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

#[path = "../../common/hello_fs.rs"]
mod hello_fs;

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_char};
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, Ordering};

use ringfuse::mount::MountOptions;
use ringfuse::{Config, Session, Timestamp, TransportMode};
use rustix::fd::BorrowedFd;

use crate::hello_fs::Hello;

const USAGE: &str = "usage: hello-nolibc MOUNTPOINT\n";

/// The session's memory: what [`config`] needs, one slot (a 68 KiB request and a 64 KiB
/// reply buffer, the smallest ringfuse makes) and no notification buffers. `run_with`
/// checks it against `Config::static_bytes()` and fails with a clear error if it is short.
const MEMORY_BYTES: usize = 136 * 1024;

/// One slot is enough for a filesystem that answers every request at once; the classic
/// transport keeps the memory independent of the number of CPUs (the native one adds a
/// slot per possible CPU).
fn config() -> Config {
    Config::default()
        .slots(1)
        .max_write(4096)
        .notifications(0, 0)
        .transport(TransportMode::Classic)
        .handle_signals(false)
}

// ---------------------------------------------------------------------------------------------
// The filesystem (as examples/hello.rs)

// ---------------------------------------------------------------------------------------------
// The program: entry point, output, memory, panics

/// Writes to fd 1 or 2 (best effort: output errors are ignored).
struct Out(BorrowedFd<'static>);

impl Out {
    fn stdout() -> Self {
        // SAFETY: `rustix::stdio::stdout` needs fd 1 to be open, and to stay so (not
        // closed and reused) while the `BorrowedFd` is used: `sanitize_stdio` made sure it
        // is open, and this single-threaded program never closes it.
        Self(unsafe { rustix::stdio::stdout() })
    }

    fn stderr() -> Self {
        // SAFETY: as for `stdout`, for fd 2.
        Self(unsafe { rustix::stdio::stderr() })
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            match rustix::io::write(self.0, bytes) {
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(fmt::Error),
            }
        }
        Ok(())
    }
}

/// The session's memory, page-aligned (as the std session's heap buffers are).
#[repr(C, align(4096))]
struct Memory(UnsafeCell<[u8; MEMORY_BYTES]>);

// SAFETY: the bytes are reached only through `take_memory`, which hands out at most one
// reference, ever, so no two threads (there is only one anyway) can share them.
unsafe impl Sync for Memory {}

static MEMORY: Memory = Memory(UnsafeCell::new([0; MEMORY_BYTES]));
static MEMORY_TAKEN: AtomicBool = AtomicBool::new(false);

/// The static buffer, the first time; `None` after.
fn take_memory() -> Option<&'static mut [u8]> {
    if MEMORY_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY:
    // - the pointer comes from a `static`, so it is valid and aligned for the program's
    //   lifetime;
    // - no other reference to the bytes exists or will: the swap above lets exactly one
    //   caller through, and nothing else touches `MEMORY`'s contents.
    Some(unsafe { &mut *MEMORY.0.get() })
}

/// Makes sure fds 0, 1 and 2 are open, as std's runtime does before `main`: if one was
/// closed at exec, the next open would take its number, and output meant for stdout or
/// stderr would go to that file (/dev/fuse, say). Opens /dev/null until the fd it gets is
/// above 2, keeping the ones that fill a hole.
fn sanitize_stdio() -> Result<(), rustix::io::Errno> {
    loop {
        let fd = rustix::fs::open(
            c"/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        )?;
        if rustix::fd::AsRawFd::as_raw_fd(&fd) > 2 {
            return Ok(());
        }
        // It fills the hole at 0, 1 or 2: keep it open for the program's lifetime.
        let _ = rustix::fd::IntoRawFd::into_raw_fd(fd);
    }
}

/// `argv[1]`, if there is exactly one argument.
///
/// # Safety
///
/// `args` must point to `count` pointers to NUL-terminated strings (followed by a null
/// pointer) that live as long as the program, as the kernel lays out `argv` at exec.
unsafe fn mountpoint_arg(count: usize, args: *mut *mut u8) -> Option<&'static CStr> {
    if count != 2 {
        return None;
    }
    // SAFETY: `add` needs the result to stay inside the allocation: `count == 2`, so
    // `args + 1` is the second of the caller-promised pointers.
    let second = unsafe { args.add(1) };
    // SAFETY: `read` needs a valid, aligned pointer to an initialized `*mut u8`: one of
    // the kernel-written `argv` entries (aligned, as the kernel lays them out).
    let arg = unsafe { second.read() };
    if arg.is_null() {
        return None;
    }
    // SAFETY: the caller promises `argv[1]` is a NUL-terminated string that lives (in the
    // initial stack) as long as the program and that nothing writes it.
    Some(unsafe { CStr::from_ptr(arg.cast::<c_char>()) })
}

fn serve(mountpoint: &CStr) -> Result<(), ringfuse::Error> {
    let config = config();
    let need = config.static_bytes();
    let _ = writeln!(
        Out::stdout(),
        "hello-nolibc: buffer memory {need} bytes ({} KiB; static buffer {} KiB)",
        need.div_ceil(1024),
        MEMORY_BYTES / 1024,
    );
    let fs = Hello {
        time: Timestamp::now(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    let mut opts = MountOptions::new();
    opts.fsname("hello")?.subtype("hello")?;
    let memory = take_memory().ok_or(ringfuse::Error::Ended)?;
    let mut session = Session::new(fs, mountpoint, &opts, config)?;
    session.run_with(memory)
}

/// Called by origin's `_start` once the process is set up.
///
/// # Safety
///
/// Called once, by origin, with the `argc`, `argv` and `envp` the kernel passed at exec.
#[unsafe(no_mangle)]
#[allow(
    clippy::no_mangle_with_rust_abi,
    reason = "origin declares it `extern \"Rust\"` and calls it with the Rust ABI"
)]
unsafe fn origin_main(count: usize, args: *mut *mut u8, _env: *mut *mut u8) -> i32 {
    if sanitize_stdio().is_err() {
        return 1;
    }
    // SAFETY: origin passes the kernel's `argc` and `argv` unchanged (this function's
    // own contract).
    let Some(mountpoint) = (unsafe { mountpoint_arg(count, args) }) else {
        let _ = Out::stderr().write_str(USAGE);
        return 2;
    };
    match serve(mountpoint) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(Out::stderr(), "hello-nolibc: {e}");
            1
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let _ = Out::stderr().write_str("hello-nolibc: panicked\n");
    origin::program::immediate_exit(101)
}

/// The unwinder's personality routine, which the prebuilt `core` (compiled to unwind)
/// names in its unwind tables; without LTO the linker keeps that reference. Every panic
/// here aborts, so nothing ever unwinds and this is never called. (origin defines it only
/// with its nightly `unwinding` support.)
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
