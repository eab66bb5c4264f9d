//! An [`AsyncFilesystem`] on a real mount, served by [`Async`] on the classic transport, the
//! native one, and one loop per CPU (native).
//!
//! The in-test filesystem ([`Backed`]) has three files, all opened `DIRECT_IO` so every
//! `read(2)` is one READ request:
//! - `data`: a real file in the scratch directory, read with [`AsyncCx::read_at`] straight
//!   into the reply buffer and written with [`AsyncCx::write_at`] straight from the WRITE
//!   payload; its size comes from [`AsyncCx::statx`] of the backing file;
//! - `slow`: 4 KiB of a pattern, each READ waiting 2 ms on an io_uring timeout first; the
//!   filesystem counts how many such READs are in flight at once;
//! - `pipe`: each READ reads the empty pipe the test holds the write end of: it never
//!   completes on its own.
//!
//! What a user would see is checked: file contents on both sides, listings, that many
//! requests were in flight on one loop thread, that a reader killed while its READ waits is
//! let go (FUSE sends INTERRUPT; the future is dropped, its backing read cancelled — the
//! pipe still holds what the test writes into it afterwards, so the kernel read nothing —
//! and the request answered), and that a session stopped with a READ in flight ends cleanly,
//! its reader answered with an error.
//!
//! Mounting needs root and `/dev/fuse`; without them the tests fail loudly, unless
//! `RINGFUSE_SKIP_MOUNT_TESTS=1`. One scenario at a time (a global lock).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

#[path = "../common/mod.rs"]
mod common;

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Scratch, can_mount, detach_all, serial, within};
use ringfuse::abi::flags::FopenFlags;
use ringfuse::mount::MountOptions;
use ringfuse::{
    Async, AsyncCx, AsyncFilesystem, Attr, Config, DirFill, Entry, Errno, FileType, NodeId, Opened,
    ReadBuf, Session, Stats, StopHandle, Timestamp, TransportMode, WriteBuf,
};
use rustix::fs::{AtFlags, StatxFlags};

/// Longest a step may take before it counts as hung.
const T: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_secs(1);
const SLOW_LEN: usize = 4096;
const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

const DATA: u64 = 2;
const SLOW: u64 = 3;
const PIPE: u64 = 4;

/// What the filesystem saw, shared with the test (and between per-CPU loops).
#[derive(Default)]
struct Counters {
    slow_in_flight: AtomicU64,
    slow_max_in_flight: AtomicU64,
    slow_reads: AtomicU64,
    pipe_reads: AtomicU64,
    data_reads: AtomicU64,
    data_writes: AtomicU64,
    /// Pipe reads whose future saw its backing read end with `ECANCELED`: a cancelled
    /// request's future runs to its end (and could release what it holds).
    pipe_cancels_seen: AtomicU64,
}

struct Backed {
    data: File,
    pipe: OwnedFd,
    counters: Arc<Counters>,
}

impl Backed {
    fn copy(&self) -> Self {
        Self {
            data: self.data.try_clone().unwrap(),
            pipe: self.pipe.try_clone().unwrap(),
            counters: Arc::clone(&self.counters),
        }
    }
}

fn slow_byte(i: u64) -> u8 {
    (i % 253) as u8
}

fn attr(node: u64, size: u64) -> Attr {
    let t = Timestamp::new(1_700_000_000, 0);
    let mut a = if node == 1 {
        Attr::new(1, FileType::Directory, 0o755, t)
    } else {
        Attr::new(node, FileType::RegularFile, 0o644, t)
    };
    a.size = size;
    a.nlink = if node == 1 { 2 } else { 1 };
    a
}

impl Backed {
    async fn attr_of(&self, cx: &AsyncCx, node: u64) -> Result<Attr, Errno> {
        let size = match node {
            1 => 0,
            DATA => {
                let st = cx
                    .statx(
                        self.data.as_fd(),
                        c"",
                        AtFlags::EMPTY_PATH,
                        StatxFlags::SIZE,
                    )
                    .await?;
                st.stx_size
            }
            SLOW => SLOW_LEN as u64,
            PIPE => 1 << 20,
            _ => return Err(Errno::ENOENT),
        };
        Ok(attr(node, size))
    }
}

impl AsyncFilesystem for Backed {
    async fn lookup(&self, cx: &AsyncCx, parent: NodeId, name: &CStr) -> Result<Entry, Errno> {
        let node = match (parent.0, name.to_bytes()) {
            (1, b"data") => DATA,
            (1, b"slow") => SLOW,
            (1, b"pipe") => PIPE,
            _ => return Err(Errno::ENOENT),
        };
        Ok(Entry {
            node: NodeId(node),
            generation: 1,
            attr: self.attr_of(cx, node).await?,
            entry_ttl: TTL,
            attr_ttl: TTL,
        })
    }

