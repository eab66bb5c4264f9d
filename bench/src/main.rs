//! `ringfuse-bench`: ringfuse against fuser 0.18 (and tmpfs), on the same in-memory
//! filesystem, across CPU placements.
//!
//! ```text
//! ringfuse-bench run [--profile quick|full] [--out DIR] [--targets A,B] [--workloads X,Y]
//!                    [--placements P,Q] [--reps N] [--secs S] [--no-count]
//! ringfuse-bench report DIR      # re-render report.md and ratios.svg from DIR/results.json
//! ringfuse-bench list            # targets, workloads, placements
//! ```
//!
//! Needs root, /dev/fuse and fio (`apt-get install -y fio`). See `bench/README.md`.

mod adapters;
mod core;
mod counters;
mod driver;
mod fio;
mod fractal;
mod orchestrate;
mod report;
mod serve;
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use orchestrate::{Profile, Runner, TARGETS, WKind, WORKLOADS};
use report::{Machine, Results};

#[global_allocator]
static ALLOC: counters::Counting = counters::Counting;

const USAGE: &str = "usage:
  ringfuse-bench run [--profile quick|full] [--out DIR] [--targets A,B] [--workloads X,Y]
                     [--placements P,Q] [--reps N] [--secs S] [--no-count]
  ringfuse-bench report DIR
  ringfuse-bench list";

extern "C" fn on_signal(_: libc::c_int) {
    driver::INTERRUPTED.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => match serve::ServeArgs::parse(&args[1..]) {
            Ok(a) => match serve::serve(&a) {
                Ok(()) => ExitCode::SUCCESS,
                Err(serve::ServeError::Unavailable(why)) => {
                    println!("UNAVAILABLE {why}");
                    ExitCode::from(3)
                }
                Err(serve::ServeError::Failed(why)) => {
                    eprintln!("ringfuse-bench serve: {why}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Some("run") => match run(&args[1..]) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ringfuse-bench: {e}");
                ExitCode::from(2)
            }
        },
        Some("report") => match args.get(1).map(|d| rerender(Path::new(d))) {
            Some(Ok(())) => ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("ringfuse-bench: {e}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("list") => {
            println!("targets:");
            for t in TARGETS {
                println!("  {:<20} {}", t.name, t.about);
            }
            println!("workloads:");
            for w in WORKLOADS {
                println!("  {:<20} {}", w.name, w.about);
            }
            println!("placements:");
            for p in orchestrate::placements() {
                println!("  {:<20} {}", p.name, p.about);
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut profile_name = "quick".to_string();
    let mut out = None;
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--profile" => profile_name = val()?,
            "--out" => out = Some(PathBuf::from(val()?)),
            "--targets" | "--workloads" | "--placements" | "--reps" | "--secs" => {
                overrides.push((a.clone(), val()?));
            }
            "--no-count" => overrides.push((a.clone(), String::new())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            o => return Err(format!("unknown argument {o}\n{USAGE}")),
        }
    }
    let mut profile = Profile::named(&profile_name)
        .ok_or(format!("unknown profile {profile_name} (quick, full)"))?;
    for (k, v) in overrides {
        match k.as_str() {
            "--targets" => {
                let l = list(&v);
                profile.extra_targets.retain(|t| l.contains(t));
                profile.targets = l;
            }
            "--workloads" => {
                let l = list(&v);
                profile.extra_workloads.retain(|w| l.contains(w));
                profile.workloads = l;
            }
            "--placements" => profile.placements = list(&v),
            "--reps" => profile.reps = v.parse().map_err(|_| format!("--reps {v}"))?,
            "--secs" => profile.secs = v.parse().map_err(|_| format!("--secs {v}"))?,
            "--no-count" => profile.count_secs = 0.0,
            _ => {}
        }
    }
    for t in profile.targets.iter().chain(&profile.extra_targets) {
        if orchestrate::target(t).is_none() {
            return Err(format!("unknown target {t} (see `ringfuse-bench list`)"));
        }
    }
    for w in &profile.workloads {
        if orchestrate::workload(w).is_none() {
            return Err(format!("unknown workload {w} (see `ringfuse-bench list`)"));
        }
    }
    // Preconditions, each with its fix.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("must run as root (it mounts FUSE and tmpfs filesystems)".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing (modprobe fuse)".into());
    }
    let needs_fio = profile.workloads.iter().any(|w| {
        matches!(
            orchestrate::workload(w).map(|w| w.kind),
            Some(WKind::Fio(_))
        )
    });
    if needs_fio {
        fio::check()?;
    }
    if profile.count_secs > 0.0
        && !Path::new("/sys/kernel/tracing/events/raw_syscalls").exists()
        && !Path::new("/sys/kernel/debug/tracing/events/raw_syscalls").exists()
    {
        return Err("syscall counting needs tracefs: mount -t tracefs nodev /sys/kernel/tracing (or pass --no-count)".into());
    }
    let out = out.unwrap_or_else(|| {
        if Path::new("bench/results").is_dir() {
            PathBuf::from(format!("bench/results/{}", profile.name))
        } else {
            PathBuf::from(format!("ringfuse-bench-{}", profile.name))
        }
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let left = orchestrate::sweep_dead();
    if !left.is_empty() {
        eprintln!("detached mounts left by an earlier run that was killed: {left:?}");
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut machine = Machine::capture();
    eprintln!(
        "ringfuse-bench: {} profile, load average {}, results in {}",
        profile.name,
        machine.loadavg_start,
        out.display()
    );
    let mut runner = Runner::new(profile)?;
    runner.run_all();
    let _ = sys::set_affinity(&sys::Cpus::All);
    machine.finish();
    let (summary, mut problems) = report::summarize(&runner.records);
    if let Some(f) = &runner.fatal {
        problems.insert(0, format!("RUN REFUSED: {f}"));
    }
    let left = orchestrate::sweep();
    if !left.is_empty() {
        problems.push(format!("mounts were left behind (now detached): {left:?}"));
    }
    let interrupted = driver::INTERRUPTED.load(Ordering::Relaxed);
    if interrupted {
        problems.push("interrupted: partial results".into());
    }
    let results = Results {
        machine,
        profile: runner.profile.clone(),
        records: runner.records,
        summary,
        problems,
    };
    write_all(&out, &results)?;
    eprintln!(
        "wrote {}/results.json, report.md, ratios.svg",
        out.display()
    );
    if results.problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &results.problems {
            eprintln!("problem: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn write_all(out: &Path, results: &Results) -> Result<(), String> {
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    let w = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .map_err(|e| format!("{}: {e}", out.join(name).display()))
    };
    w("results.json", &json)?;
    w("report.md", &report::markdown(results))?;
    w("ratios.svg", &report::svg(results))
}

fn rerender(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("results.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut results: Results = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let (summary, problems) = report::summarize(&results.records);
    results.summary = summary;
    results
        .problems
        .retain(|p| !p.starts_with("FAILED") && !p.starts_with("INVALID"));
    results.problems.extend(problems);
    write_all(dir, &results)
}
