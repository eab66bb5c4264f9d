//! `ringfuse-latency`: the latency workload — a filesystem whose every READ waits 1 ms (as a
//! disk or a network peer would make it), read with fio 4 KiB random reads, `O_DIRECT`,
//! libaio, iodepth 1, 16 and 64.
//!
//! ```text
//! ringfuse-latency run [--secs S] [--reps N] [--latency-us U] [--out DIR] [--targets A,B]
//!                      [--placement unpinned|split]
//! ringfuse-latency serve-fuser THREADS MOUNTPOINT LATENCY_US
//! ```
//!
//! Targets:
//! - `rf-native`, `rf-classic`: `examples/slowfs` (an `AsyncFilesystem` whose READ awaits an
//!   io_uring timeout, then answers), one loop thread, on the native or the classic
//!   transport, 128 requests in flight at most. Build it first:
//!   `cargo build --release --example slowfs` (found next to this binary).
//! - `fuser1`, `fuser64`: fuser 0.18 serving the same file, each READ sleeping 1 ms in
//!   `std::thread::sleep` the way fuser users write it, with 1 and with 64 threads (fuser
//!   has no upper limit of its own; 64 threads cover iodepth 64).
//!
//! Both ask for `FUSE_ASYNC_DIO` and `max_background = congestion_threshold = 128`, so
//! `O_DIRECT` reads in flight really reach the server at once, and open the file
//! `FOPEN_DIRECT_IO`. All targets are mounted at once and measured interleaved: for each
//! repetition, each iodepth, each target in turn. The report gives medians (with min–max)
//! of ops/s and of the server's CPU (user + system time of all its threads over the run,
//! from `/proc/PID/stat`, as a share of one CPU). Placement: `unpinned` (default: the
//! scheduler chooses, and it tends to put fio and a one-thread server on the same CPU, since
//! each wakes the other) or `split` (every server thread on CPU 1, fio on CPU 0, through
//! `taskset`).

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "../../examples/common/pattern.rs"]
mod pattern;
use pattern::fill_pattern;

