//! Other processes (`std` only): fusermount3's socket and the `/dev/fuse` fd it sends back,
//! fds and sessions across `exec`, and the auto-unmount watcher that outlives its server.
//!
//! The `unsafe` here is `pre_exec` (closures that run between `fork` and `exec`) and the
//! watcher's `fork`: in the child only raw system calls through rustix or libc's thin
//! wrappers run (no allocation, no locks), which is what a child of a threaded process may
//! do.
#![allow(unsafe_code)]

extern crate std;

use core::ffi::CStr;
use core::mem::MaybeUninit;

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::{self, Errno, FdFlags, IoSliceMut};
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketFlags, SocketType,
};
use rustix::pipe::PipeFlags;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use super::{MountId, mount_id, retry_on_eintr, unmount};

/// A connected pair of Unix stream sockets, both close-on-exec: one end stays here, the other
/// is passed to fusermount3 with [`pass_fd`] (`_FUSE_COMMFD`).
pub(crate) fn comm_socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
}

/// Makes the close-on-exec `fd` survive into the program `cmd` runs (only that one: it is
/// cleared in the child, so other threads' spawns never inherit it) and returns its number.
/// `fd` must stay open until `cmd` is spawned.
pub(crate) fn pass_fd(cmd: &mut Command, fd: BorrowedFd<'_>) -> i32 {
    let raw = fd.as_raw_fd();
    let keep = move || -> std::io::Result<()> {
        // SAFETY: `raw` is open in the child: the caller keeps it open in the parent until
        // the spawn, and fork copies it.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        rustix::io::fcntl_setfd(fd, FdFlags::empty()).map_err(std::io::Error::from)
    };
    // SAFETY: the closure makes one fcntl system call and allocates nothing, which is
    // allowed between fork and exec.
    unsafe { cmd.pre_exec(keep) };
    raw
}

/// Makes the program `cmd` runs the leader of a new session (`setsid`): no controlling
/// terminal, so Ctrl-C in the terminal that started it does not reach it.
pub(crate) fn detach_on_exec(cmd: &mut Command) {
    let detach = || -> std::io::Result<()> {
        rustix::process::setsid()
            .map(drop)
            .map_err(std::io::Error::from)
    };
    // SAFETY: one setsid system call, nothing allocated.
    unsafe { cmd.pre_exec(detach) };
}

/// Receives one fd sent with `SCM_RIGHTS` (fusermount3's `send_fd`), close-on-exec.
/// `Ok(None)` if the peer closed the socket without sending one (fusermount3 failed).
pub(crate) fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0_u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    retry_on_eintr(|| {
        rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
    })?;
    let mut received = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            // Any further fds are dropped (closed) with the iterator.
            if received.is_none() {
                received = fds.next();
            }
        }
    }
    Ok(received)
}

/// Writes one byte to `fd` (the readiness pipe of a detached server).
pub(crate) fn write_byte(fd: BorrowedFd<'_>) -> io::Result<()> {
    retry_on_eintr(|| rustix::io::write(fd, b"1")).map(drop)
}

/// Writes the readiness byte to the pipe `raw` that a helper left open for us across exec
/// (its number came from the environment), then closes it. EBADF unless `raw` is an open
/// pipe.
pub(crate) fn notify_pipe(raw: i32) -> io::Result<()> {
    if raw < 3 {
        return Err(Errno::BADF);
    }
    // SAFETY: only the raw number is used here, to ask the kernel what it is.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let st = rustix::fs::fstat(borrowed)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Fifo {
        return Err(Errno::BADF);
    }
    // SAFETY: the helper made this pipe end for this process alone, and nothing else in it
    // knows the number: taking ownership closes it exactly once, here.
    let owned = unsafe { <OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(raw) };
    write_byte(owned.as_fd())
}

/// Reads from `fd` until it has one byte (true) or end of file (false).
pub(crate) fn read_byte(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut byte = [0_u8; 1];
    retry_on_eintr(|| rustix::io::read(fd, &mut byte)).map(|n| n == 1)
}

/// A pipe, both ends close-on-exec: `(read, write)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
}

/// Points fds 1 and 2 at `/dev/null` (a detached server, once its parent stopped reading
/// them).
pub(crate) fn silence_stdout_stderr() -> io::Result<()> {
    let null = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)?;
    Ok(())
}

/// How the auto-unmount watcher unmounts: `umount2` itself (a direct mount, root), or by
/// executing `fusermount3 -u -z -- PATH` (a mount fusermount3 made: the user may not call
/// `umount2`). The argument vector is built before the fork, since the child may not
/// allocate.
pub(crate) struct Unmounter {
    /// `fusermount3`'s path and arguments, NUL-terminated, and the pointer array over them.
    exec: Option<(
        std::vec::Vec<std::ffi::CString>,
        std::vec::Vec<*const libc::c_char>,
    )>,
}

impl Unmounter {
    /// `umount2(path, MNT_DETACH)`.
    pub(crate) fn syscall() -> Self {
        Self { exec: None }
    }

