//! `slowfs`: one read-only file served from a backing store with an artificial latency per
//! read — the filesystem that shows why one thread is enough.
//!
//! ```text
//! slowfs MOUNTPOINT [--backing FILE] [--size BYTES] [--latency-us N] [--slots N]
//!        [--transport auto|classic|native]
//! ```
//!
//! `MOUNTPOINT/data` is `--backing FILE` (read with io_uring straight into the reply
//! buffer), or, without it, `--size` bytes (default 64 MiB) of a computed pattern (byte
//! `i` is `i % 251`). Every READ first waits `--latency-us` (default 1000 µs) on an
//! io_uring timeout, the way a disk or a network peer would make it wait, and then answers.
//! No thread sleeps: one loop keeps up to `--slots` READs waiting at once (default 128), so
//! with 64 readers in parallel it serves about 64 reads per millisecond on one thread.
//!
//! Reads are direct (`FOPEN_DIRECT_IO`: every `read(2)` is a READ) and asynchronous direct
//! I/O is asked for (`FUSE_ASYNC_DIO`), with `max_background` raised to match the slots, so
//! that `O_DIRECT` readers with many reads in flight (`fio --ioengine=libaio --iodepth=64`)
//! really send them all at once. Served by [`ringfuse::Async`]; see the crate docs.
//! Stops on Ctrl-C, SIGTERM or `umount`.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringfuse::abi::flags::{FopenFlags, InitFlags};
use ringfuse::mount::MountOptions;
use ringfuse::{
    Async, AsyncCx, AsyncFilesystem, Attr, Config, DirFill, Entry, Errno, FileType, InitConfig,
    NodeId, Opened, ReadBuf, Session, Timestamp, TransportMode,
};

#[path = "common/pattern.rs"]
mod pattern;
use pattern::fill_pattern;

const USAGE: &str = "usage: slowfs MOUNTPOINT [--backing FILE] [--size BYTES] \
                     [--latency-us N] [--slots N] [--transport auto|classic|native]";
const DATA: NodeId = NodeId(2);
const TTL: Duration = Duration::from_secs(60);

struct SlowFs {
    backing: Option<File>,
    size: u64,
    latency: Duration,
    /// READs waiting right now, and the most at once.
    waiting: Cell<u32>,
    most_waiting: Cell<u32>,
    reads: Cell<u64>,
    background: u16,
}

impl SlowFs {
    fn attr(&self, node: NodeId) -> Option<Attr> {
        let t = Timestamp::new(1_700_000_000, 0);
        match node {
            NodeId::ROOT => {
                let mut a = Attr::new(1, FileType::Directory, 0o555, t);
                a.nlink = 2;
                Some(a)
            }
            DATA => {
                let mut a = Attr::new(2, FileType::RegularFile, 0o444, t);
                a.size = self.size;
                Some(a)
            }
            _ => None,
        }
    }
}

impl AsyncFilesystem for SlowFs {
    fn init(&self, cfg: &mut InitConfig) -> Result<(), Errno> {
        cfg.want = cfg.want.union(InitFlags::ASYNC_DIO);
        cfg.max_background = self.background;
        cfg.congestion_threshold = self.background;
        Ok(())
    }

    async fn lookup(&self, _cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
        if parent != NodeId::ROOT || name != c"data" {
            return Err(Errno::ENOENT);
        }
        Ok(Entry {
            node: DATA,
            generation: 1,
            attr: self.attr(DATA).ok_or(Errno::ENOENT)?,
            entry_ttl: TTL,
            attr_ttl: TTL,
        })
    }

    async fn getattr(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        _fh: Option<u64>,
    ) -> Result<(Attr, Duration), Errno> {
        Ok((self.attr(node).ok_or(Errno::ENOENT)?, TTL))
    }

    async fn open(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        if node != DATA {
            return Err(Errno::EISDIR);
        }
        if flags.writes() {
            return Err(Errno::EROFS);
        }
        Ok(Opened::new(0).flags(FopenFlags::DIRECT_IO))
    }

    async fn opendir(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        _flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        Ok(Opened::new(0))
    }

