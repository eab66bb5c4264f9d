//! Notifications on a real mount (fuse-protocol.md §4), on both transports.
//!
//! An in-test filesystem ([`TestFs`]) is served by a [`Session`] on its own thread. It hands
//! the kernel 60 s entry and attribute TTLs and opens files with `KEEP_CACHE` (directories
//! with `KEEP_CACHE | CACHE_DIR`), so the kernel answers from its caches unless told
//! otherwise. Its state ([`State`]) is shared with the test through an `Arc<Mutex<_>>`:
//!
//! - the test changes files "behind the kernel's back" by editing that state directly;
//! - the test makes the filesystem send notifications with commands: a closure stored under
//!   a fresh name `cmd-N`, run on the loop thread with the [`Cx`] of the LOOKUP of that name
//!   (in the directory the test chooses), which is then answered `ENOENT`; or, for `mk-N`,
//!   run inside the CREATE of that name; or, for `read-<node>`, inside the next READ of it;
//! - the filesystem counts the requests that reach it (LOOKUP per name, GETATTR, READ,
//!   READDIR, POLL per node, FORGET) and keeps what RETRIEVE brought back.
//!
//! Every scenario first shows the stale state a user sees *without* the notification (the
//! kernel served from its cache and no request reached the filesystem), then the fresh state
//! *with* it. Notifications are written asynchronously (an io_uring WRITE on an io-wq
//! worker), so the test cannot know exactly when the kernel has applied one: fresh state is
//! awaited with [`eventually`] (a bounded wait whose expiry is a failure, never a timing
//! measurement). Each scenario body runs on its own thread under [`BODY_TIMEOUT`]: a hang is
//! a failure, after which the connection is aborted so that nothing stays stuck.
//!
//! Each scenario runs twice: `classic::*` with [`TransportMode::Classic`], and `uring::*`
//! with [`TransportMode::Auto`] after turning `/sys/module/fuse/parameters/enable_uring` on
//! (its old value is restored afterwards); there the session must really use the native
//! transport. At the end of every session, the count of notifications the session wrote
//! must equal the ones the filesystem's `notify_*` calls reported as sent, and the kernel
//! must have refused none.
//!
//! Mounting needs root and `/dev/fuse`; without them the tests fail loudly, unless
//! `RINGFUSE_SKIP_MOUNT_TESTS=1`. Scenarios run one at a time (a global lock).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, reason = "tests may unwrap (STYLE.md rule 31)")]

use core::ffi::CStr;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringfuse::abi::flags::{FopenFlags, InitFlags, PollFlags};
use ringfuse::abi::request::Forgets;
use ringfuse::mount::MountOptions;
use ringfuse::{
    Attr, Config, Cx, Done, Entry, Errno, FileType, Filesystem, InitConfig, NodeId, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDir, ReplyEntry, ReplyOpen, ReplyPoll, Session, Stats, StopHandle,
    Timestamp, Transport, TransportMode,
};
use rustix::mount::{MountFlags, UnmountFlags};

/// Entry and attribute TTL: long enough that nothing expires during a test.
const TTL: Duration = Duration::from_secs(60);
/// How files are opened: keep the page cache across opens.
const FILE_OPEN: FopenFlags = FopenFlags::KEEP_CACHE;
/// How directories are opened: cache listings, and keep them across opens.
const DIR_OPEN: FopenFlags = FopenFlags::KEEP_CACHE.union(FopenFlags::CACHE_DIR);
/// Longest a scenario body may take before it counts as hung.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest [`eventually`] waits for a notification to take effect.
const EVENTUALLY: Duration = Duration::from_secs(10);
/// How long a stopped (or unmounted) session may take to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a blocked `poll(2)` is watched to show it stays blocked (a wait that can only
/// fail if the call returns, never because something was slow).
const QUIET: Duration = Duration::from_millis(300);
/// `POLLIN`.
const POLLIN: u32 = 0x1;
/// The kernel switch of FUSE-over-io_uring.
const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

// ---------------------------------------------------------------------------------------------
// The filesystem's state, shared with the test

