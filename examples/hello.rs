//! `hello`: the smallest useful ringfuse filesystem, one read-only file.
//!
//! ```text
//! hello MOUNTPOINT [-o OPTIONS]
//! cat MOUNTPOINT/hello.txt    # Hello, world!
//! ```
//!
//! The root (mode 0555) holds `hello.txt` (mode 0444). Opening it for writing, truncating
//! it or changing any attribute (`chmod`, `touch`) fails with EACCES; any other name is
//! ENOENT. Serves until unmounted or interrupted (Ctrl-C).
#![forbid(unsafe_code)]

#[path = "common/hello_fs.rs"]
mod hello_fs;

use std::process::ExitCode;

use ringfuse::mount::MountOptions;
use ringfuse::{Config, Session, Timestamp};

use crate::hello_fs::Hello;

const USAGE: &str = "usage: hello MOUNTPOINT [-o OPTIONS]";

fn run(mountpoint: &str, options: &[String]) -> Result<(), String> {
    let fs = Hello {
        time: Timestamp::now(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    };
    let mut opts = MountOptions::new();
    opts.fsname("hello")
        .and_then(|o| o.subtype("hello"))
        .map_err(|e| e.to_string())?;
    for o in options {
        opts.parse_opts(o).map_err(|e| format!("-o {o}: {e}"))?;
    }
    let config = Config::default();
    let buffers = config.static_bytes();
    let mut session = Session::new(fs, std::path::Path::new(mountpoint), &opts, config)
        .map_err(|e| e.to_string())?;
    println!(
        "hello: buffer memory {buffers} bytes ({} KiB)",
        buffers.div_ceil(1024)
    );
    println!("hello: mounted on {mountpoint}; Ctrl-C or `umount {mountpoint}` to stop");
    session.run().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let mut mountpoint = None;
    let mut options = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-o" => {
                let Some(o) = args.next() else {
                    eprintln!("hello: -o needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                options.push(o);
            }
            s if s.starts_with("-o") => options.push(s[2..].to_owned()),
            _ if mountpoint.is_none() && !arg.starts_with('-') => mountpoint = Some(arg),
            _ => {
                eprintln!("hello: unexpected argument {arg}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(mountpoint) = mountpoint else {
        eprintln!("hello: missing MOUNTPOINT\n{USAGE}");
        return ExitCode::from(2);
    };
    match run(&mountpoint, &options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("hello: {msg}");
            ExitCode::FAILURE
        }
    }
}
