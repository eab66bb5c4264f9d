//! `memfs`: a complete in-memory POSIX filesystem on ringfuse.
//!
//! ```text
//! memfs MOUNTPOINT [-o OPTIONS] [--capacity BYTES[K|M|G|T]] [--no-readdirplus]
//!       [--transport auto|classic|native] [--per-cpu]
//! mount -t fuse.memfs memfs MOUNTPOINT -o size=1G,allow_other   (installed as its own helper:
//!                                       ln -s "$(command -v memfs)" /sbin/mount.fuse.memfs)
//! ```
//!
//! `-o` takes ringfuse's mount options (`allow_other`, `auto_unmount`, `ro`, ...: see
//! `ringfuse::mount::ACCEPTED_OPTIONS`) and memfs's own `size=BYTES[K|M|G|T]` (the same as
//! `--capacity`), `transport=auto|classic|native` and `per_cpu`. Run by a user other than
//! root, it mounts through fusermount3. Run as `mount.fuse.memfs` (a symlink or copy of
//! the binary under that name), it is its own mount(8) helper: `mount -t fuse.memfs` and
//! fstab lines (`memfs /mnt/memfs fuse.memfs size=1G,allow_other 0 0`) start it detached
//! and return once the mount is served.
//!
//! Serves until unmounted (`umount MOUNTPOINT`) or interrupted (Ctrl-C); everything is lost
//! then. The filesystem holds at most `--capacity` bytes (default 1 GiB) of file data,
//! symlink targets and extended attributes, plus 256 bytes per inode; beyond that, writes,
//! `fallocate` and creates fail with ENOSPC and `df` shows it full. File data is charged
//! by the 4 KiB pages that hold it, as tmpfs does: holes are free, so a sparse file may be
//! far larger than the capacity (up to 2^63 - 1 bytes, the kernel's own limit; EFBIG past
//! it), and `st_blocks` counts the stored pages.
//!
//! It is mounted with `default_permissions`: the kernel checks mode bits on every
//! operation, as for tmpfs. Reads do not update atime (as `noatime`). `--no-readdirplus`
//! does not ask the kernel for READDIRPLUS: listings then use plain READDIR and LOOKUP.
//! `--transport` picks the kernel transport (`auto`: FUSE-over-io_uring when the kernel
//! offers it, else `/dev/fuse`); `--per-cpu` serves with one pinned loop per CPU, all
//! sharing the one tree.
//!
//! Layout: `tree.rs` holds the state and every operation with no I/O (unit-tested there),
//! `data.rs` the sparse file contents, `fs.rs` the [`ringfuse::Filesystem`] adapter.
#![forbid(unsafe_code)]

mod data;
mod fs;
mod tree;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use ringfuse::abi::flags::InitFlags;
use ringfuse::mount::MountOptions;
use ringfuse::mount::helper::{self, HelperArgs};
use ringfuse::{Config, Session, TransportMode};

use crate::fs::MemFs;
use crate::tree::{Caller, INODE_COST};

const USAGE: &str = "usage: memfs MOUNTPOINT [-o OPTIONS] [--capacity BYTES[K|M|G|T]] \
                     [--no-readdirplus] [--transport auto|classic|native] [--per-cpu]";
const DEFAULT_CAPACITY: u64 = 1 << 30;

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    mountpoint: PathBuf,
    options: Vec<String>,
    capacity: u64,
    readdirplus: bool,
    transport: TransportMode,
    per_cpu: bool,
}