/// What the filesystem sent from one command: each `notify_*` call's result.
type Sent = Vec<Result<(), Errno>>;
/// A command run on the loop thread, inside a request's handler.
type Command = Box<dyn FnOnce(&mut State, &mut Cx<'_>) -> Sent + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

struct Node {
    parent: u64,
    name: String,
    kind: Kind,
    perm: u32,
    data: Vec<u8>,
    /// Children of a directory, in listing order.
    children: Vec<u64>,
    /// The node has its name (false once removed behind the kernel's back).
    linked: bool,
    /// A polled file has data to read.
    ready: bool,
}

/// What came back through `retrieve_reply`.
#[derive(Debug)]
struct Retrieved {
    node: u64,
    notify_unique: u64,
    offset: u64,
    data: Vec<u8>,
}

/// Requests that reached the filesystem.
#[derive(Default)]
struct Counts {
    /// LOOKUPs per (parent, name).
    lookups: HashMap<(u64, String), u64>,
    /// Entries handed out per node (each adds one to the kernel's lookup count).
    entries: HashMap<u64, u64>,
    getattrs: HashMap<u64, u64>,
    reads: HashMap<u64, u64>,
    readdirs: HashMap<u64, u64>,
    polls: HashMap<u64, u64>,
    /// Lookups given back by FORGET / BATCH_FORGET, per node.
    forgets: HashMap<u64, u64>,
}

struct State {
    nodes: BTreeMap<u64, Node>,
    next_id: u64,
    time: Timestamp,
    /// Commands waiting for their LOOKUP (`cmd-N`) or CREATE (`mk-N`), or for the next
    /// READ of a node (`read-<node id>`).
    commands: HashMap<String, Command>,
    /// What commands sent, by name, until the test takes it.
    results: HashMap<String, Sent>,
    /// Notifications the `notify_*` calls reported as sent.
    sent_ok: u64,
    counts: Counts,
    /// The `kh` of the last POLL that asked for a notification.
    poll_kh: Option<u64>,
    retrieved: Vec<Retrieved>,
    /// What the kernel offered at INIT.
    init: Option<InitConfig>,
}

const ROOT: u64 = 1;

impl State {
    fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node {
                parent: ROOT,
                name: String::new(),
                kind: Kind::Dir,
                perm: 0o755,
                data: Vec::new(),
                children: Vec::new(),
                linked: true,
                ready: false,
            },
        );
        Self {
            nodes,
            next_id: 2,
            time: Timestamp::new(1_700_000_000, 0),
            commands: HashMap::new(),
            results: HashMap::new(),
            sent_ok: 0,
            counts: Counts::default(),
            poll_kh: None,
            retrieved: Vec::new(),
            init: None,
        }
    }

    fn add(&mut self, parent: u64, name: &str, kind: Kind, data: &[u8]) -> u64 {
        assert!(self.child(parent, name).is_none(), "{name} exists");
        let id = self.next_id;
        self.next_id += 1;
        let perm = if kind == Kind::Dir { 0o755 } else { 0o644 };
        self.nodes.insert(
            id,
            Node {
                parent,
                name: name.to_owned(),
                kind,
                perm,
                data: data.to_vec(),
                children: Vec::new(),
                linked: true,
                ready: false,
            },
        );
        self.node(parent).children.push(id);
        id
    }

    fn file(&mut self, parent: u64, name: &str, data: &[u8]) -> u64 {
        self.add(parent, name, Kind::File, data)
    }

    fn dir(&mut self, parent: u64, name: &str) -> u64 {
        self.add(parent, name, Kind::Dir, &[])
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        let p = self.nodes.get(&parent)?;
        p.children
            .iter()
            .copied()
            .find(|c| self.nodes.get(c).is_some_and(|n| n.name == name))
    }

    /// The node at `path` (relative to the root, `/`-separated; "" is the root).
    fn resolve(&self, path: &str) -> u64 {
        path.split('/')
            .filter(|c| !c.is_empty())
            .fold(ROOT, |at, name| {
                self.child(at, name)
                    .unwrap_or_else(|| panic!("{path}: no {name}"))
            })
    }

    /// Removes `parent/name` behind the kernel's back (the node lives on until FORGET).
    fn unlink(&mut self, parent: u64, name: &str) -> u64 {
        let id = self.child(parent, name).unwrap();
        self.node(parent).children.retain(|&c| c != id);
        self.node(id).linked = false;
        id
    }

    fn attr(&self, id: u64) -> Option<Attr> {
        let n = self.nodes.get(&id)?;
        let kind = match n.kind {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
        };
        let mut attr = Attr::new(id, kind, n.perm, self.time);
        attr.size = n.data.len() as u64;
        attr.blocks = attr.size.div_ceil(512);
        attr.nlink = match (n.kind, n.linked) {
            (Kind::Dir, _) => 2,
            (Kind::File, true) => 1,
            (Kind::File, false) => 0,
        };
        Some(attr)
    }

    fn entry(&mut self, id: u64) -> Entry {
        *self.counts.entries.entry(id).or_default() += 1;
        Entry {
            node: NodeId(id),
            generation: 1,
            attr: self.attr(id).unwrap(),
            entry_ttl: TTL,
            attr_ttl: TTL,
        }
    }

    /// Runs the command stored under `name`, if any, and keeps what it sent.
    fn run_command(&mut self, name: &str, cx: &mut Cx<'_>) {
        if let Some(command) = self.commands.remove(name) {
            let sent = command(self, cx);
            self.sent_ok += sent.iter().filter(|r| r.is_ok()).count() as u64;
            self.results.insert(name.to_owned(), sent);
        }
    }
}

fn bump<K: Eq + core::hash::Hash>(map: &mut HashMap<K, u64>, key: K, by: u64) {
    *map.entry(key).or_default() += by;
}

// ---------------------------------------------------------------------------------------------
// The filesystem

struct TestFs {
    state: Arc<Mutex<State>>,
}

impl TestFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Filesystem for TestFs {
    fn init(&mut self, cfg: &mut InitConfig) -> Result<(), Errno> {
        self.lock().init = Some(*cfg);
        Ok(())
    }

