//! `passthrough`: a real directory mirrored through FUSE, written as an
//! [`ringfuse::AsyncFilesystem`].
//!
//! ```text
//! passthrough SOURCE_DIR MOUNTPOINT [-o OPTIONS] [--transport auto|classic|native]
//!             [--ttl SECONDS] [--metadata auto|direct|ring] [--per-cpu]
//! ```
//!
//! Every operation on MOUNTPOINT maps to SOURCE_DIR. Serves until unmounted or interrupted
//! (Ctrl-C); with `--per-cpu`, by one loop pinned to each CPU, all sharing the node and
//! handle tables (a node looked up on one CPU is used on another). `-o` takes the mount
//! options of `ringfuse::mount::MountOptions` plus `passthrough` (kernel passthrough,
//! below). It is mounted with `default_permissions`: the kernel checks mode bits against
//! the caller, as the backing filesystem would; the server itself runs as root. `--ttl`
//! (default 1 s) is how long the kernel trusts names and attributes: changes made in
//! SOURCE_DIR behind the mount's back show after that.
//!
//! # One request, one future
//!
//! Each handler (`fs.rs`) is an `async fn` that awaits its backing operations on the
//! loop's own ring ([`ringfuse::AsyncCx`]); while it waits, the loop serves other
//! requests, so a slow backing file delays only the requests that touch it. The futures
//! live in the session's slot memory: nothing is allocated per request.
//!
//! | request | backing operations |
//! |---|---|
//! | READ / WRITE | READ into the reply buffer / WRITE from the request's buffer (ring, or `pread`/`pwrite` on tmpfs; no copy) |
//! | FSYNC / FSYNCDIR / FALLOCATE | FSYNC / FSYNC / FALLOCATE (ring) |
//! | LOOKUP | `openat2(parent, name, O_PATH\|O_NOFOLLOW, RESOLVE_BENEATH\|RESOLVE_NO_SYMLINKS)`, `statx(fd, "")` |
//! | GETATTR | `statx` |
//! | SETATTR | size: `ftruncate` on the open file or on the node reopened for writing; mode, owner, times: `fchmodat`, `fchownat`, `utimensat`; then `statx` |
//! | MKDIR / SYMLINK / LINK / MKNOD | `mkdirat` / `symlinkat` / `linkat(fd, "", AT_EMPTY_PATH)` / `openat2(O_CREAT\|O_EXCL)` or `mknodat`, then as LOOKUP |
//! | UNLINK / RMDIR / RENAME(2) | `unlinkat` / `renameat2` |
//! | CREATE | `openat2(O_CREAT\|O_NOFOLLOW, RESOLVE_BENEATH)`, an `O_PATH` reopen, `statx` |
//! | OPEN / OPENDIR | reopen of the node through `/proc/self/fd/N` |
//! | READDIR, READLINK, STATFS, xattrs, LSEEK | `getdents64`, `readlinkat`, `fstatvfs`, `*xattr` on `/proc/self/fd/N`, `lseek` (io_uring has no opcode for them) |
//!
//! READ, WRITE, FSYNC and FALLOCATE go through the ring: they may wait for a device. The
//! exception is a file on a memory filesystem (tmpfs, ramfs), read and written with
//! `pread`/`pwrite` from the loop: its data never waits for a device, and io_uring cannot
//! read it without blocking (shmem has no `IOCB_NOWAIT` reads), so each ring READ went to
//! an io-wq worker thread, a hop each (with `--per-cpu`, a worker pinned to the loop's own
//! CPU: measured 43k 4 KiB reads/s at QD32 that way, 127k with `pread`). The metadata
//! calls (`openat2`, `statx`, `mkdirat`, `unlinkat`, `renameat2`, `symlinkat`, `linkat`,
//! `ftruncate`) go through the ring when SOURCE_DIR is on a FUSE or network filesystem,
//! where they may take long, and are made directly otherwise
//! (`--metadata auto`, the default): on a local filesystem they never wait for a device
//! (each is on a descriptor or one name in a directory the server holds), and io_uring
//! would run most of them on an io-wq worker thread, a thread hop each. `--metadata
//! ring|direct` forces either. Files of a FUSE backing filesystem get their READ, WRITE
//! and CLOSE sent to an io-wq worker at once (`IOSQE_ASYNC`): FUSE's `direct_io` path
//! would otherwise wait for its server inside the loop's own `io_uring_enter`.
//!
//! # Nodes
//!
//! Each node the kernel knows keeps an `O_PATH` descriptor of its backing inode (see
//! `nodes.rs`): renames never make a node point at another file, no path is walked twice,
//! and everything is relative to a descriptor inside SOURCE_DIR. A request holds the
//! descriptors it uses (an `Rc`) until it ends.
//!
//! # Interrupts and stopping
//!
//! An interrupted request, and every request still running when the session stops
//! (unmount, abort, SIGINT/SIGTERM), is cancelled by the library: its ring operations get
//! `IORING_OP_ASYNC_CANCEL` and end early, its future runs to its end and closes what it
//! opened, and the kernel gets EINTR (EIO at a stop). Handlers that register a node or
//! an open file check `AsyncCx::is_cancelled` first, so the kernel and the tables agree.
//! A cancel interrupts an operation blocked in an interruptible wait — a READ of a FUSE
//! backing file opened `direct_io`, whose server then gets FUSE_INTERRUPT, or a network
//! filesystem's RPC — but not one in an uninterruptible or killable wait, such as a
//! buffered READ of a FUSE backing file waiting for its page: that one still holds the
//! exit until it completes.
//!
//! # Confinement
//!
//! Nothing outside SOURCE_DIR is reachable through the server: names are single
//! components (never `.`, `..` or containing `/`), looked up with `openat2`'s
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` relative to the parent's descriptor, symlinks
//! are never followed by the server (`O_NOFOLLOW`; a symlink is a node of its own whose
//! target READLINK returns verbatim), CREATE refuses to create through a symlink, and
//! reopening goes through `/proc/self/fd/N` of a descriptor already inside the tree.
//! Ownership of what non-root callers create is fixed after the fact (`fchownat`), not by
//! creating with their credentials.
//!
//! # Kernel passthrough (`-o passthrough`)
//!
//! INIT asks for `FUSE_PASSTHROUGH` with `max_stack_depth` 1 (never with
//! `WRITEBACK_CACHE`, which makes the kernel ignore it). OPEN and CREATE then register the
//! backing file ([`ringfuse::AsyncCx::backing_open`]) and answer with its id, so READ and
//! WRITE never reach the server (the exit summary counts those that do). One id per node,
//! shared by its open files and counted (`handles.rs`, `Backings`): the kernel refuses a
//! passthrough open whose backing file differs from the one the inode's other open files
//! use; the id is closed at the RELEASE of the node's last open file.
//!
//! If the kernel does not offer it, or refuses the first backing file (EPERM: not granted,
//! or no CAP_SYS_ADMIN; ELOOP: the source is on a stacked filesystem; EOPNOTSUPP), the
//! server says so on stderr and serves reads and writes through the ring. A later refusal
//! for one file serves that file (every open of its node) through the ring.
//!
//! Layout: `fs.rs` is the filesystem, `nodes.rs` the node table, `handles.rs` the
//! open-file tables. There is no `unsafe` code.
#![deny(unsafe_code)]

mod fs;
mod handles;
mod nodes;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringfuse::abi::flags::InitFlags;
use ringfuse::mount::MountOptions;
use ringfuse::{Async, Config, Session, TransportMode};
use rustix::fs::{Mode, OFlags};

use crate::fs::{KernelPassthrough, Metadata, Options, Passthrough, count};

const USAGE: &str = "usage: passthrough SOURCE_DIR MOUNTPOINT [-o OPTIONS] \
                     [--transport auto|classic|native] [--ttl SECONDS] \
                     [--metadata auto|direct|ring] [--per-cpu]";

/// Requests the session holds at once: on the classic transport in all, on the native one
/// per CPU (the kernel queues a request on the ring of the CPU it was made on). 32 covers
/// a reader at io_uring depth 32 with `ASYNC_DIO` (`fs.rs`, `init`); every slot costs its
/// request and reply buffers, allocated at start.
const SLOTS: u16 = 32;

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
    /// `None`: chosen by the source's filesystem.
    metadata: Option<Metadata>,
    /// One pinned loop per CPU (`ringfuse::run_per_cpu`) instead of one loop.
    per_cpu: bool,
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
    let mut metadata = None;
    let mut per_cpu = false;
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
            Some("--metadata") => {
                let v = text(args.next().ok_or("--metadata needs a value")?)?;
                metadata = parse_metadata(&v)?;
            }
            Some(s) if s.starts_with("--metadata=") => {
                metadata = parse_metadata(&s["--metadata=".len()..])?;
            }
            Some("--per-cpu") => per_cpu = true,
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
        metadata,
        per_cpu,
    }))
}

fn parse_metadata(v: &str) -> Result<Option<Metadata>, String> {
    match v {
        "auto" => Ok(None),
        "direct" => Ok(Some(Metadata::Direct)),
        "ring" => Ok(Some(Metadata::Ring)),
        _ => Err(format!("--metadata {v}: expected auto, direct or ring")),
    }
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

/// Raises the descriptor limit to its hard maximum: each node the kernel holds keeps one.
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

#[allow(clippy::too_many_lines)] // setup, serving and the exit report, read top to bottom
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
    let config = Config::default()
        .transport(args.transport)
        .slots(SLOTS)
        .queue_depth(SLOTS);
    let metadata =
        args.metadata
            .unwrap_or(if fs::slow_filesystem(rustix::fd::AsFd::as_fd(&root)) {
                Metadata::Ring
            } else {
                Metadata::Direct
            });
    let fs = Passthrough::new(
        root,
        Options {
            ttl: args.ttl,
            passthrough: args.passthrough,
            metadata,
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
    let mirroring = format!(
        "passthrough: mirroring {} on {}{}{}; Ctrl-C or `umount {}` to stop",
        args.source.display(),
        args.mountpoint.display(),
        if args.passthrough {
            " (kernel passthrough asked for)"
        } else {
            ""
        },
        if args.per_cpu {
            ", one loop per CPU"
        } else {
            ""
        },
        args.mountpoint.display()
    );
    // `fs` keeps the tables (and the counters) every loop's value shares.
    let (result, stats, negotiated, transport) = if args.per_cpu {
        println!("{mirroring}");
        let report = ringfuse::run_per_cpu(args.mountpoint.as_path(), &opts, config, |_cpu| {
            Async::new(fs.for_another_loop())
        })
        .map_err(|e| e.to_string())?;
        (
            Ok(()),
            report.total(),
            report.negotiated,
            report.transport(),
        )
    } else {
        let mut session = Session::new(
            Async::new(fs.for_another_loop()),
            args.mountpoint.as_path(),
            &opts,
            config,
        )
        .map_err(|e| e.to_string())?;
        println!("{mirroring}");
        let result = session.run();
        (
            result,
            session.stats(),
            session.negotiated(),
            session.transport(),
        )
    };
    let c = fs.counters();
    let granted = negotiated.is_some_and(|n| n.has(InitFlags::PASSTHROUGH));
    let kernel = fs.kernel_passthrough();
    let (reads, writes) = (count(&c.reads), count(&c.writes));
    println!(
        "passthrough: served {} requests over the {:?} transport ({reads} READ, {writes} \
         WRITE; metadata {metadata:?}); {} ring operations cancelled; bytes copied: {} of \
         requests, {} of replies; FUSE_PASSTHROUGH in the INIT answer: {}; kernel \
         passthrough: {}",
        stats.requests(),
        transport,
        stats.fs_ops_cancelled,
        stats.request_bytes_copied,
        stats.reply_bytes_copied,
        if granted { "yes" } else { "no" },
        match kernel {
            KernelPassthrough::Off => "not asked for".to_owned(),
            KernelPassthrough::Asked => "granted at INIT, no file opened".to_owned(),
            KernelPassthrough::On => format!(
                "on ({} opens, {} backing ids registered, {} closed)",
                count(&c.passthrough_opens),
                count(&c.backing_opened),
                count(&c.backing_closed)
            ),
            KernelPassthrough::Refused(None) => "not offered by the kernel".to_owned(),
            KernelPassthrough::Refused(Some(e)) => format!("refused by the kernel ({e:?})"),
        }
    );
    // The same, for scripts and tests.
    println!(
        "passthrough-counters: kernel={} reads={reads} writes={writes} passthrough_opens={} \
         backing_opened={} backing_closed={} backing_left={} direct_files={} cancelled={} \
         request_bytes_copied={} reply_bytes_copied={}",
        match kernel {
            KernelPassthrough::Off => "off",
            KernelPassthrough::Asked => "asked",
            KernelPassthrough::On => "on",
            KernelPassthrough::Refused(None) => "not-offered",
            KernelPassthrough::Refused(Some(_)) => "refused",
        },
        count(&c.passthrough_opens),
        count(&c.backing_opened),
        count(&c.backing_closed),
        fs.backing_ids(),
        count(&c.direct_files),
        stats.fs_ops_cancelled,
        stats.request_bytes_copied,
        stats.reply_bytes_copied,
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
        let a = args(&["/s", "/m", "--metadata", "ring"]).unwrap().unwrap();
        assert_eq!(a.metadata, Some(Metadata::Ring));
        let a = args(&["/s", "/m", "--metadata=auto"]).unwrap().unwrap();
        assert_eq!(a.metadata, None);
        assert!(args(&["/s", "/m", "--metadata", "x"]).is_err());
        assert!(!a.per_cpu);
        let a = args(&["/s", "/m", "--per-cpu"]).unwrap().unwrap();
        assert!(a.per_cpu);
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
}