    async fn read(
        &self,
        cx: &AsyncCx,
        _node: NodeId,
        _fh: u64,
        offset: u64,
        mut buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        self.reads.set(self.reads.get() + 1);
        self.waiting.set(self.waiting.get() + 1);
        self.most_waiting
            .set(self.most_waiting.get().max(self.waiting.get()));
        cx.sleep(self.latency).await;
        self.waiting.set(self.waiting.get() - 1);
        let left = self.size.saturating_sub(offset);
        buf.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        if let Some(file) = &self.backing {
            return cx.read_at(file.as_fd(), buf, offset).await.0;
        }
        let n = buf.len();
        fill_pattern(buf.bytes_mut(), offset);
        Ok(n)
    }

    async fn readdir(
        &self,
        _cx: &AsyncCx,
        _node: NodeId,
        _fh: u64,
        offset: u64,
        out: &mut DirFill<'_>,
    ) -> Result<(), Errno> {
        let all: [(u64, FileType, &[u8]); 3] = [
            (1, FileType::Directory, b"."),
            (1, FileType::Directory, b".."),
            (2, FileType::RegularFile, b"data"),
        ];
        for (k, (ino, kind, name)) in all.iter().enumerate().skip(offset as usize) {
            if out
                .add(*ino, k as u64 + 1, *kind, name)
                .map_err(|_| Errno::EIO)?
                .is_full()
            {
                break;
            }
        }
        Ok(())
    }
}

struct Args {
    mountpoint: PathBuf,
    backing: Option<PathBuf>,
    size: Option<u64>,
    latency_us: u64,
    slots: u16,
    transport: TransportMode,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let mut a = Args {
        mountpoint: PathBuf::new(),
        backing: None,
        size: None,
        latency_us: 1000,
        slots: 128,
        transport: TransportMode::Auto,
    };
    let mut mountpoint = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--backing" => a.backing = Some(PathBuf::from(value("--backing")?)),
            "--size" => {
                a.size = Some(
                    value("--size")?
                        .parse()
                        .map_err(|e| format!("--size: {e}"))?,
                );
            }
            "--latency-us" => {
                a.latency_us = value("--latency-us")?
                    .parse()
                    .map_err(|e| format!("--latency-us: {e}"))?;
            }
            "--slots" => {
                a.slots = value("--slots")?
                    .parse()
                    .map_err(|e| format!("--slots: {e}"))?;
            }
            "--transport" => {
                a.transport = match value("--transport")?.as_str() {
                    "auto" => TransportMode::Auto,
                    "classic" => TransportMode::Classic,
                    "native" => TransportMode::Native,
                    other => return Err(format!("unknown transport {other}")),
                };
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if mountpoint.is_none() => mountpoint = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    a.mountpoint = mountpoint.ok_or("no mount point")?;
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let opts_in = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("slowfs: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let backing = match &opts_in.backing {
        Some(p) => match File::open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("slowfs: cannot open {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let size = match (&backing, opts_in.size) {
        (_, Some(s)) => s,
        (Some(f), None) => f.metadata().map_or(0, |m| m.len()),
        (None, None) => 64 << 20,
    };
    let fs = SlowFs {
        backing,
        size,
        latency: Duration::from_micros(opts_in.latency_us),
        waiting: Cell::new(0),
        most_waiting: Cell::new(0),
        reads: Cell::new(0),
        background: opts_in.slots,
    };
    // Every waiting READ holds a slot (classic) or a ring entry (native: one queue per
    // CPU, so each gets them all).
    let config = Config::default()
        .slots(opts_in.slots)
        .queue_depth(opts_in.slots)
        .transport(opts_in.transport);
    let mut opts = MountOptions::new();
    if let Err(e) = opts.fsname("slowfs").and_then(|o| o.subtype("slowfs")) {
        eprintln!("slowfs: {e}");
        return ExitCode::FAILURE;
    }
    let mut session =
        match Session::new(Async::new(fs), opts_in.mountpoint.as_path(), &opts, config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("slowfs: {e}");
                return ExitCode::FAILURE;
            }
        };
    println!(
        "slowfs: {} bytes, {} µs per read, {} slots, buffer memory {} KiB, transport {:?}",
        size,
        opts_in.latency_us,
        opts_in.slots,
        config.static_bytes_for::<Async<SlowFs>>() / 1024,
        session.transport()
    );
    let result = session.run();
    let fs = session.filesystem().get();
    println!(
        "slowfs: {} reads, at most {} waiting at once; {:?}",
        fs.reads.get(),
        fs.most_waiting.get(),
        session.stats()
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slowfs: {e}");
            ExitCode::FAILURE
        }
    }
}