    fn lookup(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        reply: ReplyEntry<'_>,
    ) -> Done {
        let mut st = self.lock();
        let name = name.to_string_lossy().into_owned();
        bump(&mut st.counts.lookups, (parent.0, name.clone()), 1);
        if name.starts_with("cmd-") {
            // Inside the handler of a LOOKUP in `parent`: the kernel holds the directory's
            // lock until this request is answered.
            st.run_command(&name, cx);
            return reply.error(Errno::ENOENT);
        }
        match st.child(parent.0, &name) {
            Some(id) => {
                let entry = st.entry(id);
                reply.entry(&entry)
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn forget(&mut self, _cx: &mut Cx<'_>, node: NodeId, nlookup: u64) {
        bump(&mut self.lock().counts.forgets, node.0, nlookup);
    }

    fn batch_forget(&mut self, cx: &mut Cx<'_>, forgets: Forgets<'_>) {
        for f in forgets {
            self.forget(cx, NodeId(f.nodeid), f.nlookup);
        }
    }

    fn getattr(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: Option<u64>,
        reply: ReplyAttr<'_>,
    ) -> Done {
        let mut st = self.lock();
        bump(&mut st.counts.getattrs, node.0, 1);
        match st.attr(node.0) {
            Some(attr) => reply.attr(&attr, TTL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        match self.lock().nodes.get(&node.0).map(|n| n.kind) {
            Some(Kind::File) => reply.opened(node.0, FILE_OPEN),
            Some(Kind::Dir) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        size: u32,
        reply: ReplyData<'_>,
    ) -> Done {
        let mut st = self.lock();
        bump(&mut st.counts.reads, node.0, 1);
        let Some(n) = st.nodes.get(&node.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = usize::try_from(offset).unwrap().min(n.data.len());
        let end = start.saturating_add(size as usize).min(n.data.len());
        let data = n.data[start..end].to_vec();
        // Inside the handler of a READ: the kernel holds the locks of the pages being read
        // until this request is answered. The answer is the data as it was before.
        st.run_command(&format!("read-{}", node.0), cx);
        reply.data(&data)
    }

    fn opendir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _flags: ringfuse::OpenFlags,
        reply: ReplyOpen<'_>,
    ) -> Done {
        match self.lock().nodes.get(&node.0).map(|n| n.kind) {
            Some(Kind::Dir) => reply.opened(node.0, DIR_OPEN),
            Some(Kind::File) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        offset: u64,
        reply: ReplyDir<'_>,
    ) -> Done {
        let mut st = self.lock();
        bump(&mut st.counts.readdirs, node.0, 1);
        let Some(dir) = st.nodes.get(&node.0) else {
            return reply.error(Errno::ENOENT);
        };
        // Cookies: "." is 1, ".." is 2, the k-th child is k + 3.
        let mut entries = vec![
            (node.0, FileType::Directory, ".".to_owned()),
            (dir.parent, FileType::Directory, "..".to_owned()),
        ];
        for &c in &dir.children {
            let n = &st.nodes[&c];
            let kind = match n.kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            entries.push((c, kind, n.name.clone()));
        }
        reply.dir(|fill| {
            for (k, (ino, kind, name)) in entries.iter().enumerate() {
                let cookie = k as u64 + 1;
                if cookie > offset
                    && fill
                        .add(*ino, cookie, *kind, name.as_bytes())
                        .unwrap()
                        .is_full()
                {
                    return;
                }
            }
        })
    }

    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        parent: NodeId,
        name: &CStr,
        _mode: u32,
        _umask: u32,
        _flags: ringfuse::OpenFlags,
        reply: ReplyCreate<'_>,
    ) -> Done {
        let mut st = self.lock();
        let name = name.to_string_lossy().into_owned();
        if st.child(parent.0, &name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        // Inside the handler of a CREATE in `parent`: the kernel holds the directory's lock
        // exclusively until this request is answered.
        st.run_command(&name, cx);
        let id = st.file(parent.0, &name, &[]);
        let entry = st.entry(id);
        reply.created(&entry, id, FILE_OPEN)
    }

    fn poll(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        _fh: u64,
        kh: u64,
        flags: u32,
        events: u32,
        reply: ReplyPoll<'_>,
    ) -> Done {
        let mut st = self.lock();
        bump(&mut st.counts.polls, node.0, 1);
        if PollFlags(flags).contains(PollFlags::SCHEDULE_NOTIFY) {
            st.poll_kh = Some(kh);
        }
        let ready = st.nodes.get(&node.0).is_some_and(|n| n.ready);
        reply.revents(if ready { events & POLLIN } else { 0 })
    }

    fn retrieve_reply(
        &mut self,
        _cx: &mut Cx<'_>,
        node: NodeId,
        notify_unique: u64,
        offset: u64,
        data: &[u8],
    ) {
        self.lock().retrieved.push(Retrieved {
            node: node.0,
            notify_unique,
            offset,
            data: data.to_vec(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Harness: skip rule, kernel switch, scratch directory, running session

static SERIAL: Mutex<()> = Mutex::new(());

fn skipping_allowed() -> bool {
    std::env::var_os("RINGFUSE_SKIP_MOUNT_TESTS").as_deref() == Some(OsStr::new("1"))
}

/// Whether the test can mount here. If it cannot, says why loudly and fails, unless
/// `RINGFUSE_SKIP_MOUNT_TESTS=1` (then the test is skipped: returns false).
fn can_mount() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "not running as root (mount(2) of a FUSE filesystem needs CAP_SYS_ADMIN)"
    } else if !Path::new("/dev/fuse").exists() {
        "/dev/fuse does not exist (modprobe fuse)"
    } else {
        return true;
    };
    eprintln!("\n!!!!! ringfuse notify test NOT RUN: {why} !!!!!\n");
    if skipping_allowed() {
        eprintln!("(skipped because RINGFUSE_SKIP_MOUNT_TESTS=1)");
        return false;
    }
    panic!("cannot run the notify tests: {why}; run as root, or set RINGFUSE_SKIP_MOUNT_TESTS=1");
}

/// `enable_uring` set to Y for the life of the guard, then restored.
struct Switch {
    old: String,
}

impl Switch {
    /// `None` (after saying so loudly, and failing unless skipping is allowed) on a kernel
    /// without FUSE-over-io_uring.
    fn on() -> Option<Self> {
        let Ok(old) = fs::read_to_string(SWITCH) else {
            eprintln!("\n!!!!! {SWITCH} missing: this kernel has no FUSE-over-io_uring !!!!!\n");
            assert!(
                skipping_allowed(),
                "no FUSE-over-io_uring on this kernel (needs Linux 6.14+ with \
                 CONFIG_FUSE_IO_URING); set RINGFUSE_SKIP_MOUNT_TESTS=1 to skip"
            );
            return None;
        };
        fs::write(SWITCH, "Y").unwrap();
        Some(Self {
            old: old.trim().to_owned(),
        })
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = fs::write(SWITCH, &self.old);
    }
}

/// A fresh temporary directory; dropping it lazily unmounts whatever is still mounted
/// there, then removes it.
struct Scratch {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ringfuse-notify-")
            .tempdir()
            .expect("create a temporary directory");
        let path = fs::canonicalize(dir.path()).expect("canonicalize the temporary dir");
        Self { path, _dir: dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for _ in 0..16 {
            if rustix::mount::unmount(&self.path, UnmountFlags::DETACH).is_err() {
                break;
            }
        }
    }
}

/// Aborts FUSE connection `conn` through fusectl (mounting it for the moment if it is not
/// mounted): every request waiting on it fails, so stuck callers and a stuck loop return.
fn abort_connection(conn: u32) {
    let ctl = Path::new("/sys/fs/fuse/connections");
    let abort = ctl.join(conn.to_string()).join("abort");
    let mounted_here = !abort.exists()
        && rustix::mount::mount("fusectl", ctl, "fusectl", MountFlags::empty(), None).is_ok();
    match fs::write(&abort, "1") {
        Ok(()) => eprintln!("!!!!! aborted FUSE connection {conn}"),
        Err(e) => eprintln!("!!!!! could not abort FUSE connection {conn}: {e}"),
    }
    if mounted_here {
        let _ = rustix::mount::unmount(ctl, UnmountFlags::DETACH);
    }
}

/// What the loop thread hands back: what `run` returned, the transport it used, its stats.
type LoopResult = (Result<(), ringfuse::Error>, Transport, Stats);

/// The session serving on its own thread. Dropping it stops the session and joins the
/// thread; if the stop does not end it, the connection is aborted and the mount lazily
/// unmounted.
struct Running {
    mountpoint: PathBuf,
    connection: Option<u32>,
    stop: StopHandle,
    thread: Option<JoinHandle<LoopResult>>,
}

fn join_within<T>(thread: &JoinHandle<T>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

impl Running {
    fn start(mountpoint: &Path, fs: TestFs, config: Config) -> Self {
        let mut options = MountOptions::new();
        options
            .fsname("rf-notify")
            .unwrap()
            .subtype("rf-notify")
            .unwrap();
        let mut session = Session::new(fs, mountpoint, &options, config).expect("mount");
        let stop = session.stop_handle();
        let connection = session.connection();
        let thread = std::thread::Builder::new()
            .name("ringfuse-loop".into())
            .spawn(move || {
                let result = session.run();
                (result, session.transport(), session.stats())
            })
            .expect("spawn the loop thread");
        Self {
            mountpoint: mountpoint.to_owned(),
            connection,
            stop,
            thread: Some(thread),
        }
    }

    /// Aborts the connection (after a hang).
    fn abort(&self) {
        if let Some(conn) = self.connection {
            abort_connection(conn);
        }
    }

    /// Stops the session and joins its thread: what it returned, or why the stop failed.
    fn finish(&mut self) -> Result<LoopResult, String> {
        let thread = self.thread.take().ok_or("finished twice")?;
        self.stop.stop();
        if join_within(&thread, STOP_TIMEOUT) {
            return thread
                .join()
                .map_err(|_| "the loop thread panicked".to_owned());
        }
        eprintln!("!!!!! the session did not stop within {STOP_TIMEOUT:?}; aborting it");
        self.abort();
        let _ = rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH);
        if join_within(&thread, STOP_TIMEOUT) {
            let _ = thread.join();
            return Err(format!(
                "the session did not stop within {STOP_TIMEOUT:?} of StopHandle::stop \
                 (it ended only when its connection was aborted)"
            ));
        }
        Err("the session ended neither on stop nor on abort".to_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a test body sees

/// The mount and the filesystem's state, for a test body.
#[derive(Clone)]
struct Fx {
    mnt: PathBuf,
    state: Arc<Mutex<State>>,
    seq: Arc<AtomicU64>,
}

impl Fx {
    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Runs `f` on the filesystem's state (never touch the mount inside: the loop thread
    /// needs this lock to answer).
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn id(&self, rel: &str) -> u64 {
        self.with(|st| st.resolve(rel))
    }

    fn init(&self) -> InitConfig {
        self.with(|st| st.init).expect("INIT was answered")
    }

    fn count(&self, f: impl FnOnce(&Counts) -> Option<u64>) -> u64 {
        self.with(|st| f(&st.counts).unwrap_or(0))
    }

    fn lookups(&self, parent: u64, name: &str) -> u64 {
        self.count(|c| c.lookups.get(&(parent, name.to_owned())).copied())
    }

    fn getattrs(&self, id: u64) -> u64 {
        self.count(|c| c.getattrs.get(&id).copied())
    }

    fn reads(&self, id: u64) -> u64 {
        self.count(|c| c.reads.get(&id).copied())
    }

    fn readdirs(&self, id: u64) -> u64 {
        self.count(|c| c.readdirs.get(&id).copied())
    }

    fn forgets(&self, id: u64) -> u64 {
        self.count(|c| c.forgets.get(&id).copied())
    }

    fn entries(&self, id: u64) -> u64 {
        self.count(|c| c.entries.get(&id).copied())
    }

    fn polls(&self, id: u64) -> u64 {
        self.count(|c| c.polls.get(&id).copied())
    }

    /// Has the filesystem run `command` on the loop thread, inside the LOOKUP of a fresh
    /// name in directory `dir` (answered ENOENT); returns what it sent.
    fn command(
        &self,
        dir: &str,
        command: impl FnOnce(&mut State, &mut Cx<'_>) -> Sent + Send + 'static,
    ) -> Sent {
        let name = format!("cmd-{}", self.seq.fetch_add(1, Ordering::Relaxed));
        self.with(|st| st.commands.insert(name.clone(), Box::new(command)));
        let path = self.path(dir).join(&name);
        let err = fs::metadata(&path).expect_err("a command answers ENOENT");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{}: {err}", path.display());
        self.with(|st| st.results.remove(&name)).unwrap_or_else(|| {
            panic!("command {name} did not run: its LOOKUP never reached the filesystem")
        })
    }

    /// A command that sends one notification, which must be accepted.
    fn notify(
        &self,
        dir: &str,
        notify: impl FnOnce(&mut Cx<'_>) -> Result<(), Errno> + Send + 'static,
    ) {
        let sent = self.command(dir, move |_, cx| vec![notify(cx)]);
        assert_eq!(sent, vec![Ok(())], "the notification was queued");
    }

    /// Stores `command` to run inside the CREATE of `dir/mk-N`; returns the path to create
    /// and the name to find the results under.
    fn on_create(
        &self,
        dir: &str,
        command: impl FnOnce(&mut State, &mut Cx<'_>) -> Sent + Send + 'static,
    ) -> (PathBuf, String) {
        let name = format!("mk-{}", self.seq.fetch_add(1, Ordering::Relaxed));
        self.with(|st| st.commands.insert(name.clone(), Box::new(command)));
        (self.path(dir).join(&name), name)
    }
}

/// Whether `path` exists; any error but ENOENT fails the test.
fn exists(path: &Path) -> bool {
    match fs::metadata(path) {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => panic!("stat {}: {e}", path.display()),
    }
}

/// The names in directory `path`, sorted.
fn list(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Waits until `check` holds, at most [`EVENTUALLY`]: notifications are applied by the
/// kernel after the request that sent them was answered, at a moment the test cannot see.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "never saw {what} (waited {EVENTUALLY:?})"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on its own thread; a result later than [`EVENTUALLY`] is a hang and fails.
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("notify-within".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .unwrap();
    match rx.recv_timeout(EVENTUALLY) {
        Ok(r) => {
            thread.join().unwrap();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(thread.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: hung (no result in {EVENTUALLY:?})")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running a scenario

/// Mounts a fresh [`TestFs`] built by `setup`, serves it with `mode` and `config`, runs
/// `body` on its own thread under [`BODY_TIMEOUT`], stops the session and checks how it
/// ended.
fn scenario(
    mode: TransportMode,
    config: Config,
    setup: impl FnOnce(&mut State),
    body: impl FnOnce(&Fx) + Send + 'static,
) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if !can_mount() {
        return;
    }
    let _switch = match mode {
        TransportMode::Classic => None,
        _ => match Switch::on() {
            Some(s) => Some(s),
            None => return,
        },
    };
    let scratch = Scratch::new();
    let mut initial = State::new();
    setup(&mut initial);
    let state = Arc::new(Mutex::new(initial));
    let fs = TestFs {
        state: Arc::clone(&state),
    };
    let mut running = Running::start(
        &scratch.path,
        fs,
        config.transport(mode).handle_signals(false),
    );
    let fx = Fx {
        mnt: scratch.path.clone(),
        state: Arc::clone(&state),
        seq: Arc::new(AtomicU64::new(0)),
    };

    let (tx, rx) = mpsc::channel();
    let body_thread = std::thread::Builder::new()
        .name("notify-body".into())
        .spawn(move || {
            // Blocks until the loop has answered INIT; ino 1 shows it is our filesystem.
            assert_eq!(
                fs::metadata(&fx.mnt).unwrap().ino(),
                1,
                "the mount is served"
            );
            body(&fx);
            let _ = tx.send(());
        })
        .expect("spawn the test body");
    match rx.recv_timeout(BODY_TIMEOUT) {
        Ok(()) => body_thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let payload = body_thread.join().unwrap_err();
            drop(running);
            drop(scratch);
            std::panic::resume_unwind(payload);
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            eprintln!("!!!!! the test body hung for {BODY_TIMEOUT:?}");
            running.abort();
            drop(running);
            drop(scratch);
            panic!("the test body hung (no end within {BODY_TIMEOUT:?}); connection aborted");
        }
    }

    let (result, transport, loop_stats) = running.finish().unwrap();
    drop(running);
    drop(scratch);
    result.expect("the session ended cleanly");
    let st = state.lock().unwrap_or_else(PoisonError::into_inner);
    let offered = st.init.expect("INIT was answered").offered;
    if mode == TransportMode::Classic {
        assert_eq!(transport, Transport::Classic);
    } else {
        assert!(
            offered.contains(InitFlags::OVER_IO_URING),
            "the kernel did not offer FUSE-over-io_uring with {SWITCH} = Y \
             (did another test turn it off meanwhile?)"
        );
        assert_eq!(
            transport,
            Transport::Native,
            "Auto mode uses the native transport"
        );
        assert!(
            loop_stats.requests_uring > 0,
            "requests came through the ring: {loop_stats:?}"
        );
    }
    assert_eq!(
        loop_stats.notifications, st.sent_ok,
        "the session wrote every notification the filesystem queued, and only those"
    );
    assert_eq!(
        loop_stats.notification_errors, 0,
        "the kernel refused none of the notifications: {loop_stats:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The scenarios

/// `notify_inval_inode` with a data range: a file rewritten behind the kernel's back (same
/// size, then larger, then smaller) reads fresh only once its cached pages are dropped.
/// An attribute-only invalidation (`offset < 0`) refreshes attributes but keeps same-size
/// pages.
fn inval_inode_data(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "f", b"old content!");
        },
        |fx| {
            let f = fx.path("f");
            let id = fx.id("f");
            assert_eq!(fs::read(&f).unwrap(), b"old content!");
            let reads = fx.reads(id);
            assert!(reads > 0, "the first read reached the filesystem");

            // Same size, same mtime.
            fx.with(|st| st.node(id).data = b"NEW content!".to_vec());
            assert_eq!(
                fs::read(&f).unwrap(),
                b"old content!",
                "without a notification the kernel serves its cached page"
            );
            assert_eq!(fx.reads(id), reads, "no READ reached the filesystem");

            // Attributes only: GETATTR again, but the pages stay (nothing says they changed).
            let getattrs = fx.getattrs(id);
            fx.notify("", move |cx| cx.notify_inval_inode(NodeId(id), -1, 0));
            eventually("a GETATTR after INVAL_INODE(offset -1)", || {
                fs::metadata(&f).unwrap();
                fx.getattrs(id) > getattrs
            });
            assert_eq!(
                fs::read(&f).unwrap(),
                b"old content!",
                "an attribute-only invalidation keeps same-size pages"
            );
            assert_eq!(fx.reads(id), reads);

            // The data range: the pages go, the next read asks the filesystem.
            fx.notify("", move |cx| cx.notify_inval_inode(NodeId(id), 0, 0));
            eventually("the new content after INVAL_INODE(0, 0)", || {
                fs::read(&f).unwrap() == b"NEW content!"
            });
            assert!(fx.reads(id) > reads, "a READ reached the filesystem");

            // Larger, then smaller: size and data both come back fresh.
            for new in [&b"a longer, different content\n"[..], &b"tiny"[..]] {
                let old = fs::read(&f).unwrap();
                fx.with(|st| st.node(id).data = new.to_vec());
                assert_eq!(fs::read(&f).unwrap(), old, "stale without a notification");
                assert_eq!(fs::metadata(&f).unwrap().len(), old.len() as u64);
                fx.notify("", move |cx| cx.notify_inval_inode(NodeId(id), 0, 0));
                eventually("the resized content after INVAL_INODE(0, 0)", || {
                    fs::read(&f).unwrap() == new
                });
                assert_eq!(fs::metadata(&f).unwrap().len(), new.len() as u64);
            }
        },
    );
}

/// `notify_inval_inode` for attributes: a mode and size changed behind the kernel's back
/// show in `stat` only after the notification.
fn inval_inode_attrs(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "f", b"0123456789");
        },
        |fx| {
            let f = fx.path("f");
            let id = fx.id("f");
            let meta = fs::metadata(&f).unwrap();
            assert_eq!((meta.permissions().mode(), meta.len()), (0o100_644, 10));
            let getattrs = fx.getattrs(id);

            fx.with(|st| {
                let n = st.node(id);
                n.perm = 0o600;
                n.data = b"0123456789abcdefghij".to_vec();
            });
            let meta = fs::metadata(&f).unwrap();
            assert_eq!(
                (meta.permissions().mode(), meta.len()),
                (0o100_644, 10),
                "without a notification stat shows the cached attributes"
            );
            assert_eq!(
                fx.getattrs(id),
                getattrs,
                "no GETATTR reached the filesystem"
            );

            fx.notify("", move |cx| cx.notify_inval_inode(NodeId(id), -1, 0));
            eventually("mode 0600 and size 20 after INVAL_INODE", || {
                let meta = fs::metadata(&f).unwrap();
                (meta.permissions().mode(), meta.len()) == (0o100_600, 20)
            });
        },
    );
}

/// `notify_inval_entry`: a name removed behind the kernel's back disappears despite its
/// 60 s entry TTL; with `expire_only`, too, and a live name is then looked up again.
fn inval_entry(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            let d = st.dir(ROOT, "d");
            for name in ["gone", "expired", "kept"] {
                st.file(d, name, name.as_bytes());
            }
        },
        |fx| {
            let d = fx.id("d");
            for name in ["gone", "expired", "kept"] {
                assert!(exists(&fx.path("d").join(name)), "d/{name} exists");
            }
            fx.with(|st| {
                st.unlink(d, "gone");
                st.unlink(d, "expired");
            });
            for name in ["gone", "expired"] {
                assert!(
                    exists(&fx.path("d").join(name)),
                    "without a notification d/{name} is still cached"
                );
                assert_eq!(fx.lookups(d, name), 1, "no LOOKUP reached the filesystem");
            }

            // Names the kernel would refuse are refused before anything is written.
            let long = std::ffi::CString::new(vec![b'n'; 1025]).unwrap();
            let sent = fx.command("", move |_, cx| {
                vec![
                    cx.notify_inval_entry(NodeId(d), c"", false),
                    cx.notify_inval_entry(NodeId(d), &long, false),
                    cx.notify_delete(NodeId(d), NodeId(2), c""),
                ]
            });
            assert_eq!(sent, [Err(Errno::EINVAL); 3], "empty and 1025-byte names");

            fx.notify("", move |cx| {
                cx.notify_inval_entry(NodeId(d), c"gone", false)
            });
            eventually("d/gone gone after INVAL_ENTRY", || {
                !exists(&fx.path("d/gone"))
            });
            assert!(
                exists(&fx.path("d/expired")),
                "only the named entry was invalidated"
            );

            let init = fx.init();
            assert!(
                init.offered.contains(InitFlags::HAS_EXPIRE_ONLY),
                "Linux 6.18 offers HAS_EXPIRE_ONLY: {:?}",
                init.offered
            );
            fx.notify("", move |cx| {
                cx.notify_inval_entry(NodeId(d), c"expired", true)
            });
            eventually("d/expired gone after INVAL_ENTRY(expire_only)", || {
                !exists(&fx.path("d/expired"))
            });

            // A live name only expires: the next stat looks it up again, and finds it.
            let lookups = fx.lookups(d, "kept");
            assert!(exists(&fx.path("d/kept")));
            assert_eq!(fx.lookups(d, "kept"), lookups, "cached until expired");
            fx.notify("", move |cx| {
                cx.notify_inval_entry(NodeId(d), c"kept", true)
            });
            eventually(
                "a new LOOKUP of d/kept after INVAL_ENTRY(expire_only)",
                || {
                    assert!(exists(&fx.path("d/kept")), "d/kept still exists");
                    fx.lookups(d, "kept") > lookups
                },
            );
        },
    );
}

/// `notify_delete`: a name removed behind the kernel's back disappears, from `stat` and
/// from the cached listing of its directory, and an open file of it shows no links.
fn delete(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            let d = st.dir(ROOT, "d");
            for name in ["a", "b", "c"] {
                st.file(d, name, name.as_bytes());
            }
        },
        |fx| {
            let d = fx.id("d");
            let b = fx.id("d/b");
            let dir = fx.path("d");
            assert_eq!(list(&dir), ["a", "b", "c"]);
            let readdirs = fx.readdirs(d);
            assert!(readdirs > 0);
            assert_eq!(list(&dir), ["a", "b", "c"]);
            assert_eq!(
                fx.readdirs(d),
                readdirs,
                "the listing is cached (CACHE_DIR)"
            );
            let open = File::open(dir.join("b")).unwrap();
            assert_eq!(open.metadata().unwrap().nlink(), 1);

            fx.with(|st| st.unlink(d, "b"));
            assert!(
                exists(&dir.join("b")),
                "without a notification d/b is cached"
            );
            assert_eq!(list(&dir), ["a", "b", "c"], "and so is the listing");
            assert_eq!(
                fx.readdirs(d),
                readdirs,
                "no READDIR reached the filesystem"
            );
            assert_eq!(open.metadata().unwrap().nlink(), 1);

            fx.notify("", move |cx| cx.notify_delete(NodeId(d), NodeId(b), c"b"));
            eventually("d/b gone after DELETE", || !exists(&dir.join("b")));
            assert_eq!(list(&dir), ["a", "c"], "the cached listing was dropped");
            assert!(
                fx.readdirs(d) > readdirs,
                "a READDIR reached the filesystem"
            );
            assert_eq!(
                open.metadata().unwrap().nlink(),
                0,
                "DELETE cleared the open file's link count"
            );
        },
    );
}

/// `notify_store`: data pushed into the page cache is read back with no READ reaching the
/// filesystem, including data that extends the file; data larger than a notification
/// buffer is refused with `E2BIG`.
fn store(mode: TransportMode) {
    scenario(
        mode,
        Config::default().notifications(4, 4096),
        |st| {
            st.file(ROOT, "s", &[b'a'; 1000]);
        },
        |fx| {
            let s = fx.path("s");
            let id = fx.id("s");
            assert_eq!(fs::read(&s).unwrap(), [b'a'; 1000]);
            let reads = fx.reads(id);
            assert!(reads > 0);

            fx.with(|st| st.node(id).data = vec![b'b'; 1000]);
            assert_eq!(
                fs::read(&s).unwrap(),
                [b'a'; 1000],
                "stale without a notification"
            );
            fx.notify("", move |cx| cx.notify_store(NodeId(id), 0, &[b'b'; 1000]));
            eventually("the stored data", || fs::read(&s).unwrap() == [b'b'; 1000]);
            assert_eq!(fx.reads(id), reads, "no READ: the data came from the store");

            // Past the end: the file grows.
            fx.with(|st| st.node(id).data.extend([b'c'; 200]));
            fx.notify("", move |cx| {
                cx.notify_store(NodeId(id), 1000, &[b'c'; 200])
            });
            let mut expected = vec![b'b'; 1000];
            expected.extend([b'c'; 200]);
            eventually("the file extended by the store", || {
                fs::read(&s).unwrap() == expected
            });
            assert_eq!(fs::metadata(&s).unwrap().len(), 1200);
            assert_eq!(fx.reads(id), reads, "still no READ");

            let sent = fx.command("", move |_, cx| {
                vec![cx.notify_store(NodeId(id), 0, &[b'x'; 5000])]
            });
            assert_eq!(
                sent,
                [Err(Errno::E2BIG)],
                "5000 bytes do not fit a 4 KiB buffer"
            );

            // The largest store a 4 KiB buffer holds: 4096 - 16 (header) - 24 (body).
            let sent = fx.command("", move |st, cx| {
                st.node(id).data = vec![b'd'; 4056];
                vec![
                    cx.notify_store(NodeId(id), 0, &[b'd'; 4057]),
                    cx.notify_store(NodeId(id), 0, &[b'd'; 4056]),
                ]
            });
            assert_eq!(
                sent,
                [Err(Errno::E2BIG), Ok(())],
                "one byte too many, then a fit"
            );
            eventually("the largest stored block", || {
                fs::read(&s).unwrap() == [b'd'; 4056]
            });
            assert_eq!(fx.reads(id), reads, "still no READ");
        },
    );
}

/// Three pages of a recognizable pattern.
fn pattern(seed: u8) -> Vec<u8> {
    (0..3 * 4096u32)
        .map(|i| (i.wrapping_mul(7) as u8) ^ seed)
        .collect()
}

/// `notify_retrieve`: what the kernel has cached of a file comes back through
/// `retrieve_reply`, with the right unique, node, offset and bytes (the cached ones, not the
/// filesystem's newer ones).
fn retrieve(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "r", &pattern(1));
        },
        |fx| {
            let r = fx.path("r");
            let id = fx.id("r");
            let cached = pattern(1);
            assert_eq!(fs::read(&r).unwrap(), cached);
            fx.with(|st| st.node(id).data = pattern(2));

            let take = |unique: u64| {
                let mut got = None;
                eventually("the NOTIFY_REPLY of a RETRIEVE", || {
                    got = fx.with(|st| {
                        let k = st
                            .retrieved
                            .iter()
                            .position(|r| r.notify_unique == unique)?;
                        Some(st.retrieved.remove(k))
                    });
                    got.is_some()
                });
                got.unwrap()
            };

            fx.notify("", move |cx| {
                cx.notify_retrieve(4242, NodeId(id), 0, 3 * 4096)
            });
            let whole = take(4242);
            assert_eq!((whole.node, whole.offset), (id, 0));
            assert!(whole.data == cached, "the kernel's cached pages came back");

            fx.notify("", move |cx| {
                cx.notify_retrieve(4343, NodeId(id), 5000, 3000)
            });
            let window = take(4343);
            assert_eq!((window.node, window.offset), (id, 5000));
            assert!(
                window.data == cached[5000..8000],
                "an unaligned window of the cached pages"
            );
        },
    );
}

/// `notify_poll`: a `poll(2)` on an open file blocks (the first POLL is answered with no
/// events and `SCHEDULE_NOTIFY` remembered), stays blocked when data becomes ready without
/// a notification, and returns `POLLIN` once the filesystem wakes its `kh`.
fn poll(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "p", b"x");
        },
        |fx| {
            let id = fx.id("p");
            let file = File::open(fx.path("p")).unwrap();
            let (tx, rx) = mpsc::channel();
            let poller = std::thread::spawn(move || {
                let mut fds = [rustix::event::PollFd::new(
                    &file,
                    rustix::event::PollFlags::IN,
                )];
                let timeout = rustix::event::Timespec {
                    tv_sec: 60,
                    tv_nsec: 0,
                };
                let n = rustix::event::poll(&mut fds, Some(&timeout));
                let _ = tx.send((n, fds[0].revents()));
            });

            eventually("a POLL asking for a notification", || {
                fx.with(|st| st.poll_kh.is_some())
            });
            assert!(
                matches!(rx.recv_timeout(QUIET), Err(mpsc::RecvTimeoutError::Timeout)),
                "poll(2) waits: the filesystem reported no events"
            );
            fx.with(|st| st.node(id).ready = true);
            assert!(
                matches!(rx.recv_timeout(QUIET), Err(mpsc::RecvTimeoutError::Timeout)),
                "without a notification poll(2) keeps waiting, though data is ready"
            );

            let polls = fx.polls(id);
            let kh = fx.with(|st| st.poll_kh).unwrap();
            fx.notify("", move |cx| cx.notify_poll(kh));
            let (n, revents) = rx
                .recv_timeout(EVENTUALLY)
                .expect("poll(2) returns after the wake-up");
            assert_eq!(n, Ok(1), "one descriptor ready");
            assert!(
                revents.contains(rustix::event::PollFlags::IN),
                "{revents:?}"
            );
            assert!(
                fx.polls(id) > polls,
                "the wake-up made the kernel poll again"
            );
            poller.join().unwrap();
        },
    );
}

/// `notify_inc_epoch`: every cached dentry is revalidated: LOOKUPs reach the filesystem
/// again for names cached with a 60 s TTL.
fn inc_epoch(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "e", b"e");
            let sub = st.dir(ROOT, "sub");
            st.file(sub, "se", b"se");
        },
        |fx| {
            let init = fx.init();
            assert!(
                init.kernel_minor >= 44,
                "INC_EPOCH needs 7.44: {}",
                init.kernel_minor
            );
            let sub = fx.id("sub");
            let (e, se) = (fx.path("e"), fx.path("sub/se"));
            assert!(exists(&e) && exists(&se));
            assert!(exists(&e) && exists(&se));
            assert_eq!(fx.lookups(ROOT, "e"), 1, "cached: one LOOKUP");
            assert_eq!(fx.lookups(sub, "se"), 1, "cached: one LOOKUP");

            #[allow(
                clippy::redundant_closure_for_method_calls,
                reason = "the method path is not general over Cx's lifetime"
            )]
            fx.notify("", |cx| cx.notify_inc_epoch());
            eventually("a new LOOKUP of e after INC_EPOCH", || {
                assert!(exists(&e));
                fx.lookups(ROOT, "e") > 1
            });
            assert!(exists(&se));
            assert!(fx.lookups(sub, "se") > 1, "sub/se was looked up again too");
        },
    );
}

