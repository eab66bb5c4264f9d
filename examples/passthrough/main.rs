//! `passthrough`: a real directory mirrored through FUSE, its I/O on the loop's own ring.
//!
//! ```text
//! passthrough SOURCE_DIR MOUNTPOINT [-o OPTIONS] [--transport auto|classic|native]
//!             [--ttl SECONDS]
//! ```
//!
//! Every operation on MOUNTPOINT maps to SOURCE_DIR. Serves until unmounted or interrupted
//! (Ctrl-C). `-o` takes the mount options of `ringfuse::mount::MountOptions` plus
//! `passthrough` (kernel passthrough, below). It is mounted with `default_permissions`:
//! the kernel checks mode bits against the caller, as the backing filesystem would; the
//! server itself runs as root. `--ttl` (default 1 s) is how long the kernel trusts names
//! and attributes: changes made in SOURCE_DIR behind the mount's back show after that.
//!
//! # One request, one loop
//!
//! A request whose backing operation io_uring can do never blocks the loop: the method
//! queues the SQE on the loop's ring ([`ringfuse::Cx::submit`]) and defers its reply; the
//! completion ([`ringfuse::Filesystem::completion`]) queues the next step or resumes the
//! reply ([`ringfuse::Cx::resume`]) and answers. So a backing file that is slow to read
//! (a network or FUSE filesystem) delays the requests that touch it, not a `stat` of
//! another file. Through the ring (opcode in parentheses):
//!
//! | request | backing operations |
//! |---|---|
//! | LOOKUP | `openat2(parent, name, O_PATH\|O_NOFOLLOW, RESOLVE_BENEATH\|RESOLVE_NO_SYMLINKS)` (OPENAT2), `statx(fd, "")` (STATX) |
//! | GETATTR | `statx` (STATX) |
//! | SETATTR | size: `ftruncate` (FTRUNCATE) on the open file or on the node reopened for writing (OPENAT, CLOSE); then `statx` |
//! | MKDIR / SYMLINK / LINK | `mkdirat` (MKDIRAT) / `symlinkat` (SYMLINKAT) / `linkat(fd, "", AT_EMPTY_PATH)` (LINKAT), then as LOOKUP |
//! | MKNOD of a regular file | `openat2(O_CREAT\|O_EXCL)`, CLOSE, then as LOOKUP |
//! | UNLINK / RMDIR / RENAME(2) | `unlinkat` (UNLINKAT) / `renameat2` (RENAMEAT) |
//! | CREATE | `openat2(O_CREAT\|O_NOFOLLOW, RESOLVE_BENEATH)`, an `O_PATH` reopen (OPENAT), `statx` |
//! | OPEN / OPENDIR | reopen of the node through `/proc/self/fd/N` (OPENAT) |
//! | READ | a NOP, then READ at the request's offset straight into the reply buffer |
//! | WRITE | WRITE at the request's offset |
//! | FSYNC / FSYNCDIR / FALLOCATE | FSYNC / FSYNC / FALLOCATE |
//! | RELEASE / RELEASEDIR, FORGET | CLOSE |
//! | GETXATTR / SETXATTR | GETXATTR / SETXATTR on `/proc/self/fd/N` |
//!
//! Files of a FUSE backing filesystem get their READ, WRITE and CLOSE sent to an io-wq
//! worker at once (`IOSQE_ASYNC`): io_uring would otherwise try them inline, and FUSE's
//! `direct_io` path waits for its server inside the loop's own `io_uring_enter` (see
//! `io.rs`). Which backing devices are FUSE is read from `/proc/self/mountinfo`, once per
//! device.
//!
//! Blocking syscalls left in the request path, because io_uring (6.18) has no opcode for
//! them — all metadata calls on local descriptors, none waits for file data: READDIR
//! (`lseek` + `getdents64`; entry types are the backing `d_type` as it is, `DT_UNKNOWN`
//! included, so no per-entry stat), READLINK (`readlinkat`, straight into the reply
//! buffer), SETATTR's mode, owner and times (`fchmodat`, `fchownat`, `utimensat`), MKNOD of
//! FIFOs, sockets and devices (`mknodat`), STATFS (`fstatvfs`), LISTXATTR / REMOVEXATTR,
//! LSEEK (`SEEK_DATA`/`SEEK_HOLE`), for non-root callers a `fchownat` of what they create
//! (the server creates as root) and an `fstat` of the parent (set-group-ID), with kernel
//! passthrough the `FUSE_DEV_IOC_BACKING_OPEN`/`CLOSE` ioctls (once per node with open
//! files, not per open), and the `/proc/self/mountinfo` read of a backing device not seen
//! before. COPY_FILE_RANGE, FLUSH and STATX answer ENOSYS (the kernel then copies through
//! READ/WRITE, skips flushes and uses GETATTR); locks are left to the kernel.
//!
//! # Reads and writes
//!
//! A backing READ lands straight in the reply buffer of the deferred READ request
//! ([`ringfuse::Cx::deferred_buffer`]), which the session keeps reserved until the request
//! is resumed and answered with `ReplyData::commit(n)`: no copy. The session hands that
//! buffer out only from a call after the one that deferred the request, so READ first
//! queues a NOP and submits the backing READ from the NOP's completion (one more CQE per
//! READ, which is cheaper than copying up to `max_write` bytes). `io.rs` holds the deferred
//! token while the READ is in flight, so the request cannot be answered — and its buffer
//! handed back — before the kernel has written it.
//!
//! WRITE data is still copied once, into the operation slot's buffer: the filesystem gets
//! it as a `&[u8]` borrowed for the `write` call only, and the backing WRITE outlives that
//! call (the library gives no access to a deferred request's data). With `-o passthrough`
//! there is no copy at all: reads and writes never reach the server.
//!
//! # Nodes
//!
//! Each node the kernel knows keeps an `O_PATH` descriptor of its backing inode (see
//! `nodes.rs`): renames never make a node point at another file, no path is walked twice,
//! and everything is relative to a descriptor inside SOURCE_DIR. Ring operations name
//! descriptors by number and path-based ones resolve it only when they run, so a request
//! pins the nodes it uses: a node forgotten meanwhile keeps its descriptor (and number)
//! until the request is answered.
//!
//! # Stopping
//!
//! The loop ends only once every operation the filesystem queued has completed. When it
//! starts ending (unmount, abort, SIGINT/SIGTERM), [`ringfuse::Filesystem::stopping`]
//! cancels every backing operation in flight (`IORING_OP_ASYNC_CANCEL`) and no new one is
//! queued; waiting requests are answered with the cancelled operation's error. A cancel
//! interrupts an operation blocked in an interruptible wait — a READ of a FUSE backing
//! file opened `direct_io`, whose server then gets FUSE_INTERRUPT, or a network
//! filesystem's RPC — but not one in an uninterruptible or killable wait, such as a
//! buffered READ of a FUSE backing file waiting for its page (`folio_lock_killable`): that
//! one still holds the exit until it completes.
//!
//! # Limits
//!
//! Ownership of what non-root callers create is fixed after the fact (`fchownat`), not by
//! creating with their credentials.
//!
//! # Confinement
//!
//! Nothing outside SOURCE_DIR is reachable through the server: names are single
//! components (never `.`, `..` or containing `/`), looked up with `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` relative to the parent's descriptor, symlinks
//! are never followed by the server (`O_NOFOLLOW`; a symlink is a node of its own whose
//! target READLINK returns verbatim, resolved by the caller's kernel relative to the
//! mount), CREATE refuses to create through a symlink, and reopening goes through
//! `/proc/self/fd/N` of a descriptor already inside the tree.
//!
//! # Kernel passthrough (`-o passthrough`)
//!
//! INIT asks for `FUSE_PASSTHROUGH` with `max_stack_depth` 1 (never with
//! `WRITEBACK_CACHE`, which makes the kernel ignore it). OPEN and CREATE then register the
//! backing file with [`ringfuse::Cx::backing_open`] and answer with its id
//! ([`ringfuse::ReplyOpen::opened_passthrough`],
//! [`ringfuse::ReplyCreate::created_passthrough`]), so READ and WRITE never reach the server
//! (the exit summary counts those that do). One id per node, shared by its open files and
//! counted (`handles.rs`, `Backings`): the kernel refuses a passthrough open whose backing
//! file differs from the one the inode's other open files use, and the id is closed
//! ([`ringfuse::Cx::backing_close`]) at the RELEASE of the node's last open file.
//!
//! If the kernel does not offer it, or refuses the first backing file (EPERM: not granted,
//! or no CAP_SYS_ADMIN; ELOOP: the source is on a stacked filesystem such as overlayfs or
//! another passthrough mount; EOPNOTSUPP), the server says so on stderr and serves reads
//! and writes through the ring. A later refusal for one file serves that file (every open
//! of its node) through the ring.
//!
//! Layout: `fs.rs` is the [`ringfuse::Filesystem`] (safe code), `io.rs` the memory the
//! kernel uses and the SQEs pointing at it (the only `unsafe`), `nodes.rs` the node table,
//! `handles.rs` the open-file tables.
#![deny(unsafe_code)]