    async fn getattr(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        _fh: Option<u64>,
    ) -> Result<(Attr, Duration), Errno> {
        Ok((self.attr_of(cx, node.0).await?, TTL))
    }

    async fn open(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
    ) -> Result<Opened, Errno> {
        Ok(Opened::new(node.0).flags(FopenFlags::DIRECT_IO))
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
        node: NodeId,
        _fh: u64,
        offset: u64,
        mut buf: ReadBuf<'_>,
    ) -> Result<usize, Errno> {
        match node.0 {
            DATA => {
                self.counters.data_reads.fetch_add(1, Ordering::SeqCst);
                let (r, _buf) = cx.read_at(self.data.as_fd(), buf, offset).await;
                r
            }
            SLOW => {
                let c = &self.counters;
                c.slow_reads.fetch_add(1, Ordering::SeqCst);
                let now = c.slow_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                c.slow_max_in_flight.fetch_max(now, Ordering::SeqCst);
                cx.sleep(Duration::from_millis(2)).await;
                c.slow_in_flight.fetch_sub(1, Ordering::SeqCst);
                let start = offset.min(SLOW_LEN as u64);
                let n = (SLOW_LEN as u64 - start).min(buf.len() as u64) as usize;
                for (k, b) in buf.bytes_mut()[..n].iter_mut().enumerate() {
                    *b = slow_byte(start + k as u64);
                }
                Ok(n)
            }
            PIPE => {
                self.counters.pipe_reads.fetch_add(1, Ordering::SeqCst);
                // Offset -1: a pipe has no position to read at.
                let (r, _buf) = cx.read_at(self.pipe.as_fd(), buf, u64::MAX).await;
                if r == Err(Errno::ECANCELED) && cx.is_cancelled() {
                    self.counters
                        .pipe_cancels_seen
                        .fetch_add(1, Ordering::SeqCst);
                }
                r
            }
            _ => Err(Errno::EBADF),
        }
    }

    async fn write(
        &self,
        cx: &AsyncCx,
        node: NodeId,
        _fh: u64,
        offset: u64,
        data: WriteBuf<'_>,
        _write_flags: u32,
        _flags: u32,
    ) -> Result<u32, Errno> {
        if node.0 != DATA {
            return Err(Errno::EPERM);
        }
        self.counters.data_writes.fetch_add(1, Ordering::SeqCst);
        let n = cx.write_at(self.data.as_fd(), &data, offset).await?;
        Ok(n as u32)
    }

