//! `ringfuse-bench serve`: one server process (spawned by the orchestrator).
//!
//! It pins itself, builds the core with the layout, mounts with the library asked for and
//! prints `NEGOTIATED {json}`, then `READY {pid, counters}` once INIT is done; it serves
//! until the orchestrator unmounts, then prints `EXIT {json}` (the library's own counters)
//! and exits. Exit code 3 with `UNAVAILABLE reason` means the target cannot run here.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::adapters::{fu, rf};
use crate::core::{Backend, Layout, MemCore, NullCore};
use crate::fractal::FfFs;
use crate::sys::{Cpus, set_affinity};

/// How the server is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lib {
    Fuser {
        threads: usize,
        clone_fd: bool,
    },
    Ringfuse {
        transport: RfTransport,
        reads_in_flight: u16,
        slots: u16,
        /// `Config::replies_first(false)`.
        together: bool,
    },
    /// fractal-fuse 0.6: `workers` worker threads (0: its default, one pinned per CPU).
    Fractal {
        workers: usize,
    },
    /// libfuse 3.18's `example/memfs_ll` (C++, its own in-memory filesystem), run from
    /// `RINGFUSE_LIBFUSE_MEMFS_LL`, with `-o io_uring` or not.
    Libfuse {
        uring: bool,
    },
}

/// ringfuse transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RfTransport {
    /// `/dev/fuse` read and written through the loop's ring.
    Classic,
    /// FUSE-over-io_uring, one loop serving every CPU's queue.
    Native,
    /// FUSE-over-io_uring, one pinned loop per CPU (`run_per_cpu`).
    NativePerCpu,
}

impl RfTransport {
    pub fn name(self) -> &'static str {
        match self {
            RfTransport::Classic => "classic",
            RfTransport::Native => "native",
            RfTransport::NativePerCpu => "native-percpu",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(RfTransport::Classic),
            "native" => Ok(RfTransport::Native),
            "native-percpu" => Ok(RfTransport::NativePerCpu),
            _ => Err(format!("unknown transport {s}")),
        }
    }
}

/// The filesystem a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Mem,
    Null,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Mem => "mem",
            FsKind::Null => "null",
        }
    }
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeArgs {
    pub lib: Lib,
    pub fs: FsKind,
    pub cpus: Cpus,
    pub mountpoint: PathBuf,
    pub ttl: Duration,
    pub layout: Layout,
}