/// `1048576`, `64K`, `512m`, `2G`, `1t` (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()?.to_ascii_lowercase() {
        b'k' => (&s[..s.len() - 1], 10),
        b'm' => (&s[..s.len() - 1], 20),
        b'g' => (&s[..s.len() - 1], 30),
        b't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Reads the arguments after the program name; `Ok(None)` for `--help`.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut mountpoint = None;
    let mut options = Vec::new();
    let mut capacity = DEFAULT_CAPACITY;
    let mut readdirplus = true;
    let mut transport = TransportMode::Auto;
    let mut per_cpu = false;
    let mut args = args.into_iter();
    let text = |a: OsString| {
        a.into_string()
            .map_err(|a| format!("not UTF-8: {}", a.to_string_lossy()))
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(None),
            Some("--no-readdirplus") => readdirplus = false,
            Some("--per-cpu") => per_cpu = true,
            Some("--transport") => {
                let v = text(args.next().ok_or("--transport needs a value")?)?;
                transport = parse_transport(&v)?;
            }
            Some(s) if s.starts_with("--transport=") => {
                transport = parse_transport(&s["--transport=".len()..])?;
            }
            Some("-o") => {
                let opts = text(args.next().ok_or("-o needs a value")?)?;
                options.push(own_options(
                    &opts,
                    &mut capacity,
                    &mut transport,
                    &mut per_cpu,
                )?);
            }
            Some("--capacity") => {
                let v = text(args.next().ok_or("--capacity needs a value")?)?;
                capacity = parse_size(&v).ok_or(format!("--capacity {v}: not a size"))?;
            }
            Some(s) if s.starts_with("-o") => {
                options.push(own_options(
                    &s[2..],
                    &mut capacity,
                    &mut transport,
                    &mut per_cpu,
                )?);
            }
            Some(s) if s.starts_with("--capacity=") => {
                let v = &s["--capacity=".len()..];
                capacity = parse_size(v).ok_or(format!("--capacity {v}: not a size"))?;
            }
            Some(s) if s.starts_with('-') && s.len() > 1 => {
                return Err(format!("unknown option {s}"));
            }
            _ if mountpoint.is_none() => mountpoint = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    let mountpoint = mountpoint.ok_or("missing MOUNTPOINT")?;
    if capacity < 2 * INODE_COST {
        return Err(format!(
            "--capacity {capacity}: too small (at least {} bytes)",
            2 * INODE_COST
        ));
    }
    Ok(Some(Args {
        mountpoint,
        options,
        capacity,
        readdirplus,
        transport,
        per_cpu,
    }))
}

/// Takes memfs's own options (`size=`, `transport=`, `per_cpu`) out of a `-o` string and
/// returns the rest, the mount options.
fn own_options(
    opts: &str,
    capacity: &mut u64,
    transport: &mut TransportMode,
    per_cpu: &mut bool,
) -> Result<String, String> {
    let mut rest = Vec::new();
    for e in ringfuse::mount::split_options(opts) {
        if let Some(v) = e.strip_prefix("size=") {
            *capacity = parse_size(v).ok_or(format!("-o size={v}: not a size"))?;
        } else if let Some(v) = e.strip_prefix("transport=") {
            *transport = parse_transport(v)?;
        } else if e == "per_cpu" {
            *per_cpu = true;
        } else if !e.is_empty() {
            rest.push(e);
        }
    }
    Ok(rest.join(","))
}

fn parse_transport(v: &str) -> Result<TransportMode, String> {
    match v {
        "auto" => Ok(TransportMode::Auto),
        "classic" => Ok(TransportMode::Classic),
        "native" => Ok(TransportMode::Native),
        _ => Err(format!("--transport {v}: expected auto, classic or native")),
    }
}