    /// `program -u -z -- path`; `None` if an argument holds a NUL byte.
    pub(crate) fn fusermount(program: &std::path::Path, path: &CStr) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt as _;
        let args = [
            std::ffi::CString::new(program.as_os_str().as_bytes()).ok()?,
            std::ffi::CString::from(c"-u"),
            std::ffi::CString::from(c"-z"),
            std::ffi::CString::from(c"--"),
            std::ffi::CString::from(path),
        ];
        let args = std::vec::Vec::from(args);
        let mut ptrs: std::vec::Vec<*const libc::c_char> =
            args.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(core::ptr::null());
        Some(Self {
            exec: Some((args, ptrs)),
        })
    }
}

/// Starts the auto-unmount watcher of the mount `id` at `path` and returns the fd that keeps
/// it waiting: when every copy of it is closed (this process ended, even by `kill -9`, or
/// the mount's guard dropped it), the watcher unmounts `path` lazily with `how` if the
/// mount there is still `id` (or a dead FUSE mount: ENOTCONN), then exits.
///
/// The watcher is a grandchild in its own session (so neither a terminal's Ctrl-C nor the
/// server's process group reaches it), adopted by init (so it never becomes our zombie),
/// named `rf-autounmount` (so `pkill NAME` of the server spares it), with every signal
/// blocked, its working directory `/`, stdio on `/dev/null` and every other fd closed (it
/// must not hold `/dev/fuse`, or a pipe of its parent's caller, open).
pub(crate) fn spawn_unmount_watcher(
    path: &CStr,
    id: MountId,
    how: &Unmounter,
) -> io::Result<OwnedFd> {
    let (read, write) = pipe()?;
    let keep = read.as_raw_fd();
    // SAFETY: the child runs only `watcher_child`, which makes raw system calls and never
    // returns (see the module docs).
    match unsafe { libc::fork() } {
        -1 => Err(last_errno()),
        0 => watcher_child(keep, path, id, how),
        pid => {
            drop(read);
            // The first child forks the watcher and exits at once.
            let mut status = 0;
            loop {
                // SAFETY: `status` is a valid pointer to a local; `pid` is our child.
                let rc = unsafe { libc::waitpid(pid, &raw mut status, 0) };
                if rc != -1 || last_errno() != Errno::INTR {
                    break;
                }
            }
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(write)
            } else {
                Err(Errno::CHILD)
            }
        }
    }
}

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The first child: a new session, then the watcher as its child; exits 0 if that fork
/// worked.
fn watcher_child(keep: i32, path: &CStr, id: MountId, how: &Unmounter) -> ! {
    let _ = rustix::process::setsid();
    // SAFETY: as in `spawn_unmount_watcher`: the grandchild runs only `watch`.
    let code = match unsafe { libc::fork() } {
        -1 => 1,
        0 => watch(keep, path, id, how),
        _ => 0,
    };
    // SAFETY: `_exit` ends the process without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

/// The watcher itself.
fn watch(keep: i32, path: &CStr, id: MountId, how: &Unmounter) -> ! {
    let keep_u = keep.unsigned_abs();
    // close_range(2) around `keep` (Linux 5.9+; errors leave fds open, which only costs
    // their lifetime).
    if keep_u > 0 {
        // SAFETY: close_range takes three integers; closing fds we do not use is harmless
        // in this process, which runs no other code.
        unsafe { libc::syscall(libc::SYS_close_range, 0_u32, keep_u - 1, 0_u32) };
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, keep_u + 1, u32::MAX, 0_u32) };
    // stdio on /dev/null, for fusermount3 (a setuid program should not find 0-2 closed).
    if let Ok(null) = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    let _ = rustix::thread::set_name(c"rf-autounmount");
    // SAFETY: `set` is a local `sigset_t`, valid zeroed; `sigfillset` fills it.
    let mut set: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: a valid pointer to the local.
    unsafe { libc::sigfillset(&raw mut set) };
    // SAFETY: valid pointer; a null old-set pointer is allowed.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &raw const set, core::ptr::null_mut()) };
    let _ = rustix::process::chdir(c"/");
    // SAFETY: `keep` is the pipe's read end, open (the close_range calls spared it).
    let pipe = unsafe { BorrowedFd::borrow_raw(keep) };
    let mut buf = [0_u8; 16];
    loop {
        match rustix::io::read(pipe.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    let ours = match mount_id(path) {
        Ok(now) => now.same_mount(&id),
        Err(e) => e == Errno::NOTCONN,
    };
    if ours {
        match &how.exec {
            None => {
                let _ = unmount(path, true);
            }
            Some((args, ptrs)) => {
                // Unblock signals for the program we become.
                // SAFETY: valid pointer to the local set.
                unsafe {
                    libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, core::ptr::null_mut())
                };
                if let Some(program) = args.first() {
                    // SAFETY: `program` and `ptrs` (NUL-terminated strings, a null-terminated
                    // array) were built before the fork and are alive in this copy.
                    unsafe { libc::execv(program.as_ptr(), ptrs.as_ptr()) };
                }
            }
        }
    }
    // SAFETY: as in `watcher_child`.
    unsafe { libc::_exit(0) }
}