    async fn readdir(
        &self,
        _cx: &AsyncCx,
        node: NodeId,
        _fh: u64,
        offset: u64,
        out: &mut DirFill<'_>,
    ) -> Result<(), Errno> {
        if node.0 != 1 {
            return Err(Errno::ENOTDIR);
        }
        let all: [(u64, FileType, &[u8]); 5] = [
            (1, FileType::Directory, b"."),
            (1, FileType::Directory, b".."),
            (DATA, FileType::RegularFile, b"data"),
            (SLOW, FileType::RegularFile, b"slow"),
            (PIPE, FileType::RegularFile, b"pipe"),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Classic,
    Native,
    PerCpu,
}

const MODES: [Mode; 3] = [Mode::Classic, Mode::Native, Mode::PerCpu];

/// The native transport needs the kernel switch on; CI turns it on, and as root a test can.
fn native_available() -> bool {
    match std::fs::read_to_string(SWITCH) {
        Ok(v) if v.trim() == "Y" => true,
        Ok(_) => std::fs::write(SWITCH, "Y").is_ok(),
        Err(_) => false,
    }
}

fn config(mode: Mode) -> Config {
    Config::default()
        .handle_signals(false)
        .slots(64)
        .queue_depth(32)
        .transport(match mode {
            Mode::Classic => TransportMode::Classic,
            Mode::Native | Mode::PerCpu => TransportMode::Native,
        })
}

/// A mounted `Backed`, served on its own thread; dropping it detaches the mount and stops
/// the session.
struct Mounted {
    mnt: PathBuf,
    counters: Arc<Counters>,
    /// The write end of the pipe `pipe` reads, and a read end for the test to look.
    pipe_w: File,
    pipe_r: File,
    stop: Option<StopHandle>,
    thread: Option<JoinHandle<Result<Stats, String>>>,
}

impl Mounted {
    fn start(scratch: &Scratch, mode: Mode, content: &[u8]) -> Self {
        let path = scratch.dir.join("backing");
        std::fs::write(&path, content).unwrap();
        let data = File::options().read(true).write(true).open(&path).unwrap();
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let counters = Arc::new(Counters::default());
        let fs = Backed {
            data,
            pipe: r.try_clone().unwrap(),
            counters: Arc::clone(&counters),
        };
        let mnt = scratch.mnt.clone();
        let at = mnt.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut opts = MountOptions::new();
            opts.fsname("asyncfs").unwrap();
            let cfg = config(mode);
            if mode == Mode::PerCpu {
                tx.send(Ok(None)).unwrap();
                let report =
                    ringfuse::run_per_cpu(at.as_path(), &opts, cfg, |_| Async::new(fs.copy()))
                        .map_err(|e| e.to_string())?;
                return Ok(report.total());
            }
            match Session::new(Async::new(fs), at.as_path(), &opts, cfg) {
                Ok(mut session) => {
                    tx.send(Ok(Some(session.stop_handle()))).unwrap();
                    session.run().map_err(|e| e.to_string())?;
                    Ok(session.stats())
                }
                Err(e) => {
                    let msg = e.to_string();
                    tx.send(Err(msg.clone())).unwrap();
                    Err(msg)
                }
            }
        });
        let stop = rx.recv().unwrap().expect("mount");
        let m = Self {
            mnt,
            counters,
            pipe_w: File::from(w),
            pipe_r: File::from(r),
            stop,
            thread: Some(thread),
        };
        // Wait until the mount answers (per-CPU mode mounts on the loop's thread).
        let waited = Instant::now();
        while std::fs::metadata(m.mnt.join("slow")).is_err() {
            assert!(waited.elapsed() < T, "the mount never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
        m
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    /// Ends the session (a stop, or an unmount in per-CPU mode) and returns its counters.
    fn finish(mut self) -> Stats {
        if let Some(stop) = &self.stop {
            stop.stop();
        } else {
            let mnt = self.mnt.clone();
            within(T, "unmounting", move || {
                rustix::mount::unmount(&mnt, rustix::mount::UnmountFlags::empty())
            })
            .unwrap();
        }
        let thread = self.thread.take().unwrap();
        within(T, "the session ending", move || thread.join().unwrap()).expect("session")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        detach_all(&self.mnt);
        if let Some(stop) = &self.stop {
            stop.stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn modes() -> Vec<Mode> {
    let native = native_available();
    if !native {
        eprintln!(
            "\n!!!!! FUSE-over-io_uring is off and cannot be turned on: the async tests run on \
             the classic transport only !!!!!\n"
        );
    }
    MODES
        .into_iter()
        .filter(|m| native || *m == Mode::Classic)
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn reads_and_writes_go_between_the_caller_and_the_backing_file() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let content = pattern(300_000, 7);
        let m = Mounted::start(&scratch, mode, &content);
        // Size from statx of the backing file, data from read_at into the reply buffer.
        assert_eq!(
            std::fs::metadata(m.path("data")).unwrap().len(),
            300_000,
            "{mode:?}"
        );
        let got = std::fs::read(m.path("data")).unwrap();
        assert!(got == content, "{mode:?}: data read back differs");
        // A write through the mount lands in the backing file, and reads back.
        let patch = pattern(70_000, 99);
        let f = File::options().write(true).open(m.path("data")).unwrap();
        f.write_all_at(&patch, 12_345).unwrap();
        drop(f);
        let mut want = content.clone();
        want[12_345..12_345 + patch.len()].copy_from_slice(&patch);
        let backing = std::fs::read(scratch.dir.join("backing")).unwrap();
        assert!(backing == want, "{mode:?}: the backing file differs");
        assert!(
            std::fs::read(m.path("data")).unwrap() == want,
            "{mode:?}: read after write differs"
        );
        let mut names: Vec<String> = std::fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["data", "pipe", "slow"], "{mode:?}");
        assert_eq!(
            std::fs::read(m.mnt.join("nope"))
                .unwrap_err()
                .raw_os_error(),
            Some(i32::from(Errno::ENOENT.get())),
        );
        assert!(m.counters.data_reads.load(Ordering::SeqCst) >= 3);
        assert!(m.counters.data_writes.load(Ordering::SeqCst) >= 1);
        let stats = m.finish();
        println!("{mode:?}: {stats:?}");
        assert_eq!(stats.reply_failures, 0, "{mode:?}");
    }
}

#[test]
fn one_loop_keeps_many_waiting_reads_in_flight() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode, b"");
        let readers: Vec<_> = (0..24)
            .map(|_| {
                let path = m.path("slow");
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let got = std::fs::read(&path).unwrap();
                        assert_eq!(got.len(), SLOW_LEN);
                        assert!(
                            got.iter()
                                .enumerate()
                                .all(|(i, &b)| b == slow_byte(i as u64)),
                            "wrong bytes"
                        );
                    }
                })
            })
            .collect();
        within(T * 3, "the readers", move || {
            for r in readers {
                r.join().unwrap();
            }
        });
        let max = m.counters.slow_max_in_flight.load(Ordering::SeqCst);
        let reads = m.counters.slow_reads.load(Ordering::SeqCst);
        println!("{mode:?}: {reads} slow reads, at most {max} in flight at once");
        // 24 readers, each waiting 2 ms per READ on the ring: a loop that served one
        // request at a time would never have two in flight.
        assert!(
            max >= 4,
            "{mode:?}: at most {max} READs were in flight at once"
        );
        assert!(reads >= 240, "{mode:?}: {reads}");
        m.finish();
    }
}

