//! What a deferred reply can do wrong, on a real mount (issue 16), on the classic and the
//! native transport with the default [`Config`]:
//! - `now`: the READ handler defers and resumes in the same call — the reader gets the
//!   answer (it used to wait forever: the resume gave `None` and used the token up);
//! - `dropped`: the handler drops its token — the reader gets `EIO`, counted in
//!   [`Stats::lost_deferred`];
//! - `kept`: the handler keeps its token and never resumes it — a stop ends within
//!   [`Config::stop_grace`] and the reader gets `EIO` (the session used to wait forever,
//!   deaf to Ctrl-C);
//! - `wide`: every READ is held until [`WIDE`] of them are held at once, then all are
//!   answered — the default `slots` and `queue_depth` let that many requests be in flight
//!   (8 and 2 per CPU did not, and the readers waited until the test gave up);
//! - a thread that touches the mount between `Session::new` and `run` is let go by a stop
//!   (it used to wait for good, and the stop reached no loop);
//! - `Session::new` answers INIT: what it settled is known before `run`, and a filesystem
//!   that refuses INIT makes `new` fail (it used to surface only from `run`);
//! - `linked`: a READ answered after a linked group ([`Cx::submit_linked`]: a timeout, then
//!   a NOP that may only start after it) completes in order.
//!
//! Files are opened `DIRECT_IO`, so every `read(2)` is one READ request. Mounting needs root
//! and `/dev/fuse`; without them the tests fail loudly, unless `RINGFUSE_SKIP_MOUNT_TESTS=1`.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

#[path = "../common/mod.rs"]
mod common;

use std::ffi::CStr;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Scratch, can_mount, detach_all, serial, within};
use ringfuse::abi::flags::FopenFlags;
use ringfuse::mount::MountOptions;
use ringfuse::reply::kind;
use ringfuse::ring::{IoringTimeoutFlags, Sqe};
use ringfuse::{
    Attr, Config, Cx, Deferred, Done, Entry, Errno, FileType, Filesystem, NodeId, ReplyAttr,
    ReplyData, ReplyEntry, ReplyOpen, Session, Stats, StopHandle, Timestamp, TransportMode,
};

const T: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_secs(1);
const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";
/// READs of `wide` held before all are answered: half the default `max_background`, what an
/// I/O-bound filesystem is expected to keep in flight.
const WIDE: usize = 32;
const GRACE: Duration = Duration::from_secs(1);

const FILES: [(&str, u64); 5] = [
    ("now", 2),
    ("dropped", 3),
    ("kept", 4),
    ("wide", 5),
    ("linked", 6),
];

#[derive(Default)]
struct Seen {
    kept: AtomicU64,
    wide_held_max: AtomicU64,
}

struct Holder {
    seen: Arc<Seen>,
    kept: Vec<Deferred<kind::Data>>,
    wide: Vec<Deferred<kind::Data>>,
    /// `linked` READs: (chain number, token), and the completions seen, in order.
    linked: Vec<(u64, Deferred<kind::Data>)>,
    chains: u64,
    completed: Vec<(u64, i32)>,
}

impl Holder {
    fn new(seen: Arc<Seen>) -> Self {
        Self {
            seen,
            kept: Vec::new(),
            wide: Vec::new(),
            linked: Vec::new(),
            chains: 0,
            completed: Vec::new(),
        }
    }
}

fn attr(node: u64) -> Attr {
    let t = Timestamp::new(1_700_000_000, 0);
    if node == 1 {
        let mut a = Attr::new(1, FileType::Directory, 0o755, t);
        a.nlink = 2;
        a
    } else {
        let mut a = Attr::new(node, FileType::RegularFile, 0o644, t);
        a.size = 4096;
        a
    }
}