fn run(args: &Args) -> Result<(), String> {
    let owner = Caller {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    let fs = MemFs::new(args.capacity, owner, args.readdirplus);
    let mut opts = MountOptions::new();
    opts.fsname("memfs")
        .and_then(|o| o.subtype("memfs"))
        .map_err(|e| e.to_string())?;
    opts.default_permissions(true);
    for o in &args.options {
        opts.parse_opts(o).map_err(|e| format!("-o {o}: {e}"))?;
    }
    let config = Config::default().transport(args.transport);
    // A user other than root unmounts with fusermount3 (umount(8) refuses them).
    let umount = if rustix::process::getuid().is_root() {
        "umount"
    } else {
        "fusermount3 -u"
    };
    println!(
        "memfs: mounting on {} ({} bytes, buffer memory {} bytes{}); Ctrl-C or `{umount} {}` \
         to stop",
        args.mountpoint.display(),
        args.capacity,
        config.static_bytes(),
        if args.per_cpu {
            " at most per loop, one loop per CPU"
        } else {
            ""
        },
        args.mountpoint.display()
    );
    let (result, negotiated, stats, transport) = if args.per_cpu {
        match ringfuse::run_per_cpu(args.mountpoint.as_path(), &opts, config, |_cpu| fs.clone()) {
            Ok(report) => (
                Ok(()),
                report.negotiated,
                report.total(),
                report.transport(),
            ),
            Err(e) => return Err(e.to_string()),
        }
    } else {
        let mut session = Session::new(fs, args.mountpoint.as_path(), &opts, config)
            .map_err(|e| e.to_string())?;
        // The transport this session offers the kernel (Auto: native when the kernel's
        // switch is on); the exit summary says which one INIT settled.
        println!("memfs: transport offered: {:?}", session.transport());
        let result = session.run();
        (
            result,
            session.negotiated(),
            session.stats(),
            session.transport(),
        )
    };
    if let Some(n) = negotiated {
        println!(
            "memfs: served {} requests ({} through /dev/fuse, {} through io_uring entries) over \
             the {:?} transport, FUSE 7.{} (kernel 7.{}), max_write {}, readdirplus {}",
            stats.requests(),
            stats.requests_dev,
            stats.requests_uring,
            transport,
            n.minor,
            n.kernel_minor,
            n.max_write,
            if n.has(InitFlags::DO_READDIRPLUS) {
                "on"
            } else {
                "off"
            },
        );
        println!(
            "memfs: {} io_uring_enter calls, {} of them sending replies ahead of the next READ",
            stats.enters, stats.replies_first
        );
    }
    result.map_err(|e| e.to_string())
}

/// As `mount.fuse.NAME SOURCE DIR -o OPTS`: start memfs detached on DIR with OPTS (its
/// own and the mount options; SOURCE becomes the fsname, NAME the subtype) and exit once
/// it serves.
fn helper_main(name: &str) -> ExitCode {
    let args = match HelperArgs::parse(name, std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("mount.fuse.memfs: {e}");
            return ExitCode::from(helper::EXIT_USAGE);
        }
    };
    if args.fake {
        return ExitCode::SUCCESS;
    }
    let result = if args.remount {
        helper::remount(&args)
    } else {
        let server = [
            OsString::from(&args.mountpoint),
            OsString::from("-o"),
            OsString::from(args.server_options()),
        ];
        if args.verbose {
            eprintln!("mount.fuse.memfs: memfs {server:?}");
        }
        helper::spawn_detached("memfs", &server)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mount.fuse.memfs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    if let Some(name) = helper::invoked_as() {
        return helper_main(&name);
    }
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("memfs: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("memfs: {msg}");
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
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn command_line() {
        let a = args(&["/mnt", "-o", "allow_other,ro", "--capacity", "1M"])
            .unwrap()
            .unwrap();
        assert_eq!(a.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(a.options, ["allow_other,ro"]);
        assert_eq!(a.capacity, 1 << 20);
        assert!(a.readdirplus);
        let a = args(&["--no-readdirplus", "/m"]).unwrap().unwrap();
        assert!(!a.readdirplus);
        let a = args(&["-oro", "--capacity=2k", "/m"]).unwrap().unwrap();
        assert_eq!((a.options.len(), a.capacity), (1, 2048));
        assert_eq!(args(&["--help"]), Ok(None));
        assert!(args(&[]).is_err());
        assert!(args(&["/a", "/b"]).is_err());
        assert!(args(&["/a", "--capacity", "1"]).is_err());
        assert!(args(&["/a", "-x"]).is_err());
        let a = args(&["/m", "--transport", "native", "--per-cpu"])
            .unwrap()
            .unwrap();
        assert_eq!((a.transport, a.per_cpu), (TransportMode::Native, true));
        let a = args(&["/m", "--transport=classic"]).unwrap().unwrap();
        assert_eq!((a.transport, a.per_cpu), (TransportMode::Classic, false));
        assert!(args(&["/m", "--transport", "fast"]).is_err());
        let a = args(&[
            "/m",
            "-o",
            r"size=2M,allow_other,fsname=a\,b,transport=classic,per_cpu",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.capacity, 2 << 20);
        assert_eq!(a.options, [r"allow_other,fsname=a\,b"]);
        assert_eq!((a.transport, a.per_cpu), (TransportMode::Classic, true));
        assert!(args(&["/m", "-o", "size=lots"]).is_err());
    }
}