/// `notify_prune`: the kernel drops the unused inode of a pruned node id, and FORGETs give
/// back every lookup it held; an unpruned one keeps its lookups.
fn prune(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            st.file(ROOT, "p1", b"1");
            st.file(ROOT, "p2", b"2");
        },
        |fx| {
            let init = fx.init();
            assert!(
                init.kernel_minor >= 45,
                "PRUNE needs 7.45: {}",
                init.kernel_minor
            );
            let (p1, p2) = (fx.id("p1"), fx.id("p2"));
            assert!(exists(&fx.path("p1")) && exists(&fx.path("p2")));
            assert_eq!((fx.forgets(p1), fx.forgets(p2)), (0, 0), "both cached");

            fx.notify("", move |cx| cx.notify_prune(&[p1]));
            eventually("a FORGET of p1 after PRUNE", || fx.forgets(p1) > 0);
            assert_eq!(
                fx.forgets(p1),
                fx.entries(p1),
                "every lookup of p1 was given back"
            );
            assert_eq!(fx.forgets(p2), 0, "p2 was not pruned");
            let lookups = fx.lookups(ROOT, "p1");
            assert!(exists(&fx.path("p1")), "p1 is looked up afresh");
            assert!(fx.lookups(ROOT, "p1") > lookups);
        },
    );
}

