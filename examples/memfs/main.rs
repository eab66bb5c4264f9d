//! `memfs`: a complete in-memory POSIX filesystem on ringfuse.
//!
//! ```text
//! memfs MOUNTPOINT [-o OPTIONS] [--capacity BYTES[K|M|G|T]] [--no-readdirplus]
//!       [--transport auto|classic|native] [--per-cpu]
//! ```
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
                let opts = args.next().ok_or("-o needs a value")?;
                options.push(text(opts)?);
            }
            Some("--capacity") => {
                let v = text(args.next().ok_or("--capacity needs a value")?)?;
                capacity = parse_size(&v).ok_or(format!("--capacity {v}: not a size"))?;
            }
            Some(s) if s.starts_with("-o") => options.push(s[2..].to_owned()),
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
    println!(
        "memfs: mounting on {} ({} bytes, buffer memory {} bytes{}); Ctrl-C or `umount {}` \
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

fn main() -> ExitCode {
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
    }
}
