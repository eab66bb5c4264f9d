//! Results: the JSON file, the markdown report and the SVG chart of ratios.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::orchestrate::{Profile, REFERENCE, RunRecord, TARGETS, WORKLOADS, placements, target};
use crate::serve::FsKind;

/// The machine and the conditions of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub mem_mib: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub fio: String,
    pub started_utc: String,
    pub finished_utc: String,
    pub ringfuse_commit: String,
    pub enable_uring: String,
    pub cpuidle: String,
    pub command: String,
}

impl Machine {
    pub fn capture() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let mem_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0)
            / 1024;
        Self {
            kernel: crate::sys::command_line("uname", &["-r"]).unwrap_or_default(),
            cpu_model,
            cpus: crate::sys::ncpus(),
            mem_mib,
            loadavg_start: read("/proc/loadavg"),
            loadavg_end: String::new(),
            fio: crate::sys::command_line("fio", &["--version"])
                .unwrap_or_else(|| "not installed".into()),
            started_utc: now_utc(),
            finished_utc: String::new(),
            ringfuse_commit: crate::sys::command_line("git", &["rev-parse", "--short", "HEAD"])
                .unwrap_or_else(|| "unknown".into()),
            enable_uring: read("/sys/module/fuse/parameters/enable_uring"),
            cpuidle: read("/sys/devices/system/cpu/cpuidle/current_driver"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    pub fn finish(&mut self) {
        self.loadavg_end = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        self.finished_utc = now_utc();
    }
}

fn now_utc() -> String {
    crate::sys::command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default()
}

/// Everything a run produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub profile: Profile,
    pub records: Vec<RunRecord>,
    pub summary: Vec<Point>,
    pub problems: Vec<String>,
}

/// The summary of one (placement, workload, target).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Point {
    pub placement: String,
    pub workload: String,
    pub target: String,
    pub reference: String,
    pub runs: usize,
    pub ops_per_s: f64,
    pub ops_min: f64,
    pub ops_max: f64,
    pub ratio: Option<f64>,
    pub ratio_min: Option<f64>,
    pub ratio_max: Option<f64>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub server_cpu_us_per_op: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub server_wakeups_per_op: Option<f64>,
    pub sys_cpu_us_per_op: f64,
    pub steal_pct_max: f64,
    pub requests_per_op: Option<f64>,
    pub forgets_per_op: Option<f64>,
    pub allocs_per_request: Option<f64>,
    pub syscalls_per_request: Option<f64>,
    /// ringfuse only: `io_uring_enter` calls per request over the server's life, from
    /// its own `Stats`.
    pub enters_per_request: Option<f64>,
    pub vmhwm_mib: Option<f64>,
    pub requests_match: Option<bool>,
    pub opcodes_per_op: BTreeMap<String, f64>,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn opt_median(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    (!v.is_empty()).then(|| median(&v))
}

/// The target a target is compared with: `fuser1`, or `fuser1-null` for null filesystems.
pub fn reference_of(name: &str) -> &'static str {
    match target(name) {
        Some(t) if t.fs == FsKind::Null => "fuser1-null",
        _ => REFERENCE,
    }
}

/// Tolerance on requests per op between a target and its reference.
const REQ_TOLERANCE: f64 = 0.02;