/// No deadlock: from inside the handlers of a LOOKUP and of a CREATE in directory `nd`
/// (during which the kernel holds `nd`'s lock), the filesystem sends `notify_inval_entry`
/// and `notify_delete` about `nd`, then answers; from inside a READ of `rd` (its pages
/// locked), `notify_inval_inode` of `rd`'s data. The requests return, the notifications
/// take effect, and the loop keeps serving.
fn no_deadlock(mode: TransportMode) {
    scenario(
        mode,
        Config::default(),
        |st| {
            let nd = st.dir(ROOT, "nd");
            for name in ["v1", "v2", "v3", "v4"] {
                st.file(nd, name, name.as_bytes());
            }
            st.file(ROOT, "other", b"still served");
            st.file(ROOT, "rd", b"stale");
        },
        |fx| {
            let nd = fx.id("nd");
            let dir = fx.path("nd");
            for name in ["v1", "v2", "v3", "v4"] {
                assert!(exists(&dir.join(name)));
            }
            let (v2, v4) = fx.with(|st| {
                let ids: Vec<u64> = ["v1", "v2", "v3", "v4"]
                    .iter()
                    .map(|n| st.unlink(nd, n))
                    .collect();
                (ids[1], ids[3])
            });
            for name in ["v1", "v2", "v3", "v4"] {
                assert!(exists(&dir.join(name)), "nd/{name} cached");
            }

            // Inside a LOOKUP in nd.
            let fx2 = fx.clone();
            let sent = within("a LOOKUP in nd that notifies about nd", move || {
                fx2.command("nd", move |_, cx| {
                    vec![
                        cx.notify_inval_entry(NodeId(nd), c"v1", false),
                        cx.notify_delete(NodeId(nd), NodeId(v2), c"v2"),
                    ]
                })
            });
            assert_eq!(sent, [Ok(()), Ok(())]);
            eventually("nd/v1 and nd/v2 gone", || {
                !exists(&dir.join("v1")) && !exists(&dir.join("v2"))
            });

            // Inside a CREATE in nd (the directory's lock held exclusively).
            let (path, name) = fx.on_create("nd", move |_, cx| {
                vec![
                    cx.notify_inval_entry(NodeId(nd), c"v3", false),
                    cx.notify_delete(NodeId(nd), NodeId(v4), c"v4"),
                ]
            });
            let created = path.clone();
            within("a CREATE in nd that notifies about nd", move || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&created)
                    .unwrap();
            });
            let sent = fx
                .with(|st| st.results.remove(&name))
                .expect("CREATE ran it");
            assert_eq!(sent, [Ok(()), Ok(())]);
            eventually("nd/v3 and nd/v4 gone", || {
                !exists(&dir.join("v3")) && !exists(&dir.join("v4"))
            });
            assert!(exists(&path), "the created file is there");

            // Inside a READ of rd (its pages locked), invalidate rd's pages.
            let rd = fx.id("rd");
            let hook = format!("read-{rd}");
            fx.with(|st| {
                let command: Command = Box::new(move |st, cx| {
                    st.node(rd).data = b"fresh".to_vec();
                    vec![cx.notify_inval_inode(NodeId(rd), 0, 0)]
                });
                st.commands.insert(hook.clone(), command);
            });
            let path = fx.path("rd");
            let first = within("a READ of rd that invalidates rd's pages", move || {
                fs::read(&path).unwrap()
            });
            // The READ answered "stale"; read(2) may still return "fresh" if the invalidation
            // dropped the page before it was copied out (the kernel then reads it again).
            assert!(first == b"stale" || first == b"fresh", "{first:?}");
            let sent = fx.with(|st| st.results.remove(&hook)).expect("READ ran it");
            assert_eq!(sent, [Ok(())]);
            eventually("rd's new content", || {
                fs::read(fx.path("rd")).unwrap() == b"fresh"
            });

            // The loop still serves, and still notifies.
            assert_eq!(fs::read(fx.path("other")).unwrap(), b"still served");
            let other = fx.id("other");
            fx.notify("nd", move |cx| cx.notify_inval_inode(NodeId(other), -1, 0));
            assert_eq!(list(&dir), [name.as_str()]);
        },
    );
}