impl Filesystem for Holder {
    fn lookup(
        &mut self,
        _cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let found = FILES.iter().find(|(n, _)| n.as_bytes() == name.to_bytes());
        match found {
            Some(&(_, node)) if parent == NodeId::ROOT => reply.entry(&Entry {
                node: NodeId(node),
                generation: 1,
                attr: attr(node),
                entry_ttl: TTL,
                attr_ttl: TTL,
            }),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        reply.attr(&attr(node.0), TTL)
    }

    fn open(
        &mut self,
        _cx: &mut Cx<'_>,
        _node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        reply.opened(0, FopenFlags::DIRECT_IO)
    }

    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        _offset: u64,
        _size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        let (done, d) = reply.defer();
        match node.0 {
            // The reproduction, word for word.
            2 => {
                if let Some(mut r) = cx.resume(d) {
                    let b = r.buffer();
                    b[..3].copy_from_slice(b"ok\n");
                    let _ = r.commit(3);
                }
            }
            3 => drop(d),
            // A 20 ms timeout linked to a NOP: the NOP may complete only after it, and the
            // READ is answered from the NOP's completion with the order seen.
            6 => {
                let n = self.chains;
                self.chains += 1;
                let timeout = Sqe::timeout(
                    Duration::from_millis(20),
                    0,
                    IoringTimeoutFlags::ETIME_SUCCESS,
                );
                match cx.submit_linked(&[(&timeout, 2 * n), (&Sqe::nop(), 2 * n + 1)]) {
                    Ok(()) => self.linked.push((n, d)),
                    Err(e) => {
                        if let Some(r) = cx.resume(d) {
                            let _ = r.error(e);
                        }
                    }
                }
            }
            4 => {
                self.kept.push(d);
                self.seen.kept.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                self.wide.push(d);
                let held = self.wide.len();
                self.seen
                    .wide_held_max
                    .fetch_max(held as u64, Ordering::SeqCst);
                if held >= WIDE {
                    for d in std::mem::take(&mut self.wide) {
                        if let Some(r) = cx.resume(d) {
                            let _ = r.data(b"wide");
                        }
                    }
                }
            }
        }
        done
    }

    fn completion(&mut self, cx: &mut Cx<'_>, tag: u64, result: i32, _flags: u32) {
        self.completed.push((tag, result));
        if tag % 2 == 0 {
            return;
        }
        let n = tag / 2;
        let Some(k) = self.linked.iter().position(|(m, _)| *m == n) else {
            return;
        };
        let (_, d) = self.linked.swap_remove(k);
        // The timeout completed first (-ETIME, reported as success of the link), then the
        // NOP with 0.
        let timeout_first = self
            .completed
            .iter()
            .position(|&(t, r)| t == 2 * n && r == -62)
            .is_some_and(|i| i + 1 < self.completed.len());
        let answer: &[u8] = if timeout_first && result == 0 {
            b"linked"
        } else {
            b"out of order"
        };
        if let Some(r) = cx.resume(d) {
            let _ = r.data(answer);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Classic,
    Native,
}

fn modes() -> Vec<Mode> {
    let native = match std::fs::read_to_string(SWITCH) {
        Ok(v) if v.trim() == "Y" => true,
        Ok(_) => std::fs::write(SWITCH, "Y").is_ok(),
        Err(_) => false,
    };
    if !native {
        eprintln!(
            "\n!!!!! FUSE-over-io_uring is off and cannot be turned on: classic only !!!!!\n"
        );
    }
    [Mode::Classic, Mode::Native]
        .into_iter()
        .filter(|m| native || *m == Mode::Classic)
        .collect()
}

struct Mounted {
    mnt: PathBuf,
    seen: Arc<Seen>,
    stop: Option<StopHandle>,
    thread: Option<JoinHandle<Result<Stats, String>>>,
}

impl Mounted {
    /// Mounts `Holder` with the default configuration (but for signals and the grace).
    fn start(scratch: &Scratch, mode: Mode) -> Self {
        let seen = Arc::new(Seen::default());
        let fs = Holder::new(Arc::clone(&seen));
        let at = scratch.mnt.clone();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let cfg = Config::default()
                .handle_signals(false)
                .stop_grace(GRACE)
                .transport(match mode {
                    Mode::Classic => TransportMode::Classic,
                    Mode::Native => TransportMode::Native,
                });
            match Session::new(fs, at.as_path(), &MountOptions::new(), cfg) {
                Ok(mut session) => {
                    tx.send(Ok(session.stop_handle())).unwrap();
                    session.run().map_err(|e| e.to_string())?;
                    Ok(session.stats())
                }
                Err(e) => {
                    tx.send(Err(e.to_string())).unwrap();
                    Err(e.to_string())
                }
            }
        });
        let stop = rx.recv().unwrap().expect("mount");
        let m = Self {
            mnt: scratch.mnt.clone(),
            seen,
            stop: Some(stop),
            thread: Some(thread),
        };
        let waited = Instant::now();
        while std::fs::metadata(m.mnt.join("now")).is_err() {
            assert!(waited.elapsed() < T, "the mount never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
        m
    }

    /// Stops the session and returns its counters, failing if it does not end in time.
    fn finish(mut self) -> Stats {
        self.stop.take().unwrap().stop();
        let thread = self.thread.take().unwrap();
        let Some(ended) = common::within_opt(T, move || thread.join().unwrap()) else {
            common::abort_fuse_at(&self.mnt);
            panic!("the session did not end within {T:?} of its stop");
        };
        ended.expect("session")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.stop();
        }
        if let Some(t) = self.thread.take() {
            // A session that does not end is this test's failure already; free its callers
            // so that the test process can exit.
            if common::within_opt(T, move || t.join()).is_none() {
                common::abort_fuse_at(&self.mnt);
            }
        }
        detach_all(&self.mnt);
    }
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn resuming_in_the_deferring_call_answers() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode);
        let path = m.mnt.join("now");
        let got = within(T, "reading `now`", move || read(&path)).unwrap();
        assert_eq!(got, b"ok\n", "{mode:?}");
        let stats = m.finish();
        assert_eq!(stats.lost_deferred, 0, "{mode:?}: {stats:?}");
    }
}