const FILE_SIZE: u64 = 64 << 20;
const DEPTHS: [u32; 3] = [1, 16, 64];
const ALL_TARGETS: [&str; 4] = ["rf-native", "rf-classic", "fuser1", "fuser64"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("serve-fuser") => serve_fuser(&args[1..]),
        _ => Err(
            "usage: ringfuse-latency run [--secs S] [--reps N] [--latency-us U] \
                  [--out DIR] [--targets A,B] [--placement unpinned|split] | serve-fuser THREADS MOUNTPOINT LATENCY_US"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringfuse-latency: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- the fuser server ----------------------------------------------------------------------

mod fu {
    use super::fill_pattern;
    use std::ffi::OsStr;
    use std::time::{Duration, UNIX_EPOCH};

    use fuser::{
        FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
        KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, Request,
    };

    pub struct Slow {
        pub latency: Duration,
        pub size: u64,
    }

    const TTL: Duration = Duration::from_secs(60);

    fn attr(ino: u64, size: u64) -> FileAttr {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let dir = ino == 1;
        FileAttr {
            ino: INodeNo(ino),
            size: if dir { 0 } else { size },
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o555 } else { 0o444 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    impl Filesystem for Slow {
        fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
            let offered = config.capabilities();
            if offered.contains(InitFlags::FUSE_ASYNC_DIO) {
                let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
            }
            let _ = config.set_max_background(128);
            let _ = config.set_congestion_threshold(128);
            Ok(())
        }

        fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            if parent.0 == 1 && name == "data" {
                reply.entry(&TTL, &attr(2, self.size), Generation(1));
            } else {
                reply.error(fuser::Errno::ENOENT);
            }
        }

        fn getattr(&self, _: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
            match ino.0 {
                1 | 2 => reply.attr(&TTL, &attr(ino.0, self.size)),
                _ => reply.error(fuser::Errno::ENOENT),
            }
        }

        fn open(&self, _: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        }

        fn read(
            &self,
            _: &Request,
            _ino: INodeNo,
            _fh: FileHandle,
            offset: u64,
            size: u32,
            _flags: OpenFlags,
            _lock_owner: Option<LockOwner>,
            reply: ReplyData,
        ) {
            std::thread::sleep(self.latency);
            let n = self.size.saturating_sub(offset).min(u64::from(size));
            let mut data = vec![0; n as usize];
            fill_pattern(&mut data, offset);
            reply.data(&data);
        }
    }

    pub fn serve(threads: usize, mnt: &str, latency: Duration, size: u64) -> std::io::Result<()> {
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![fuser::MountOption::FSName("slowfuser".into())];
        cfg.n_threads = Some(threads);
        let session = fuser::Session::new(Slow { latency, size }, mnt, &cfg)?;
        session.run()
    }
}

fn serve_fuser(args: &[String]) -> Result<(), String> {
    let [threads, mnt, latency] = args else {
        return Err("serve-fuser THREADS MOUNTPOINT LATENCY_US".into());
    };
    let threads: usize = threads.parse().map_err(|e| format!("threads: {e}"))?;
    let latency: u64 = latency.parse().map_err(|e| format!("latency: {e}"))?;
    fu::serve(threads, mnt, Duration::from_micros(latency), FILE_SIZE)
        .map_err(|e| format!("fuser: {e}"))
}

// ---- the orchestrator ------------------------------------------------------------------------

struct Server {
    name: String,
    mnt: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's CPU time so far (user + system of all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) here.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf(3) has no preconditions; it only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `program` run on `cpu` only (through `taskset`, which execs it: the pid stays the
/// program's), or anywhere.
fn on_cpu(program: &Path, cpu: Option<u32>) -> Command {
    match cpu {
        Some(n) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &n.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn start(
    name: &str,
    dir: &Path,
    slowfs: &Path,
    latency_us: u64,
    cpu: Option<u32>,
) -> Result<Server, String> {
    let mnt = dir.join(name);
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let mut cmd = match name {
        "rf-native" | "rf-classic" => {
            let mut c = on_cpu(slowfs, cpu);
            c.arg(&mnt)
                .args(["--latency-us", &latency_us.to_string()])
                .args(["--size", &FILE_SIZE.to_string()])
                .args(["--slots", "128"])
                .args([
                    "--transport",
                    if name == "rf-native" {
                        "native"
                    } else {
                        "classic"
                    },
                ]);
            c
        }
        "fuser1" | "fuser64" => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut c = on_cpu(&exe, cpu);
            c.arg("serve-fuser")
                .arg(if name == "fuser1" { "1" } else { "64" })
                .arg(&mnt)
                .arg(latency_us.to_string());
            c
        }
        other => return Err(format!("unknown target {other}")),
    };
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    let server = Server {
        name: name.to_owned(),
        mnt: mnt.clone(),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if std::fs::metadata(mnt.join("data")).is_ok_and(|m| m.len() == FILE_SIZE) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: not mounted after 15 s (see {name}.log)"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A correctness check: the data is the pattern.
    let f = std::fs::File::open(mnt.join("data")).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    f.read_exact_at(&mut buf, 12_288)
        .map_err(|e| format!("{name}: read: {e}"))?;
    if buf
        .iter()
        .enumerate()
        .any(|(k, &b)| b != ((12_288 + k as u64) % 251) as u8)
    {
        return Err(format!("{name}: wrong data"));
    }
    Ok(server)
}

struct Point {
    ops: f64,
    cpu: f64,
}

fn fio(server: &Server, depth: u32, secs: u64, cpu: Option<u32>) -> Result<Point, String> {
    let pid = server.child.id();
    let before = cpu_ticks(pid).ok_or("no /proc stat")?;
    let t0 = Instant::now();
    let out = on_cpu(Path::new("fio"), cpu)
        .args([
            "--name=lat",
            "--rw=randread",
            "--bs=4k",
            "--direct=1",
            "--ioengine=libaio",
        ])
        .arg(format!("--filename={}", server.mnt.join("data").display()))
        .arg(format!("--iodepth={depth}"))
        .arg(format!("--size={FILE_SIZE}"))
        .args([
            "--time_based",
            &format!("--runtime={secs}"),
            "--output-format=json",
        ])
        .output()
        .map_err(|e| format!("fio: {e}"))?;
    let wall = t0.elapsed().as_secs_f64();
    let after = cpu_ticks(pid).ok_or("no /proc stat")?;
    if !out.status.success() {
        return Err(format!(
            "fio failed on {}: {}",
            server.name,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("fio json: {e}"))?;
    let ops = j["jobs"][0]["read"]["iops"]
        .as_f64()
        .ok_or("fio json: no read iops")?;
    let errors = j["jobs"][0]["error"].as_i64().unwrap_or(0);
    if errors != 0 {
        return Err(format!("fio reported error {errors} on {}", server.name));
    }
    let cpu = (after - before) as f64 / clk_tck() / wall;
    Ok(Point { ops, cpu })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(args: &[String]) -> Result<(), String> {
    let mut secs = 5u64;
    let mut reps = 3usize;
    let mut latency_us = 1000u64;
    let mut out: Option<PathBuf> = None;
    let mut targets: Vec<String> = ALL_TARGETS.iter().map(|s| (*s).to_owned()).collect();
    let mut placement = String::from("unpinned");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => secs = v()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--reps" => reps = v()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--latency-us" => latency_us = v()?.parse().map_err(|e| format!("{e}"))?,
            "--out" => out = Some(PathBuf::from(v()?)),
            "--targets" => targets = v()?.split(',').map(str::to_owned).collect(),
            "--placement" => placement = v()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    // (server CPU, fio CPU)
    let (server_cpu, fio_cpu) = match placement.as_str() {
        "unpinned" => (None, None),
        "split" => (Some(1), Some(0)),
        other => return Err(format!("--placement: {other} is not unpinned or split")),
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let slowfs = exe
        .parent()
        .map(|d| d.join("examples/slowfs"))
        .ok_or("no directory")?;
    if targets.iter().any(|t| t.starts_with("rf-")) && !slowfs.exists() {
        return Err(format!(
            "{} is missing: cargo build --release --example slowfs",
            slowfs.display()
        ));
    }
    let scratch = std::env::temp_dir().join(format!("ringfuse-latency.{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let started = chrono_now();
    let mut servers = Vec::new();
    for t in &targets {
        servers.push(start(t, &scratch, &slowfs, latency_us, server_cpu)?);
    }
    // results[target][depth] = points
    let mut results: Vec<Vec<Vec<Point>>> = (0..targets.len())
        .map(|_| DEPTHS.iter().map(|_| Vec::new()).collect())
        .collect();
    for rep in 0..reps {
        for (d, &depth) in DEPTHS.iter().enumerate() {
            for (k, s) in servers.iter().enumerate() {
                let p = fio(s, depth, secs, fio_cpu)?;
                eprintln!(
                    "rep {rep} iodepth {depth:>2} {:<10} {:>9.0} ops/s  server CPU {:>5.1} %",
                    s.name,
                    p.ops,
                    p.cpu * 100.0
                );
                results[k][d].push(p);
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut report = String::new();
    report.push_str(&format!(
        "# Latency workload: every READ waits {latency_us} µs\n\n\
         fio 4 KiB random reads, O_DIRECT, libaio, {secs} s per point, {reps} interleaved \
         repetitions, placement {placement}; started {started}, load average at the end: {}\n\n\
         | target | iodepth | ops/s (median) | min–max | server CPU (share of one CPU) | \
         server CPU µs per read |\n|---|---:|---:|---:|---:|---:|\n",
        load.trim()
    ));
    for (k, t) in targets.iter().enumerate() {
        for (d, &depth) in DEPTHS.iter().enumerate() {
            let pts = &results[k][d];
            let mut ops: Vec<f64> = pts.iter().map(|p| p.ops).collect();
            let mut cpu: Vec<f64> = pts.iter().map(|p| p.cpu).collect();
            let mut per: Vec<f64> = pts.iter().map(|p| p.cpu / p.ops * 1e6).collect();
            let (lo, hi) = (
                ops.iter().copied().fold(f64::INFINITY, f64::min),
                ops.iter().copied().fold(0.0, f64::max),
            );
            report.push_str(&format!(
                "| {t} | {depth} | {:.0} | {lo:.0}–{hi:.0} | {:.1} % | {:.1} |\n",
                median(&mut ops),
                median(&mut cpu) * 100.0,
                median(&mut per),
            ));
        }
    }
    drop(servers);
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{report}");
    if let Some(dir) = out {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(dir.join("report.md")).map_err(|e| e.to_string())?;
        f.write_all(report.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn chrono_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