/// Summarizes the records; returns the points and the problems found (failures, request
/// counts that differ from the reference's).
pub fn summarize(records: &[RunRecord]) -> (Vec<Point>, Vec<String>) {
    let mut problems = Vec::new();
    let mut groups: BTreeMap<(String, String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        if !r.ok && !r.unavailable {
            problems.push(format!(
                "FAILED {} {} {} {}: {}",
                r.placement,
                r.workload,
                r.target,
                if r.counting {
                    "count".to_string()
                } else {
                    format!("rep {}", r.rep)
                },
                r.error.as_deref().unwrap_or("")
            ));
        }
        if r.ok {
            groups
                .entry((r.placement.clone(), r.workload.clone(), r.target.clone()))
                .or_default()
                .push(r);
        }
    }
    let mut points = Vec::new();
    for ((pl, wl, tg), rs) in &groups {
        let timed: Vec<&&RunRecord> = rs.iter().filter(|r| !r.counting).collect();
        let counted: Vec<&&RunRecord> = rs.iter().filter(|r| r.counting).collect();
        if timed.is_empty() {
            continue;
        }
        let ops: Vec<f64> = timed.iter().map(|r| r.ops_per_s).collect();
        let mut opcodes: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &timed {
            for (k, v) in &r.opcodes_per_op {
                opcodes.entry(k.clone()).or_default().push(*v);
            }
        }
        points.push(Point {
            placement: pl.clone(),
            workload: wl.clone(),
            target: tg.clone(),
            reference: reference_of(tg).to_string(),
            runs: timed.len(),
            ops_per_s: median(&ops),
            ops_min: ops.iter().copied().fold(f64::INFINITY, f64::min),
            ops_max: ops.iter().copied().fold(0.0, f64::max),
            p50_us: median(&timed.iter().map(|r| r.p50_us).collect::<Vec<_>>()),
            p99_us: median(&timed.iter().map(|r| r.p99_us).collect::<Vec<_>>()),
            server_cpu_us_per_op: opt_median(timed.iter().map(|r| r.server_cpu_us_per_op)),
            server_wakeups_per_op: opt_median(timed.iter().map(|r| r.server_wakeups_per_op)),
            sys_cpu_us_per_op: median(
                &timed
                    .iter()
                    .map(|r| r.sys_cpu_us_per_op)
                    .collect::<Vec<_>>(),
            ),
            steal_pct_max: timed.iter().map(|r| r.steal_pct).fold(0.0, f64::max),
            requests_per_op: opt_median(timed.iter().map(|r| r.requests_per_op)),
            forgets_per_op: opt_median(timed.iter().map(|r| r.forgets_per_op)),
            allocs_per_request: opt_median(timed.iter().map(|r| r.allocs_per_request)),
            syscalls_per_request: opt_median(counted.iter().map(|r| r.syscalls_per_request)),
            enters_per_request: opt_median(timed.iter().map(|r| {
                let st = &r.server_exit.as_ref()?["stats"];
                let req = st["requests"].as_f64()?;
                (req > 0.0).then(|| st["enters"].as_f64().unwrap_or(0.0) / req)
            })),
            vmhwm_mib: timed
                .iter()
                .filter_map(|r| r.vmhwm_kb)
                .max()
                .map(|k| k as f64 / 1024.0),
            opcodes_per_op: opcodes
                .iter()
                .map(|(k, v)| (k.clone(), median(v)))
                .collect(),
            ..Point::default()
        });
    }
    // Ratios and request-count checks against each point's reference.
    let index: BTreeMap<(String, String, String), usize> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                (p.placement.clone(), p.workload.clone(), p.target.clone()),
                i,
            )
        })
        .collect();
    for i in 0..points.len() {
        let key = (
            points[i].placement.clone(),
            points[i].workload.clone(),
            points[i].reference.clone(),
        );
        let Some(&j) = index.get(&key) else { continue };
        let reference = points[j].clone();
        let p = &mut points[i];
        if reference.ops_per_s > 0.0 {
            p.ratio = Some(p.ops_per_s / reference.ops_per_s);
            // Per-repetition ratios: rep k of the target against rep k of the reference.
            let per_rep: Vec<f64> = groups
                .get(&(p.placement.clone(), p.workload.clone(), p.target.clone()))
                .into_iter()
                .flatten()
                .filter(|r| !r.counting)
                .filter_map(|r| {
                    let refs = groups.get(&key)?;
                    let rr = refs.iter().find(|x| !x.counting && x.rep == r.rep)?;
                    (rr.ops_per_s > 0.0).then(|| r.ops_per_s / rr.ops_per_s)
                })
                .collect();
            if !per_rep.is_empty() {
                p.ratio_min = Some(per_rep.iter().copied().fold(f64::INFINITY, f64::min));
                p.ratio_max = Some(per_rep.iter().copied().fold(0.0, f64::max));
            }
        }
        if let (Some(a), Some(b)) = (p.server_cpu_us_per_op, reference.server_cpu_us_per_op)
            && b > 0.0
        {
            p.cpu_ratio = Some(a / b);
        }
        if let (Some(a), Some(b)) = (p.requests_per_op, reference.requests_per_op) {
            let ok = (a - b).abs() <= REQ_TOLERANCE * b.max(1e-9);
            p.requests_match = Some(ok);
            // fractal-fuse negotiates its own INIT (READDIRPLUS always: src/fractal.rs), so
            // its listings take other requests by design; the report shows its counts.
            let by_design = target(&p.target)
                .is_some_and(|t| matches!(t.kind, crate::orchestrate::Kind::Fractal { .. }));
            if !ok && !by_design {
                problems.push(format!(
                    "INVALID {} {}: {} answered {a:.3} FUSE requests/op, {} {b:.3} (more than {:.0}% apart)",
                    p.placement,
                    p.workload,
                    p.target,
                    p.reference,
                    REQ_TOLERANCE * 100.0
                ));
            }
        }
    }
    (points, problems)
}