#[test]
fn a_dropped_token_answers_eio() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode);
        for _ in 0..3 {
            let path = m.mnt.join("dropped");
            let got = within(T, "reading `dropped`", move || read(&path));
            assert_eq!(
                got.as_ref().map_err(std::io::Error::raw_os_error),
                Err(Some(libc_eio())),
                "{mode:?}"
            );
        }
        // The session still serves.
        let path = m.mnt.join("now");
        assert_eq!(
            within(T, "reading `now`", move || read(&path)).unwrap(),
            b"ok\n"
        );
        let stats = m.finish();
        assert_eq!(stats.lost_deferred, 3, "{mode:?}: {stats:?}");
    }
}

#[test]
fn a_stop_answers_a_forgotten_request_after_the_grace() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode);
        let path = m.mnt.join("kept");
        let reader = std::thread::spawn(move || read(&path));
        let waited = Instant::now();
        while m.seen.kept.load(Ordering::SeqCst) == 0 {
            assert!(
                waited.elapsed() < T,
                "{mode:?}: the READ never reached the filesystem"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let stopped = Instant::now();
        let stats = m.finish();
        let took = stopped.elapsed();
        let got = within(T, "the reader", move || reader.join().unwrap());
        println!("{mode:?}: stop took {took:?}; the reader got {got:?}; {stats:?}");
        assert_eq!(stats.abandoned, 1, "{mode:?}: {stats:?}");
        assert!(got.is_err(), "{mode:?}: the forgotten READ got {got:?}");
        if mode == Mode::Classic {
            // Answered by the loop itself; a native entry is answered by the connection's
            // end, with the error the kernel chooses for that.
            assert_eq!(got.unwrap_err().raw_os_error(), Some(libc_eio()));
        }
    }
}

#[test]
fn the_defaults_keep_many_requests_in_flight() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode);
        let readers: Vec<_> = (0..WIDE)
            .map(|_| {
                let path = m.mnt.join("wide");
                std::thread::spawn(move || read(&path))
            })
            .collect();
        for r in readers {
            let got = within(T, "a reader of `wide`", move || r.join().unwrap());
            let held = m.seen.wide_held_max.load(Ordering::SeqCst);
            assert_eq!(
                got.as_deref().ok(),
                Some(&b"wide"[..]),
                "{mode:?}: {got:?}; at most {held} READs were held at once (want {WIDE})"
            );
        }
        let stats = m.finish();
        assert_eq!(
            stats.lost_deferred + stats.abandoned,
            0,
            "{mode:?}: {stats:?}"
        );
    }
}