/// Flood: more notifications in one handler than the pool has buffers: the first 4 are
/// queued (and, sent from a LOOKUP in `d` about `d`, wait for `d`'s lock), the rest fail
/// with `EAGAIN` at once; nothing hangs, the queued ones take effect, and once their writes
/// complete the pool serves again.
fn flood(mode: TransportMode) {
    scenario(
        mode,
        Config::default().notifications(4, 4096),
        |st| {
            let d = st.dir(ROOT, "d");
            st.file(d, "x", b"x");
        },
        |fx| {
            let d = fx.id("d");
            let x = fx.path("d/x");
            assert!(exists(&x));
            let lookups = fx.lookups(d, "x");

            let fx2 = fx.clone();
            let sent = within(
                "a LOOKUP in d that floods notifications about d",
                move || {
                    fx2.command("d", move |_, cx| {
                        (0..40)
                            .map(|_| cx.notify_inval_entry(NodeId(d), c"x", true))
                            .collect()
                    })
                },
            );
            assert_eq!(sent.len(), 40);
            assert_eq!(sent[..4], [Ok(()); 4], "one per buffer of the pool");
            assert!(
                sent[4..].iter().all(|r| *r == Err(Errno::EAGAIN)),
                "the rest: EAGAIN ({sent:?})"
            );
            eventually("a new LOOKUP of d/x after the flood", || {
                assert!(exists(&x));
                fx.lookups(d, "x") > lookups
            });

            // The buffers come back with the writes' completions.
            let f = fx.id("d/x");
            eventually("a notification accepted again", || {
                fx.command("", move |_, cx| {
                    vec![cx.notify_inval_inode(NodeId(f), -1, 0)]
                }) == [Ok(())]
            });
            assert_eq!(fs::read(&x).unwrap(), b"x", "the loop still serves");
        },
    );
}

macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        /// Each scenario on the classic `/dev/fuse` transport.
        mod classic {
            $(
                #[test]
                fn $name() {
                    super::$name(ringfuse::TransportMode::Classic);
                }
            )*
        }

        /// Each scenario with `TransportMode::Auto` and `enable_uring` on: the native
        /// FUSE-over-io_uring transport.
        mod uring {
            $(
                #[test]
                fn $name() {
                    super::$name(ringfuse::TransportMode::Auto);
                }
            )*
        }
    };
}

on_both_transports!(
    inval_inode_data,
    inval_inode_attrs,
    inval_entry,
    delete,
    store,
    retrieve,
    poll,
    inc_epoch,
    prune,
    no_deadlock,
    flood,
);