// ---------------------------------------------------------------------------------------
// Markdown

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.prec$}"))
}

fn ratio_cell(p: Option<&Point>) -> String {
    let Some(p) = p else { return "–".into() };
    let mut s = opt(p.ratio, 2) + "×";
    if let Some(c) = p.cpu_ratio {
        let _ = write!(s, " (CPU {c:.2}×)");
    }
    if p.requests_match == Some(false) {
        s += " ⚠";
    }
    s
}

fn geomean(v: &[f64]) -> Option<f64> {
    let v: Vec<f64> = v.iter().copied().filter(|x| *x > 0.0).collect();
    (!v.is_empty()).then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
}

/// The peers of the summary table: a name and the targets that are its modes.
const PEERS: [(&str, &[&str]); 4] = [
    ("fuser 0.18", &["fuser1", "fuser2"]),
    ("fractal-fuse 0.6", &["fractal", "fractal1"]),
    ("libfuse 3.18 memfs_ll", &["libfuse", "libfuse-uring"]),
    ("tmpfs (ceiling)", &["tmpfs"]),
];

/// "Against each peer": per placement and workload, ringfuse's best mode (the fastest
/// `rf-*` target on the in-memory core) against each peer's best, as an ops/s ratio of
/// medians measured in this run.
fn peer_summary(s: &mut String, r: &Results) {
    let mem = |p: &&Point| target(&p.target).is_some_and(|t| t.fs == FsKind::Mem);
    let best = |pl: &str, wl: &str, pick: &dyn Fn(&str) -> bool| {
        r.summary
            .iter()
            .filter(mem)
            .filter(|p| p.placement == pl && p.workload == wl && pick(&p.target) && p.runs > 0)
            .max_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s))
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in &r.summary {
        let key = (p.placement.clone(), p.workload.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let peers: Vec<&(&str, &[&str])> = PEERS
        .iter()
        .filter(|(_, modes)| r.summary.iter().any(|p| modes.contains(&p.target.as_str())))
        .collect();
    if keys.is_empty() || peers.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Against each peer\n");
    let _ = writeln!(
        s,
        "ringfuse's best mode against each peer's best mode, per placement and workload: the ratio of their median ops/s (above 1: ringfuse faster), the modes in brackets. ⚠ marks a pair that answered different FUSE request counts per operation (fractal-fuse lists with READDIRPLUS by design).\n"
    );
    let mut head = String::from("| placement | workload | ringfuse best |");
    let mut rule = String::from("|---|---|---|");
    for (name, _) in &peers {
        let _ = write!(head, " vs {name} |");
        rule.push_str("---|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (pl, wl) in &keys {
        let Some(ours) = best(pl, wl, &|t| t.starts_with("rf-")) else {
            continue;
        };
        let mut row = format!("| {pl} | {wl} | {} `{}` |", si(ours.ops_per_s), ours.target);
        for (_, modes) in &peers {
            match best(pl, wl, &|t| modes.contains(&t)) {
                Some(theirs) if theirs.ops_per_s > 0.0 => {
                    let differs = ours
                        .requests_per_op
                        .zip(theirs.requests_per_op)
                        .is_some_and(|(a, b)| (a - b).abs() > REQ_TOLERANCE * b.max(1e-9));
                    let _ = write!(
                        row,
                        " {:.2}× (`{}`){} |",
                        ours.ops_per_s / theirs.ops_per_s,
                        theirs.target,
                        if differs { " ⚠" } else { "" }
                    );
                }
                _ => row.push_str(" – |"),
            }
        }
        let _ = writeln!(s, "{row}");
    }
    let _ = writeln!(s);
}

pub fn markdown(r: &Results) -> String {
    let m = &r.machine;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# ringfuse against its peers — `{}` profile\n",
        r.profile.name
    );
    let _ = writeln!(
        s,
        "Generated by `ringfuse-bench` (`bench/`); every number below was measured in this run. Ratios compare medians of interleaved repetitions measured in the same run; a ratio above 1 means more ops/s than fuser with 1 thread (`fuser1`), a CPU ratio below 1 means less server CPU per operation.\n"
    );
    peer_summary(&mut s, r);
    let _ = writeln!(s, "## Machine and conditions\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| CPUs | {} × {} |", m.cpus, m.cpu_model);
    let _ = writeln!(s, "| memory | {} MiB |", m.mem_mib);
    let _ = writeln!(
        s,
        "| load average at start / end | {} / {} |",
        m.loadavg_start, m.loadavg_end
    );
    let _ = writeln!(s, "| run | {} → {} |", m.started_utc, m.finished_utc);
    let _ = writeln!(
        s,
        "| ringfuse commit | {} (plus the working tree) |",
        m.ringfuse_commit
    );
    let _ = writeln!(s, "| fio | {} |", m.fio);
    let _ = writeln!(
        s,
        "| fuse enable_uring / cpuidle | {} / {} |",
        m.enable_uring,
        if m.cpuidle.is_empty() {
            "none"
        } else {
            &m.cpuidle
        }
    );
    let _ = writeln!(s, "| command | `{}` |", m.command);
    let p = &r.profile;
    let _ = writeln!(
        s,
        "| profile | {} s measured per point after {} s warm-up (metadata), {} repetitions interleaved (A B C, C B A, …), a fresh mount per point; syscalls counted in a separate {} s run per point; N = {} names; {} small files; data file {} MiB |\n",
        p.secs,
        p.warm,
        p.reps,
        p.count_secs,
        p.entries,
        p.small_files,
        p.data_size >> 20
    );

    let _ = writeln!(s, "## Targets\n");
    for t in TARGETS.iter().filter(|t| {
        p.targets
            .iter()
            .chain(&p.extra_targets)
            .any(|x| x == t.name)
    }) {
        let _ = writeln!(s, "- `{}`: {}", t.name, t.about);
    }
    let unavailable: Vec<String> = {
        let mut v: Vec<String> = r
            .records
            .iter()
            .filter(|x| x.unavailable)
            .map(|x| format!("`{}` ({})", x.target, x.error.as_deref().unwrap_or("")))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if !unavailable.is_empty() {
        let _ = writeln!(
            s,
            "\nNot measured (unavailable here): {}.",
            unavailable.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\nBoth FUSE servers run the same core (`bench/src/core.rs`) and answer INIT identically (flags {}, max_write 128 KiB, 32 pages, max_background 64, congestion 48, time_gran 1 ns), the same TTL per workload, plain READDIR, ENOSYS to STATX, no FOPEN flags; each server prints what it negotiated and the run is refused if two differ (the protocol minor is the one exception: fuser 0.18 always answers 7.40, ringfuse the kernel's 7.45).",
        r.records
            .iter()
            .find_map(|x| x.negotiated.as_ref().map(|n| n.flags.clone()))
            .unwrap_or_default()
    );

    if p.targets
        .iter()
        .chain(&p.extra_targets)
        .any(|t| t.starts_with("fractal") || t.starts_with("libfuse"))
    {
        let _ = writeln!(
            s,
            "\nfractal-fuse cannot be made to answer INIT the same way, so its targets are exempt from that check and differ as follows (`bench/src/fractal.rs`): it always asks READDIRPLUS (with READDIRPLUS_AUTO), ATOMIC_O_TRUNC and SETXATTR_EXT and never ABORT_ERROR, so its listings are READDIRPLUS requests (the same entries, each with its attributes: more bytes and a lookup reference per entry) and their request counts differ (⚠); it takes max_write, max_background and congestion from the adapter (the same values), mounts through fusermount3 (the same mount options), copies READ data into its buffer and returns a `Vec` per listing (its API). libfuse's targets run its own C++ `example/memfs_ll` (a different filesystem: the layout is created through the mount, as for tmpfs), with its compiled-in TTL of 0 whatever the workload's, its own INIT and its multi-threaded loop (or, `libfuse-uring`, `-o io_uring`); it has no counters, so its requests per operation and allocations are not known (–)."
        );
    }
    let _ = writeln!(s, "\n## Workloads\n");
    for w in WORKLOADS
        .iter()
        .filter(|w| p.workloads.iter().any(|x| x == w.name))
    {
        let _ = writeln!(s, "- `{}` (TTL {} s): {}", w.name, w.ttl_s, w.about);
    }

    let get = |pl: &str, wl: &str, tg: &str| {
        r.summary
            .iter()
            .find(|x| x.placement == pl && x.workload == wl && x.target == tg)
    };
    let pls: Vec<&str> = placements()
        .iter()
        .map(|x| x.name)
        .filter(|n| p.placements.iter().any(|x| x == n))
        .collect();
    let compared: Vec<&str> = TARGETS
        .iter()
        .map(|t| t.name)
        .filter(|n| *n != REFERENCE && *n != "fuser1-null")
        .filter(|n| r.summary.iter().any(|x| x.target == *n))
        .collect();
    let _ = writeln!(
        s,
        "\n## Summary: ops/s ratio against its reference (server CPU per op ratio)\n"
    );
    let _ = writeln!(
        s,
        "Reference: `fuser1` (for `*-null` targets: `fuser1-null`). ⚠ marks a point whose FUSE requests per op differ from the reference's (invalid).\n"
    );
    for t in &compared {
        let _ = writeln!(s, "### `{t}`\n");
        let _ = write!(s, "| workload |");
        for pl in &pls {
            let _ = write!(s, " {pl} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &pls {
            let _ = write!(s, "---|");
        }
        let _ = writeln!(s);
        let mut per_pl: Vec<Vec<f64>> = vec![Vec::new(); pls.len()];
        for w in WORKLOADS
            .iter()
            .filter(|w| p.workloads.iter().any(|x| x == w.name))
        {
            if pls.iter().all(|pl| get(pl, w.name, t).is_none()) {
                continue;
            }
            let _ = write!(s, "| {} |", w.name);
            for (i, pl) in pls.iter().enumerate() {
                let pt = get(pl, w.name, t);
                if let Some(x) = pt.and_then(|x| x.ratio) {
                    per_pl[i].push(x);
                }
                let _ = write!(s, " {} |", ratio_cell(pt));
            }
            let _ = writeln!(s);
        }
        let _ = write!(s, "| **geometric mean** |");
        for v in &per_pl {
            let _ = write!(s, " **{}×** |", opt(geomean(v), 2));
        }
        let _ = writeln!(s, "\n");
    }

    let _ = writeln!(s, "## Details per placement\n");
    let _ = writeln!(
        s,
        "ops/s: median [min–max] over the repetitions; latency p50/p99 per operation (µs); server CPU: µs per op from /proc/PID/task/*/schedstat of every server thread; wakeups: times a server thread was scheduled in, per op; req/op: FUSE requests answered per op (the servers' own counters, FORGET excluded), forgets: nodes forgotten per op; syscalls/req: `raw_syscalls:sys_enter` of the server's threads (perf_event_open) per answered request, in the separate counting run; enters/req: ringfuse's own count of `io_uring_enter` calls per request over the server's whole life (setup and warm-up included); allocs/req: heap allocations (alloc+realloc, counting global allocator in the server) per answered request; VmHWM: the server's peak RSS (includes the data file for the fio workloads).\n"
    );
    for pl in &pls {
        let about = placements()
            .iter()
            .find(|x| x.name == *pl)
            .map(|x| x.about)
            .unwrap_or("");
        let _ = writeln!(s, "### {pl} ({about})\n");
        for w in WORKLOADS
            .iter()
            .filter(|w| p.workloads.iter().any(|x| x == w.name))
        {
            let rows: Vec<&Point> = TARGETS
                .iter()
                .filter_map(|t| get(pl, w.name, t.name))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(s, "**{}**\n", w.name);
            let _ = writeln!(
                s,
                "| target | ops/s | ratio [min–max] | p50 / p99 µs | server CPU µs/op | wakeups/op | req/op | forgets/op | syscalls/req | enters/req | allocs/req | VmHWM MiB |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            for x in rows {
                let ratio = match (x.ratio, x.ratio_min, x.ratio_max) {
                    (Some(a), Some(lo), Some(hi)) => format!("{a:.2}× [{lo:.2}–{hi:.2}]"),
                    (Some(a), _, _) => format!("{a:.2}×"),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} [{}–{}] | {} | {:.1} / {:.1} | {} | {} | {}{} | {} | {} | {} | {} | {} |",
                    x.target,
                    si(x.ops_per_s),
                    si(x.ops_min),
                    si(x.ops_max),
                    ratio,
                    x.p50_us,
                    x.p99_us,
                    opt(x.server_cpu_us_per_op, 2),
                    opt(x.server_wakeups_per_op, 2),
                    opt(x.requests_per_op, 2),
                    if x.requests_match == Some(false) {
                        " ⚠"
                    } else {
                        ""
                    },
                    opt(x.forgets_per_op, 2),
                    opt(x.syscalls_per_request, 3),
                    opt(x.enters_per_request, 2),
                    opt(x.allocs_per_request, 2),
                    opt(x.vmhwm_mib, 1),
                );
            }
            let _ = writeln!(s);
        }
    }

    let _ = writeln!(s, "## FUSE requests per operation, by opcode\n");
    let _ = writeln!(
        s,
        "From the servers' own counters (median over repetitions, first placement); every FUSE target of a workload must show the same mix.\n"
    );
    if let Some(pl) = pls.first() {
        let _ = writeln!(s, "| workload | target | requests per op |\n|---|---|---|");
        for w in WORKLOADS
            .iter()
            .filter(|w| p.workloads.iter().any(|x| x == w.name))
        {
            for t in TARGETS {
                if let Some(x) = get(pl, w.name, t.name)
                    && !x.opcodes_per_op.is_empty()
                {
                    let mix: Vec<String> = x
                        .opcodes_per_op
                        .iter()
                        .filter(|(_, v)| **v >= 0.005)
                        .map(|(k, v)| format!("{k} {v:.2}"))
                        .collect();
                    let _ = writeln!(s, "| {} | {} | {} |", w.name, t.name, mix.join(", "));
                }
            }
        }
    }

    let _ = writeln!(s, "\n## Validity\n");
    if r.problems.is_empty() {
        let _ = writeln!(
            s,
            "No failed point; every target answered the same number of FUSE requests per op as its reference (within 2%)."
        );
    } else {
        for pr in &r.problems {
            let _ = writeln!(s, "- {pr}");
        }
    }
    let steal = r
        .summary
        .iter()
        .map(|x| x.steal_pct_max)
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "\nLargest steal time seen in a measured window: {steal:.1}%."
    );
    let _ = writeln!(
        s,
        "\nChart: [`ratios.svg`](ratios.svg); raw records: [`results.json`](results.json)."
    );
    s
}

// ---------------------------------------------------------------------------------------
// SVG

const COLORS: &[&str] = &[
    "#1f77b4", "#7f7f7f", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#ff7f0e", "#393b79",
];

/// A target's color: fixed by its place in `TARGETS`, the same in every chart.
fn color_of(name: &str) -> &'static str {
    let i = TARGETS.iter().position(|t| t.name == name).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars of ops/s ratios on a log2 axis (¼× to 4×, clipped), one panel per
/// placement, the value printed at each bar's end.
pub fn svg(r: &Results) -> String {
    let p = &r.profile;
    let pls: Vec<&str> = placements()
        .iter()
        .map(|x| x.name)
        .filter(|n| p.placements.iter().any(|x| x == n))
        .collect();
    let series: Vec<&str> = TARGETS
        .iter()
        .map(|t| t.name)
        .filter(|n| *n != REFERENCE && *n != "fuser1-null" && *n != "tmpfs")
        .filter(|n| {
            r.summary
                .iter()
                .any(|x| x.target == *n && x.ratio.is_some())
        })
        .collect();
    let wls: Vec<&str> = WORKLOADS
        .iter()
        .map(|w| w.name)
        .filter(|n| p.workloads.iter().any(|x| x == n))
        .collect();
    let bar = 8.0;
    let group = bar * series.len().max(1) as f64 + 6.0;
    let label_w = 150.0;
    let plot_w = 280.0;
    let panel_w = label_w + plot_w + 30.0;
    let top = 70.0;
    let plot_h = group * wls.len() as f64;
    let height = top + plot_h + 30.0 + 16.0 * series.len() as f64;
    let width = (panel_w * pls.len().max(1) as f64 + 10.0).max(640.0);
    let (lo, hi) = (-2.0f64, 2.0f64);
    let x_of = |ratio: f64| (ratio.log2().clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="8" y="16" font-size="13" font-weight="bold">ops/s relative to fuser 0.18 with 1 thread (log scale)</text>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="8" y="30">{} profile, Linux {}, {} CPUs; *-null targets against fuser1-null; bars past ¼× or 4× are clipped</text>"#,
        esc(&p.name),
        esc(&r.machine.kernel),
        r.machine.cpus
    );
    for (pi, pl) in pls.iter().enumerate() {
        let px = 5.0 + panel_w * pi as f64 + label_w;
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="48" font-size="12" font-weight="bold">{}</text>"#,
            esc(pl)
        );
        for (tick, label) in [
            (-2.0, "¼×"),
            (-1.0, "½×"),
            (0.0, "1×"),
            (1.0, "2×"),
            (2.0, "4×"),
        ] {
            let x = px + (tick - lo) / (hi - lo) * plot_w;
            let color = if tick == 0.0 { "#000" } else { "#ddd" };
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}"/>"#,
                top - 6.0,
                top + plot_h
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                top - 9.0
            );
        }
        for (wi, w) in wls.iter().enumerate() {
            let y0 = top + group * wi as f64;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                px - 30.0,
                y0 + group / 2.0 + 3.0,
                esc(w)
            );
            for (k, t) in series.iter().enumerate() {
                let Some(ratio) = r
                    .summary
                    .iter()
                    .find(|x| x.placement == *pl && x.workload == *w && x.target == *t)
                    .and_then(|x| x.ratio)
                else {
                    continue;
                };
                let y = y0 + 3.0 + bar * k as f64;
                let one = x_of(1.0);
                let xr = x_of(ratio);
                let (xa, wdt) = if xr >= one {
                    (px + one, xr - one)
                } else {
                    (px + xr, one - xr)
                };
                let _ = writeln!(
                    s,
                    r#"<rect x="{xa:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {}: {ratio:.2}×</title></rect>"#,
                    wdt.max(0.5),
                    bar - 1.0,
                    color_of(t),
                    esc(pl),
                    esc(w),
                    esc(t)
                );
                let (tx, anchor) = if xr >= one {
                    (px + xr + 2.0, "start")
                } else {
                    (px + xr - 2.0, "end")
                };
                let _ = writeln!(
                    s,
                    r#"<text x="{tx:.1}" y="{:.1}" font-size="7" text-anchor="{anchor}">{ratio:.2}</text>"#,
                    y + bar - 2.0
                );
            }
        }
    }
    let ly = top + plot_h + 24.0;
    for (k, t) in series.iter().enumerate() {
        let y = ly + 16.0 * k as f64;
        let about = target(t).map_or("", |x| x.about);
        let _ = writeln!(
            s,
            r#"<rect x="10" y="{:.1}" width="12" height="9" fill="{}"/><text x="28" y="{y:.1}">{} — {}</text>"#,
            y - 8.0,
            color_of(t),
            esc(t),
            esc(about)
        );
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pl: &str, wl: &str, tg: &str, rep: usize, ops: f64, req: f64) -> RunRecord {
        RunRecord {
            placement: pl.into(),
            workload: wl.into(),
            target: tg.into(),
            rep,
            ok: true,
            ops: 100,
            ops_per_s: ops,
            server_cpu_us_per_op: Some(1e6 / ops),
            requests_per_op: Some(req),
            ..RunRecord::default()
        }
    }

    #[test]
    fn medians_ratios_and_checks() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let records = vec![
            rec("shared", "getattr", "fuser1", 0, 100.0, 1.0),
            rec("shared", "getattr", "fuser1", 1, 110.0, 1.0),
            rec("shared", "getattr", "rf-classic", 0, 200.0, 1.0),
            rec("shared", "getattr", "rf-classic", 1, 220.0, 1.0),
            rec("shared", "getattr", "fuser2", 0, 100.0, 1.5),
        ];
        let (points, problems) = summarize(&records);
        let rf = points.iter().find(|p| p.target == "rf-classic").unwrap();
        assert!((rf.ratio.unwrap() - 2.0).abs() < 1e-9);
        assert!((rf.cpu_ratio.unwrap() - 0.5).abs() < 0.01);
        assert_eq!(rf.requests_match, Some(true));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let results = Results {
            machine: Machine::default(),
            profile: Profile::named("quick").unwrap(),
            records,
            summary: points,
            problems,
        };
        let md = markdown(&results);
        assert!(md.contains("2.00×"));
        let svg = svg(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