fn libc_eio() -> i32 {
    i32::from(Errno::EIO.get())
}

#[test]
fn a_stop_lets_go_of_a_touch_before_run() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    let scratch = Scratch::new();
    let mnt = scratch.mnt.clone();
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let fs = Holder::new(Arc::default());
        let cfg = Config::default().handle_signals(false);
        let mut session = Session::new(fs, mnt.as_path(), &MountOptions::new(), cfg).unwrap();
        tx.send(session.stop_handle()).unwrap();
        // The mistake: this thread is the one that would serve the mount.
        let touched = std::fs::read_dir(&mnt).map(|_| ());
        let ran = session.run().map_err(|e| e.to_string());
        (touched, ran)
    });
    let stop = rx.recv().unwrap();
    // Let the touch reach the kernel and wait there.
    std::thread::sleep(Duration::from_millis(300));
    stop.stop();
    let Some(Ok((touched, ran))) = common::within_opt(T, move || server.join()) else {
        common::abort_fuse_at(&scratch.mnt);
        panic!("the thread that touched its own mount before run() was not let go by a stop");
    };
    assert_eq!(
        touched.map_err(|e| e.raw_os_error()),
        Err(Some(i32::from(Errno::ENOTCONN.get()))),
        "the touch fails with ENOTCONN"
    );
    assert_eq!(ran, Ok(()), "run returns at once and unmounts");
    assert!(
        common::mounts_under(&scratch.mnt).is_empty(),
        "left mounted: {:?}",
        common::mounts_under(&scratch.mnt)
    );
}

#[test]
fn a_linked_group_runs_in_order() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let m = Mounted::start(&scratch, mode);
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let path = m.mnt.join("linked");
                std::thread::spawn(move || read(&path))
            })
            .collect();
        for r in readers {
            let got = within(T, "a reader of `linked`", move || r.join().unwrap());
            assert_eq!(
                got.as_deref().ok(),
                Some(&b"linked"[..]),
                "{mode:?}: {got:?}"
            );
        }
        let stats = m.finish();
        assert_eq!(stats.fs_ops_in_flight, 0, "{mode:?}: {stats:?}");
    }
}

/// Refuses INIT with `EPERM`.
struct Refuses;

impl Filesystem for Refuses {
    fn init(&mut self, _cfg: &mut ringfuse::InitConfig) -> Result<(), Errno> {
        Err(Errno::EPERM)
    }
}

#[test]
fn new_answers_init() {
    let _s = serial();
    if !can_mount() {
        return;
    }
    for mode in modes() {
        let scratch = Scratch::new();
        let cfg = Config::default()
            .handle_signals(false)
            .transport(match mode {
                Mode::Classic => TransportMode::Classic,
                Mode::Native => TransportMode::Native,
            });
        let session = Session::new(
            Holder::new(Arc::default()),
            scratch.mnt.as_path(),
            &MountOptions::new(),
            cfg,
        )
        .unwrap();
        let n = session.negotiated().expect("INIT settled by new");
        assert_eq!(n.minor, 45, "{mode:?}");
        let want = match mode {
            Mode::Classic => ringfuse::Transport::Classic,
            Mode::Native => ringfuse::Transport::Native,
        };
        assert_eq!(session.transport(), want, "{mode:?}");
        drop(session);
        assert!(
            common::mounts_under(&scratch.mnt).is_empty(),
            "{mode:?}: left mounted"
        );

        let refused = Session::new(Refuses, scratch.mnt.as_path(), &MountOptions::new(), cfg);
        match refused {
            Err(ringfuse::Error::Init(e)) => assert_eq!(e, Errno::EPERM, "{mode:?}"),
            Err(e) => panic!("{mode:?}: {e:#?}"),
            Ok(_) => panic!("{mode:?}: a refused INIT made no error in Session::new"),
        }
        assert!(
            common::mounts_under(&scratch.mnt).is_empty(),
            "{mode:?}: left mounted"
        );
    }
}