mod fs;
mod handles;
mod io;
mod nodes;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringfuse::abi::flags::InitFlags;
use ringfuse::mount::MountOptions;
use ringfuse::{Config, Session, TransportMode};
use rustix::fs::{Mode, OFlags};

use crate::fs::{KernelPassthrough, Options, Passthrough};

const USAGE: &str = "usage: passthrough SOURCE_DIR MOUNTPOINT [-o OPTIONS] \
                     [--transport auto|classic|native] [--ttl SECONDS]";

/// Requests the session holds at once (and operation slots made at start).
const SLOTS: u16 = 16;

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    source: PathBuf,
    mountpoint: PathBuf,
    /// `-o` options for the mount (ours removed).
    options: Vec<String>,
    passthrough: bool,
    transport: TransportMode,
    ttl: Duration,
}

/// Splits a `-o` string at unescaped commas, taking out the options this program handles
/// itself (`passthrough`); returns the rest and whether `passthrough` was there.
fn split_options(opts: &str) -> (String, bool) {
    let mut rest = Vec::new();
    let mut passthrough = false;
    let mut current = String::new();
    let mut chars = opts.chars();
    let mut flush = |current: &mut String| {
        match current.as_str() {
            "passthrough" => passthrough = true,
            "" => {}
            _ => rest.push(core::mem::take(current)),
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            ',' => flush(&mut current),
            _ => current.push(c),
        }
    }
    flush(&mut current);
    (rest.join(","), passthrough)
}

