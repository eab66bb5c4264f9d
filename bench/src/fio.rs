//! The data workloads: fio jobs on `/data`, run as a child process on the client CPUs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One fio job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub rw: &'static str,
    pub bs: u32,
    pub engine: &'static str,
    pub iodepth: u32,
    pub direct: bool,
}

impl Job {
    pub fn is_write(&self) -> bool {
        self.rw.contains("write")
    }

    /// The job file for `file` of `size` bytes, running `secs`.
    pub fn render(&self, file: &Path, size: u64, secs: Duration) -> String {
        format!(
            "[global]\nfilename={}\nsize={size}\ntime_based=1\nruntime={}ms\nramp_time=0\n\
             norandommap=1\nrandrepeat=0\ninvalidate=1\nlat_percentiles=1\n\
             percentile_list=50:99\ngroup_reporting=1\n\
             [job]\nrw={}\nbs={}\nioengine={}\niodepth={}\ndirect={}\n",
            file.display(),
            secs.as_millis(),
            self.rw,
            self.bs,
            self.engine,
            self.iodepth,
            u8::from(self.direct),
        )
    }
}

/// What fio measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub ios: u64,
    pub secs: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// fio's version, or an error saying how to install it.
pub fn check() -> Result<String, String> {
    crate::sys::command_line("fio", &["--version"]).ok_or_else(|| {
        "fio not found: the data workloads need it (Debian/Ubuntu: `apt-get install -y fio`)"
            .to_string()
    })
}

/// Runs `job` (the job file is written into `workdir`) and parses its JSON output.
pub fn run(
    job: &Job,
    file: &Path,
    size: u64,
    secs: Duration,
    workdir: &Path,
) -> Result<Outcome, String> {
    let jobfile = workdir.join("job.fio");
    let output = workdir.join("fio.json");
    std::fs::write(&jobfile, job.render(file, size, secs)).map_err(|e| format!("job file: {e}"))?;
    let st = Command::new("fio")
        .arg("--output-format=json")
        .arg(format!("--output={}", output.display()))
        .arg(&jobfile)
        .stdin(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("fio: {e} (install: apt-get install -y fio)"))?;
    let text = std::fs::read_to_string(&output).map_err(|e| format!("fio output: {e}"))?;
    if !st.success() {
        return Err(format!(
            "fio exited with {st}: {}",
            text.chars().take(400).collect::<String>()
        ));
    }
    parse(&text, job.is_write())
}

/// Reads fio's JSON (the text may start with warnings before the JSON object).
pub fn parse(text: &str, write: bool) -> Result<Outcome, String> {
    let start = text.find('{').ok_or("fio printed no JSON")?;
    let v: serde_json::Value =
        serde_json::from_str(&text[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let job = &v["jobs"][0];
    if job["error"].as_i64().unwrap_or(0) != 0 {
        return Err(format!("fio job error {}", job["error"]));
    }
    let d = &job[if write { "write" } else { "read" }];
    let ios = d["total_ios"].as_u64().ok_or("fio JSON: no total_ios")?;
    let runtime_ms = d["runtime"].as_f64().unwrap_or(0.0);
    let pct = |k: &str| {
        d["lat_ns"]["percentile"][k]
            .as_u64()
            .or_else(|| d["clat_ns"]["percentile"][k].as_u64())
            .unwrap_or(0)
    };
    Ok(Outcome {
        ios,
        secs: runtime_ms / 1000.0,
        p50_ns: pct("50.000000"),
        p99_ns: pct("99.000000"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json() {
        let text = r#"note: something
{"jobs":[{"error":0,"read":{"total_ios":1000,"runtime":2000,"iops":500.0,
"lat_ns":{"percentile":{"50.000000":1000,"99.000000":5000}}},"write":{"total_ios":0}}]}"#;
        let o = parse(text, false).unwrap();
        assert_eq!((o.ios, o.p50_ns, o.p99_ns), (1000, 1000, 5000));
        assert!((o.secs - 2.0).abs() < 1e-9);
        assert!(parse("nothing", false).is_err());
    }

    #[test]
    fn job_file() {
        let j = Job {
            rw: "randread",
            bs: 4096,
            engine: "libaio",
            iodepth: 32,
            direct: true,
        };
        let s = j.render(Path::new("/m/data"), 1 << 20, Duration::from_millis(1500));
        assert!(s.contains("filename=/m/data\n"));
        assert!(s.contains("runtime=1500ms\n"));
        assert!(s.contains("iodepth=32\ndirect=1\n"));
    }
}