/// Waits until the filesystem has `n` READs of `pipe` in flight.
fn wait_pipe_reads(m: &Mounted, n: u64) {
    let waited = Instant::now();
    while m.counters.pipe_reads.load(Ordering::SeqCst) < n {
        assert!(waited.elapsed() < T, "the READ of pipe never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pipe still holds exactly `want` (nothing read it behind the test's back).
fn assert_pipe_holds(m: &mut Mounted, want: &[u8], mode: Mode) {
    m.pipe_w.write_all(want).unwrap();
    let mut got = vec![0u8; want.len()];
    let mut r = m.pipe_r.try_clone().unwrap();
    within(T, "reading the pipe", move || {
        r.read_exact(&mut got).map(|()| got)
    })
    .map(|got| assert_eq!(got, want, "{mode:?}: the pipe lost bytes"))
    .unwrap();
}

#[test]
fn a_killed_reader_is_let_go_and_its_backing_read_cancelled() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let mut m = Mounted::start(&scratch, mode, b"still here");
        // A reader process blocked in a READ whose backing read (of an empty pipe) never
        // completes on its own.
        let mut child = Command::new("dd")
            .arg(format!("if={}", m.path("pipe").display()))
            .args(["of=/dev/null", "bs=4096", "count=1", "iflag=direct"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_pipe_reads(&m, 1);
        // SIGKILL: the kernel sends INTERRUPT and keeps the process until the READ is
        // answered. It exits only if the future was dropped and the request answered.
        child.kill().unwrap();
        let exit = within(T, "the killed reader", move || child.wait().unwrap());
        assert!(!exit.success(), "{mode:?}: {exit:?}");
        // The backing read was cancelled: bytes written now stay in the pipe.
        assert_pipe_holds(&mut m, b"0123456789", mode);
        assert_eq!(
            m.counters.pipe_cancels_seen.load(Ordering::SeqCst),
            1,
            "{mode:?}: the future did not run to its end after the cancel"
        );
        // The slot is usable again, and the mount works.
        assert_eq!(std::fs::read(m.path("data")).unwrap(), b"still here");
        let stats = m.finish();
        println!("{mode:?}: {stats:?}");
        assert!(stats.interrupts >= 1, "{mode:?}: no INTERRUPT handled");
        assert_eq!(stats.reply_failures, 0, "{mode:?}");
    }
}

#[test]
fn a_stop_with_a_read_in_flight_ends_cleanly() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        if mode == Mode::PerCpu {
            continue; // run_per_cpu has no stop handle; unmounting is tested above
        }
        let scratch = Scratch::new();
        let mut m = Mounted::start(&scratch, mode, b"");
        let path = m.path("pipe");
        let reader = std::thread::spawn(move || {
            let f = File::open(path)?;
            let mut buf = vec![0u8; 4096];
            f.read_at(&mut buf, 0)
        });
        wait_pipe_reads(&m, 1);
        let stop = m.stop.take().unwrap();
        stop.stop();
        let thread = m.thread.take().unwrap();
        let stats = within(T, "the stopped session", move || thread.join().unwrap())
            .expect("the session ends without error");
        let got = within(T, "the reader", move || reader.join().unwrap());
        assert!(got.is_err(), "{mode:?}: the held READ got {got:?}");
        println!("{mode:?}: the held READ got {got:?}; {stats:?}");
        assert_pipe_holds(&mut m, b"abc", mode);
    }
}