/// Reads the arguments after the program name; `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut passthrough = false;
    let mut transport = TransportMode::Auto;
    let mut ttl = Duration::from_secs(1);
    let mut args = args.into_iter();
    let text = |a: OsString| {
        a.into_string()
            .map_err(|a| format!("not UTF-8: {}", a.to_string_lossy()))
    };
    let mut take_opts = |o: &str, options: &mut Vec<String>| {
        let (rest, pt) = split_options(o);
        passthrough |= pt;
        if !rest.is_empty() {
            options.push(rest);
        }
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(None),
            Some("-o") => {
                let o = text(args.next().ok_or("-o needs a value")?)?;
                take_opts(&o, &mut options);
            }
            Some(s) if s.starts_with("-o") => take_opts(&s[2..], &mut options),
            Some("--transport") => {
                let v = text(args.next().ok_or("--transport needs a value")?)?;
                transport = parse_transport(&v)?;
            }
            Some(s) if s.starts_with("--transport=") => {
                transport = parse_transport(&s["--transport=".len()..])?;
            }
            Some("--ttl") => {
                let v = text(args.next().ok_or("--ttl needs a value")?)?;
                ttl = parse_ttl(&v)?;
            }
            Some(s) if s.starts_with("--ttl=") => ttl = parse_ttl(&s["--ttl=".len()..])?,
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}"));
            }
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let mut positional = positional.into_iter();
    let source = positional.next().ok_or("missing SOURCE_DIR")?;
    let mountpoint = positional.next().ok_or("missing MOUNTPOINT")?;
    if let Some(extra) = positional.next() {
        return Err(format!("unexpected argument {}", extra.display()));
    }
    Ok(Some(Args {
        source,
        mountpoint,
        options,
        passthrough,
        transport,
        ttl,
    }))
}

fn parse_transport(v: &str) -> Result<TransportMode, String> {
    match v {
        "auto" => Ok(TransportMode::Auto),
        "classic" => Ok(TransportMode::Classic),
        "native" => Ok(TransportMode::Native),
        _ => Err(format!("--transport {v}: expected auto, classic or native")),
    }
}