impl ServeArgs {
    /// The command line that [`ServeArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec!["serve".to_string()];
        match &self.lib {
            Lib::Fuser { threads, clone_fd } => {
                a.extend([
                    "--lib".into(),
                    "fuser".into(),
                    "--threads".into(),
                    threads.to_string(),
                ]);
                if *clone_fd {
                    a.push("--clone-fd".into());
                }
            }
            Lib::Ringfuse {
                transport,
                reads_in_flight,
                slots,
                together,
            } => {
                if *together {
                    a.push("--together".into());
                }
                a.extend([
                    "--lib".into(),
                    "ringfuse".into(),
                    "--transport".into(),
                    transport.name().into(),
                    "--reads-in-flight".into(),
                    reads_in_flight.to_string(),
                    "--slots".into(),
                    slots.to_string(),
                ]);
            }
            Lib::Fractal { workers } => {
                a.extend([
                    "--lib".into(),
                    "fractal".into(),
                    "--threads".into(),
                    workers.to_string(),
                ]);
            }
            Lib::Libfuse { uring } => {
                a.extend(["--lib".into(), "libfuse".into()]);
                if *uring {
                    a.push("--uring".into());
                }
            }
        }
        a.extend([
            "--fs".into(),
            self.fs.name().into(),
            "--cpus".into(),
            self.cpus.arg(),
            "--mountpoint".into(),
            self.mountpoint.display().to_string(),
            "--ttl-ms".into(),
            self.ttl.as_millis().to_string(),
            "--dir-entries".into(),
            self.layout.dir_entries.to_string(),
            "--data-size".into(),
            self.layout.data_size.to_string(),
        ]);
        a
    }

    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut lib = None;
        let mut threads = 1;
        let mut clone_fd = false;
        let mut transport = RfTransport::Classic;
        let mut rif = 1u16;
        let mut slots = 8u16;
        let mut together = false;
        let mut uring = false;
        let mut fs = FsKind::Mem;
        let mut cpus = Cpus::All;
        let mut mountpoint = None;
        let mut ttl = Duration::ZERO;
        let mut layout = Layout::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
            let num = |v: String| {
                v.parse::<u64>()
                    .map_err(|_| format!("{a}: not a number: {v}"))
            };
            match a.as_str() {
                "--lib" => lib = Some(val()?),
                "--threads" => threads = num(val()?)? as usize,
                "--clone-fd" => clone_fd = true,
                "--transport" => transport = RfTransport::parse(&val()?)?,
                "--reads-in-flight" => rif = num(val()?)? as u16,
                "--slots" => slots = num(val()?)? as u16,
                "--together" => together = true,
                "--uring" => uring = true,
                "--fs" => {
                    fs = match val()?.as_str() {
                        "mem" => FsKind::Mem,
                        "null" => FsKind::Null,
                        o => return Err(format!("unknown fs {o}")),
                    }
                }
                "--cpus" => cpus = Cpus::parse(&val()?)?,
                "--mountpoint" => mountpoint = Some(PathBuf::from(val()?)),
                "--ttl-ms" => ttl = Duration::from_millis(num(val()?)?),
                "--dir-entries" => layout.dir_entries = num(val()?)? as u32,
                "--data-size" => layout.data_size = num(val()?)?,
                o => return Err(format!("serve: unknown argument {o}")),
            }
        }
        let lib = match lib.as_deref() {
            Some("fuser") => Lib::Fuser { threads, clone_fd },
            Some("fractal") => Lib::Fractal { workers: threads },
            Some("libfuse") => Lib::Libfuse { uring },
            Some("ringfuse") => Lib::Ringfuse {
                transport,
                reads_in_flight: rif,
                slots,
                together,
            },
            _ => return Err("serve: --lib fuser|ringfuse|fractal|libfuse is required".into()),
        };
        Ok(Self {
            lib,
            fs,
            cpus,
            mountpoint: mountpoint.ok_or("serve: --mountpoint is required")?,
            ttl,
            layout,
        })
    }
}

/// Why a server could not run.
pub enum ServeError {
    /// The target is not available in this build or on this kernel (exit code 3).
    Unavailable(String),
    Failed(String),
}

/// The ringfuse configuration of a target: the defaults, with the transport chosen
/// explicitly (the default `Auto` would pick the native transport where the kernel
/// offers it), no signal handling (the orchestrator unmounts) and the shared max_write.
fn ringfuse_config(
    transport: RfTransport,
    reads_in_flight: u16,
    slots: u16,
    together: bool,
) -> ringfuse::Config {
    let mode = match transport {
        RfTransport::Classic => ringfuse::TransportMode::Classic,
        RfTransport::Native | RfTransport::NativePerCpu => ringfuse::TransportMode::Native,
    };
    ringfuse::Config::default()
        .handle_signals(false)
        .slots(slots)
        .reads_in_flight(reads_in_flight)
        .replies_first(!together)
        .max_write(crate::adapters::MAX_WRITE)
        .transport(mode)
}

/// The native transport needs `enable_uring` before mounting.
fn native_available() -> Result<(), ServeError> {
    let p = "/sys/module/fuse/parameters/enable_uring";
    match std::fs::read_to_string(p) {
        Ok(v) if v.trim() == "Y" => Ok(()),
        Ok(_) => Err(ServeError::Unavailable(format!(
            "FUSE-over-io_uring is off: echo Y > {p}"
        ))),
        Err(_) => Err(ServeError::Unavailable(format!(
            "{p} missing: kernel without FUSE-over-io_uring (6.14+)"
        ))),
    }
}

fn stats_json(st: &ringfuse::Stats) -> serde_json::Value {
    json!({
        "requests": st.requests(),
        "requests_dev": st.requests_dev,
        "requests_uring": st.requests_uring,
        "replies": st.replies,
        "errors": st.errors,
        "enters": st.enters,
        "completions": st.completions,
    })
}

/// Whether what a session settled is what the adapter announced (the transport's own
/// `OVER_IO_URING` flag aside), and the session's view.
fn consistent(real: Option<&ringfuse::Negotiated>) -> (bool, serde_json::Value) {
    use ringfuse::abi::flags::InitFlags;
    let Some(r) = real else {
        return (false, serde_json::Value::Null);
    };
    let flags = r.flags.difference(InitFlags::OVER_IO_URING).bits();
    let ok = rf::ANNOUNCED.get().is_some_and(|a| {
        format!("{flags:#x}") == a.flags
            && r.max_write == a.max_write
            && u32::from(r.max_pages) == a.max_pages
            && r.max_readahead == a.max_readahead
            && r.minor == a.minor
    });
    (
        ok,
        json!({
            "minor": r.minor,
            "flags": format!("{:#x}", r.flags.bits()),
            "over_io_uring": r.has(InitFlags::OVER_IO_URING),
            "max_write": r.max_write,
            "max_pages": r.max_pages,
            "max_readahead": r.max_readahead,
        }),
    )
}

pub fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    set_affinity(&args.cpus).map_err(|e| ServeError::Failed(format!("sched_setaffinity: {e}")))?;
    if let Lib::Libfuse { uring } = args.lib {
        return serve_libfuse(args, uring);
    }
    match args.fs {
        FsKind::Mem => run(args, MemCore::new(args.layout)),
        FsKind::Null => run(args, NullCore::new(args.layout)),
    }
}

fn run<B: Backend>(args: &ServeArgs, core: B) -> Result<(), ServeError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| ServeError::Failed(format!("{what}: {e}"));
    let exit = match &args.lib {
        Lib::Ringfuse {
            transport,
            reads_in_flight,
            slots,
            together,
        } => {
            if *transport != RfTransport::Classic {
                native_available()?;
            }
            let config = ringfuse_config(*transport, *reads_in_flight, *slots, *together);
            let mut mo = ringfuse::mount::MountOptions::new();
            mo.fsname("benchfs")
                .and_then(|o| o.subtype(""))
                .map_err(|e| fail("mount options", &e))?;
            mo.default_permissions(true);
            let (st, real, used) = if *transport == RfTransport::NativePerCpu {
                let shared = std::sync::Arc::new(Mutex::new(core));
                let report =
                    ringfuse::run_per_cpu(args.mountpoint.as_path(), &mo, config, |_cpu| {
                        rf::RfFs {
                            core: rf::Shared(std::sync::Arc::clone(&shared)),
                            ttl: args.ttl,
                        }
                    })
                    .map_err(|e| fail("ringfuse run_per_cpu", &e))?;
                let loops: Vec<serde_json::Value> = report.loops.iter().map(stats_json).collect();
                let mut st = stats_json(&report.total());
                st["loops"] = json!(loops);
                (st, report.negotiated, report.transport())
            } else {
                let fs = rf::RfFs {
                    core: rf::Own(core),
                    ttl: args.ttl,
                };
                let mut session =
                    ringfuse::Session::new(fs, args.mountpoint.as_path(), &mo, config)
                        .map_err(|e| fail("ringfuse mount", &e))?;
                session.run().map_err(|e| fail("ringfuse run", &e))?;
                (
                    stats_json(&session.stats()),
                    session.negotiated(),
                    session.transport(),
                )
            };
            let (ok, real) = consistent(real.as_ref());
            json!({
                "lib": "ringfuse",
                "transport": match used {
                    ringfuse::Transport::Native => "native",
                    _ => "classic",
                },
                "stats": st,
                "negotiated_consistent": ok,
                "negotiated_real": real,
            })
        }
        Lib::Fuser { threads, clone_fd } => {
            let mut cfg = fuser::Config::default();
            cfg.mount_options = vec![
                fuser::MountOption::FSName("benchfs".into()),
                fuser::MountOption::DefaultPermissions,
                fuser::MountOption::NoSuid,
                fuser::MountOption::NoDev,
            ];
            cfg.n_threads = Some(*threads);
            cfg.clone_fd = *clone_fd;
            let fs = fu::FuFs {
                core: Mutex::new(core),
                ttl: args.ttl,
            };
            let session = fuser::Session::new(fs, &args.mountpoint, &cfg)
                .map_err(|e| fail("fuser mount", &e))?;
            fu::announce_ready();
            session.run().map_err(|e| fail("fuser run", &e))?;
            json!({ "lib": "fuser", "negotiated_consistent": true })
        }
        Lib::Fractal { workers } => {
            native_available()?;
            let opts = fractal_fuse::MountOptions::new()
                .fs_name("benchfs")
                .default_permissions(true);
            let mut session = fractal_fuse::Session::new(args.mountpoint.clone(), opts)
                .map_err(|e| fail("fractal-fuse mount", &e))?;
            if *workers > 0 {
                session = session.with_worker_count(*workers);
            }
            let fs = FfFs {
                core: Mutex::new(core),
                ttl: args.ttl,
            };
            session.run(fs).map_err(|e| fail("fractal-fuse run", &e))?;
            json!({ "lib": "fractal-fuse", "negotiated_consistent": true })
        }
        // Served by `serve_libfuse` before a core is built.
        Lib::Libfuse { .. } => return Err(ServeError::Failed("libfuse has no core".into())),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "EXIT {exit}");
    let _ = out.flush();
    Ok(())
}