fn parse_ttl(v: &str) -> Result<Duration, String> {
    let secs: f64 = v
        .parse()
        .map_err(|_| format!("--ttl {v}: not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("--ttl {v}: out of range"))
}

/// How many CPUs the kernel may make FUSE queues for (`/sys/devices/system/cpu/possible`,
/// such as `0-3`): each gets native-transport entries, which are request slots too.
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = text
        .trim()
        .rsplit([',', '-'])
        .next()
        .and_then(|n| n.parse::<usize>().ok());
    last.map_or(1, |n| n + 1)
}

/// Raises the descriptor limit to its hard maximum: each node the kernel holds keeps one.
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let root = rustix::fs::open(
        &args.source,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{}: {e}", args.source.display()))?;
    // Modes arrive with the caller's umask applied: the server's must not mask them again.
    rustix::process::umask(Mode::empty());
    raise_nofile();
    let config = Config::default().transport(args.transport).slots(SLOTS);
    let slots = usize::from(SLOTS) + possible_cpus() * usize::from(config.queue_depth);
    let fs = Passthrough::new(
        root,
        Options {
            ttl: args.ttl,
            passthrough: args.passthrough,
            slots,
            data_len: config.max_write as usize,
        },
    )
    .map_err(|e| format!("setting up: {e}"))?;
    let mut opts = MountOptions::new();
    opts.subtype("passthrough").map_err(|e| e.to_string())?;
    let source = args.source.to_string_lossy();
    if opts.fsname(&source).is_err() {
        opts.fsname("passthrough").map_err(|e| e.to_string())?;
    }
    opts.default_permissions(true);
    for o in &args.options {
        opts.parse_opts(o).map_err(|e| format!("-o {o}: {e}"))?;
    }
    let mut session =
        Session::new(fs, args.mountpoint.as_path(), &opts, config).map_err(|e| e.to_string())?;
    println!(
        "passthrough: mirroring {} on {}{}; Ctrl-C or `umount {}` to stop",
        args.source.display(),
        args.mountpoint.display(),
        if args.passthrough {
            " (kernel passthrough asked for)"
        } else {
            ""
        },
        args.mountpoint.display()
    );
    let result = session.run();
    let stats = session.stats();
    let fs = session.filesystem();
    let c = fs.counters();
    let granted = session
        .negotiated()
        .is_some_and(|n| n.has(InitFlags::PASSTHROUGH));
    let kernel = fs.kernel_passthrough();
    println!(
        "passthrough: served {} requests over the {:?} transport ({} READ, {} WRITE); {} ring \
         operations, {} blocking calls, {} cancelled at stop, {} slots added; \
         FUSE_PASSTHROUGH in the INIT answer: {}; kernel passthrough: {}",
        stats.requests(),
        session.transport(),
        c.reads,
        c.writes,
        c.ring_ops,
        c.blocking,
        c.cancelled,
        c.slots_added,
        if granted { "yes" } else { "no" },
        match kernel {
            KernelPassthrough::Off => "not asked for".to_owned(),
            KernelPassthrough::Asked => "granted at INIT, no file opened".to_owned(),
            KernelPassthrough::On => format!(
                "on ({} opens, {} backing ids registered, {} closed)",
                c.passthrough_opens, c.backing_opened, c.backing_closed
            ),
            KernelPassthrough::Refused(None) => "not offered by the kernel".to_owned(),
            KernelPassthrough::Refused(Some(e)) => format!("refused by the kernel ({e:?})"),
        }
    );
    // The same, for scripts and tests.
    println!(
        "passthrough-counters: kernel={} reads={} writes={} passthrough_opens={} \
         backing_opened={} backing_closed={} backing_left={} cancelled={}",
        match kernel {
            KernelPassthrough::Off => "off",
            KernelPassthrough::Asked => "asked",
            KernelPassthrough::On => "on",
            KernelPassthrough::Refused(None) => "not-offered",
            KernelPassthrough::Refused(Some(_)) => "refused",
        },
        c.reads,
        c.writes,
        c.passthrough_opens,
        c.backing_opened,
        c.backing_closed,
        fs.backing_ids(),
        c.cancelled,
    );
    result.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("passthrough: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("passthrough: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(v.iter().map(OsString::from))
    }

    #[test]
    fn command_line() {
        let a = args(&[
            "/src",
            "/mnt",
            "-o",
            "passthrough,allow_other",
            "--ttl",
            "0.5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.source, PathBuf::from("/src"));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(a.options, ["allow_other"]);
        assert!(a.passthrough);
        assert_eq!(a.ttl, Duration::from_millis(500));
        let a = args(&["-oro", "/s", "/m", "--transport=classic"])
            .unwrap()
            .unwrap();
        assert_eq!(a.options, ["ro"]);
        assert!(!a.passthrough);
        assert_eq!(a.transport, TransportMode::Classic);
        assert_eq!(args(&["--help"]), Ok(None));
        assert!(args(&["/s"]).is_err());
        assert!(args(&["/s", "/m", "/x"]).is_err());
        assert!(args(&["/s", "/m", "--ttl", "-1"]).is_err());
        assert!(args(&["/s", "/m", "-x"]).is_err());
    }

    #[test]
    fn our_options_are_taken_out_escapes_kept() {
        assert_eq!(split_options("passthrough"), (String::new(), true));
        assert_eq!(
            split_options("fsname=a\\,b,passthrough,ro"),
            ("fsname=a\\,b,ro".to_owned(), true)
        );
        assert_eq!(split_options(",,ro,"), ("ro".to_owned(), false));
    }

    #[test]
    fn cpus() {
        assert!(possible_cpus() >= 1);
    }
}