/// The environment variable naming libfuse's built `example/memfs_ll`.
pub const LIBFUSE_MEMFS_LL: &str = "RINGFUSE_LIBFUSE_MEMFS_LL";

/// libfuse's `memfs_ll`, a C++ server with its own filesystem: this process starts it (it
/// inherits the placement's affinity), waits for the mount, creates the layout through it
/// (as for tmpfs), and reports the *server's* pid as READY, with no counters (`0`: the
/// harness then has no per-opcode counts or allocations for it). Unavailable with a message
/// when `RINGFUSE_LIBFUSE_MEMFS_LL` is unset.
fn serve_libfuse(args: &ServeArgs, uring: bool) -> Result<(), ServeError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| ServeError::Failed(format!("{what}: {e}"));
    let Some(bin) = std::env::var_os(LIBFUSE_MEMFS_LL) else {
        return Err(ServeError::Unavailable(format!(
            "{LIBFUSE_MEMFS_LL} is unset: build libfuse 3.18 (meson setup build \
             -Denable-io-uring=true && ninja -C build) and point it at build/example/memfs_ll"
        )));
    };
    if uring {
        native_available()?;
    }
    let mut opts = String::from("default_permissions,fsname=benchfs");
    if uring {
        opts.push_str(",io_uring");
    }
    let mut child = std::process::Command::new(&bin)
        .args(["-f", "-o", &opts])
        .arg(&args.mountpoint)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail("start memfs_ll", &e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while crate::sys::mount_line(&args.mountpoint).is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServeError::Failed(format!("memfs_ll exited: {status}")));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(ServeError::Failed(
                "memfs_ll did not mount within 20 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    crate::driver::populate(&args.mountpoint, args.layout)
        .map_err(|e| fail("populate through memfs_ll", &e))?;
    let n = crate::adapters::Negotiated {
        minor: 45,
        kernel_minor: 45,
        flags: "libfuse's own".into(),
        max_write: 0,
        max_pages: 0,
        max_readahead: 0,
        max_background: 0,
        congestion_threshold: 0,
        time_gran_ns: 0,
        ttl_ms: 0,
        readdir: "READDIR".into(),
        statx: "libfuse's".into(),
        fopen_flags: 0,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "NEGOTIATED {}",
        serde_json::to_string(&n).unwrap_or_default()
    );
    let _ = writeln!(out, "READY {{\"pid\":{},\"counters\":0}}", child.id());
    let _ = out.flush();
    drop(out);
    let status = child.wait().map_err(|e| fail("wait for memfs_ll", &e))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "EXIT {}",
        json!({ "lib": "libfuse", "io_uring": uring, "status": status.code() })
    );
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ServeArgs {
            lib: Lib::Ringfuse {
                transport: RfTransport::Classic,
                reads_in_flight: 2,
                slots: 32,
                together: true,
            },
            fs: FsKind::Null,
            cpus: Cpus::List(vec![1]),
            mountpoint: "/tmp/x".into(),
            ttl: Duration::from_secs(3600),
            layout: Layout {
                dir_entries: 10,
                data_size: 4096,
            },
        };
        let v = a.to_args();
        let b = ServeArgs::parse(&v[1..]).unwrap();
        assert_eq!(b.to_args(), v);
        let f = ServeArgs {
            lib: Lib::Fuser {
                threads: 2,
                clone_fd: true,
            },
            ..a
        };
        let v = f.to_args();
        assert_eq!(ServeArgs::parse(&v[1..]).unwrap().lib, f.lib);
    }
}
