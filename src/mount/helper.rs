//! Being your own mount helper (`std` only): `mount -t fuse.NAME SOURCE DIR -o OPTS` and
//! `/etc/fstab` lines of type `fuse.NAME`.
//!
//! mount(8) runs `/sbin/mount.fuse.NAME SOURCE DIR [-sfnvrw] [-o OPTS]` and expects it to
//! return 0 once `DIR` is mounted, non-zero otherwise. A filesystem binary installed (or
//! symlinked) under that name can be that helper:
//!
//! 1. [`invoked_as`] tells, from `argv[0]`, that it runs as `mount.fuse.NAME`;
//! 2. [`HelperArgs::parse`] reads mount(8)'s arguments;
//! 3. [`remount`] handles `-o remount,...` (the kernel's per-mount flags, as root);
//! 4. [`spawn_detached`] starts the program again as the server — in its own session,
//!    stdin and stdout on `/dev/null`, stderr still the helper's, so its error messages
//!    reach the terminal — and waits until the server reports that the mount is served
//!    (exit 0) or dies first (the failure status it gives);
//! 5. the server, started with the arguments the program chose, mounts as usual;
//!    [`Session::new`](crate::Session::new) and [`run_per_cpu`](crate::run_per_cpu) call
//!    [`notify_ready`] once INIT is answered, which lets the helper go and points the
//!    server's stdout and stderr at `/dev/null`.
//!
//! ```no_run
//! use std::ffi::OsString;
//! use std::process::ExitCode;
//! use ringfuse::mount::helper::{self, HelperArgs};
//!
//! fn main() -> ExitCode {
//!     if let Some(name) = helper::invoked_as() {
//!         let args = match HelperArgs::parse(&name, std::env::args_os().skip(1)) {
//!             Ok(args) => args,
//!             Err(e) => { eprintln!("{e}"); return ExitCode::from(helper::EXIT_USAGE) }
//!         };
//!         let result = if args.remount {
//!             helper::remount(&args)
//!         } else {
//!             // The server's own command line: here `myfs DIR -o OPTS`.
//!             let server: Vec<OsString> = vec![
//!                 args.mountpoint.clone().into(),
//!                 "-o".into(),
//!                 args.server_options().into(),
//!             ];
//!             helper::spawn_detached("myfs", &server)
//!         };
//!         return match result {
//!             Ok(()) => ExitCode::SUCCESS,
//!             Err(e) => { eprintln!("mount.fuse.myfs: {e}"); ExitCode::from(e.exit_code()) }
//!         };
//!     }
//!     // ... the normal command line: mount and serve ...
//!     ExitCode::SUCCESS
//! }
//! ```

extern crate std;

use core::fmt;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::string::String;
use std::vec::Vec;

use rustix::fd::AsFd as _;
use rustix::io::Errno;

use super::{MountOptions, split_entries};
use crate::sys;

/// mount(8)'s exit status for a bad invocation or missing permission.
pub const EXIT_USAGE: u8 = 1;
/// mount(8)'s exit status for a mount failure.
pub const EXIT_FAILURE: u8 = 32;

/// The environment variable that passes the readiness pipe to the server:
/// `FD,HELPER_PID`.
const READY_ENV: &str = "RINGFUSE_HELPER_READY";

/// Options that are mount(8)'s or fstab's own, never the filesystem's: dropped.
const MOUNT8_ONLY: [&str; 10] = [
    "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail",
];

/// `NAME` if the program runs as `mount.fuse.NAME` (or `mount.fuse3.NAME`), from the file
/// name of `argv[0]`.
pub fn invoked_as() -> Option<String> {
    let arg0 = std::env::args_os().next()?;
    name_from_arg0(&arg0)
}

fn name_from_arg0(arg0: &OsStr) -> Option<String> {
    let file = std::path::Path::new(arg0).file_name()?.to_str()?;
    let name = file
        .strip_prefix("mount.fuse.")
        .or_else(|| file.strip_prefix("mount.fuse3."))?;
    (!name.is_empty()).then(|| name.into())
}

/// What mount(8) passes to a helper: `SOURCE DIR [-sfnvrw] [-o OPTS] [-t TYPE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HelperArgs {
    /// The `NAME` of `mount.fuse.NAME`: the server gets `subtype=NAME`, so that the mount's
    /// type (`fuse.NAME`) leads mount(8) back to this helper for a remount.
    pub name: String,
    /// The "device": for a FUSE filesystem, a name (or what the filesystem takes, such as
    /// a directory to mirror).
    pub source: OsString,
    /// The mount point, as given.
    pub mountpoint: PathBuf,
    /// Every `-o` option, split at unescaped commas, in order (`-r`/`-w` add `ro`/`rw`).
    pub options: Vec<String>,
    /// `-o remount` was among them.
    pub remount: bool,
    /// `-f`: pretend (do nothing, succeed).
    pub fake: bool,
    /// `-v`: verbose.
    pub verbose: bool,
}

impl HelperArgs {
    /// Parses the arguments after `argv[0]` of the helper `mount.fuse.NAME`. `-s` (sloppy),
    /// `-n` (no mtab) and `-t TYPE` are accepted and have no effect.
    ///
    /// # Errors
    /// [`HelperError::Usage`] for a missing SOURCE or DIR, an extra argument, an unknown
    /// flag, or an argument that is not UTF-8 where text is needed.
    pub fn parse(
        name: &str,
        args: impl IntoIterator<Item = OsString>,
    ) -> Result<Self, HelperError> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let (mut fake, mut verbose) = (false, false);
        let mut args = args.into_iter();
        let push_opts = |options: &mut Vec<String>, text: &OsStr| -> Result<(), HelperError> {
            let text = text
                .to_str()
                .ok_or(HelperError::Usage("-o options must be UTF-8"))?;
            options.extend(
                split_entries(text)
                    .filter(|e| !e.is_empty())
                    .map(String::from),
            );
            Ok(())
        };
        while let Some(arg) = args.next() {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str());
            match bytes {
                b"-o" => push_opts(
                    &mut options,
                    &args.next().ok_or(HelperError::Usage("-o needs a value"))?,
                )?,
                b"-t" => {
                    args.next().ok_or(HelperError::Usage("-t needs a value"))?;
                }
                [b'-', b'o', rest @ ..] => {
                    push_opts(&mut options, std::os::unix::ffi::OsStrExt::from_bytes(rest))?;
                }
                [b'-', flags @ ..] if !flags.is_empty() => {
                    for flag in flags {
                        match flag {
                            b's' | b'n' => {}
                            b'f' => fake = true,
                            b'v' => verbose = true,
                            b'r' => options.push("ro".into()),
                            b'w' => options.push("rw".into()),
                            _ => {
                                return Err(HelperError::Usage(
                                    "unknown flag (known: -sfnvrw -o -t)",
                                ));
                            }
                        }
                    }
                }
                _ => positional.push(arg),
            }
        }
        let mut positional = positional.into_iter();
        let (Some(source), Some(dir)) = (positional.next(), positional.next()) else {
            return Err(HelperError::Usage(
                "usage: mount.fuse.NAME SOURCE DIR [-sfnvrw] [-o OPTIONS]",
            ));
        };
        if positional.next().is_some() {
            return Err(HelperError::Usage("extra argument after SOURCE DIR"));
        }
        let remount = options.iter().any(|o| o == "remount");
        Ok(Self {
            name: name.into(),
            source,
            mountpoint: dir.into(),
            options,
            remount,
            fake,
            verbose,
        })
    }

    /// The options for the server, as one `-o` string (commas inside values escaped as
    /// they came): every option but mount(8)'s own (`defaults`, `auto`, `noauto`, `user`,
    /// `users`, `nouser`, `owner`, `group`, `_netdev`, `nofail`, `remount`, `comment=…`,
    /// `x-…`), with `fsname=SOURCE` and `subtype=NAME` first (an `fsname=` or `subtype=`
    /// among them wins, coming later). What
    /// [`MountOptions::parse_opts`] does not know (`size=1G`, say) is the filesystem's to
    /// take out before it calls that.
    pub fn server_options(&self) -> String {
        let mut out = String::from("fsname=");
        for c in self.source.to_string_lossy().chars() {
            if matches!(c, ',' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        if !self.name.is_empty() {
            out.push_str(",subtype=");
            out.push_str(&self.name);
        }
        for option in &self.options {
            let name = option.split('=').next().unwrap_or_default();
            if MOUNT8_ONLY.contains(&name)
                || name == "remount"
                || name == "comment"
                || name.starts_with("x-")
            {
                continue;
            }
            out.push(',');
            out.push_str(option);
        }
        out
    }
}

/// Applies `-o remount,...` to the mount at `args.mountpoint`: the per-mount flags (`ro`/`rw`,
/// `nosuid`, `nodev`, `noexec`, `sync`, `dirsync`, the atime family) through `mount(2)` with
/// `MS_REMOUNT`; options not given keep ringfuse's defaults (`rw,nosuid,nodev,relatime`),
/// as mount(8) passes the whole set again. Every other option (the filesystem's own, `size=`
/// say, and FUSE's `allow_other`, `max_read=`, ...) cannot change on a live FUSE mount and
/// is ignored, as the kernel ignores them on a remount.
///
/// # Errors
/// [`HelperError::Remount`]: EPERM if not root (fusermount3 has no remount), EINVAL if it
/// is not a mount point.
pub fn remount(args: &HelperArgs) -> Result<(), HelperError> {
    let mut options = MountOptions::new();
    for option in &args.options {
        // Flags it knows change `options`; anything else is ignored (see above).
        let _ = options.set_flag(option);
    }
    let dir = args.mountpoint.as_os_str();
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir))
        .map_err(|_| HelperError::Usage("the mount point holds a NUL byte"))?;
    sys::remount(&path, options.flags()).map_err(HelperError::Remount)
}

/// Starts this program (the file `/proc/self/exe` names, with `argv[0]` = `argv0`) with `args` as a detached server
/// and waits until it has mounted and answered INIT (its [`notify_ready`]).
///
/// The server runs in a new session (no controlling terminal: Ctrl-C in the terminal does
/// not reach it), with stdin and stdout on `/dev/null` and the helper's stderr until it is
/// ready. It is not waited for afterwards: it serves until unmounted.
///
/// # Errors
/// [`HelperError::Spawn`] if it cannot be started, [`HelperError::Server`] with its exit
/// status if it ended before the mount was ready (its own messages are on stderr already).
pub fn spawn_detached(argv0: impl AsRef<OsStr>, args: &[OsString]) -> Result<(), HelperError> {
    let (read, write) = sys::pipe().map_err(HelperError::Spawn)?;
    // The real path, not /proc/self/exe, so that the server's process name (`comm`) is the
    // binary's own, as `ps` and `pkill NAME` expect.
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let mut cmd = Command::new(exe);
    std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    let fd = sys::pass_fd(&mut cmd, write.as_fd());
    cmd.env(READY_ENV, std::format!("{fd},{}", std::process::id()));
    sys::detach_on_exec(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| HelperError::Spawn(Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    drop(write);
    if let Ok(true) = sys::read_byte(read.as_fd()) {
        return Ok(());
    }
    let status = child.wait().ok().and_then(|s| s.code());
    Err(HelperError::Server(status))
}

/// Tells the [`spawn_detached`] helper that started this process, if any, that the mount
/// is served, and points stdout and stderr at `/dev/null` (the helper's terminal is not the
/// server's). Does nothing the second time, or in a process the helper did not start (the
/// environment names the helper's pid, which must be our parent). The session calls it
/// after INIT; a server with its own loop calls it when it is ready.
pub fn notify_ready() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let Some(value) = std::env::var_os(READY_ENV) else {
            return;
        };
        let Some((fd, pid)) = value.to_str().and_then(|v| v.split_once(',')) else {
            return;
        };
        let (Ok(fd), Ok(pid)) = (fd.parse::<i32>(), pid.parse::<u32>()) else {
            return;
        };
        let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        if u32::try_from(parent).ok() != Some(pid) {
            return;
        }
        let _ = sys::silence_stdout_stderr();
        let _ = sys::notify_pipe(fd);
    });
}

/// Why the helper failed; [`exit_code`](Self::exit_code) is mount(8)'s status for it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperError {
    /// Bad arguments.
    Usage(&'static str),
    /// The server could not be started (the errno).
    Spawn(Errno),
    /// The server ended before the mount was ready, with this exit status (`None`: killed
    /// by a signal).
    Server(Option<i32>),
    /// `mount(2)` with `MS_REMOUNT` failed.
    Remount(Errno),
}

impl HelperError {
    /// [`EXIT_USAGE`] for bad arguments and missing permission, else [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Remount(Errno::PERM) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(what) => f.write_str(what),
            Self::Spawn(e) => write!(f, "cannot start the server: {e}"),
            Self::Server(Some(code)) => write!(
                f,
                "the server exited with status {code} before the mount was ready (its \
                 message is above)"
            ),
            Self::Server(None) => {
                f.write_str("the server was killed by a signal before the mount was ready")
            }
            Self::Remount(Errno::PERM) => f.write_str(
                "remount refused: only root can remount (fusermount3 cannot remount: \
                 unmount and mount again)",
            ),
            Self::Remount(e) => write!(f, "remount failed: {e} (is it mounted?)"),
        }
    }
}

impl core::error::Error for HelperError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<HelperArgs, HelperError> {
        HelperArgs::parse("memfs", v.iter().map(OsString::from))
    }

    #[test]
    fn program_names() {
        assert_eq!(
            name_from_arg0(OsStr::new("/sbin/mount.fuse.memfs")).as_deref(),
            Some("memfs")
        );
        assert_eq!(
            name_from_arg0(OsStr::new("mount.fuse3.x")).as_deref(),
            Some("x")
        );
        assert_eq!(name_from_arg0(OsStr::new("memfs")), None);
        assert_eq!(name_from_arg0(OsStr::new("mount.fuse.")), None);
    }

    #[test]
    fn mount8_arguments() {
        let a = parse(&["memfs", "/mnt", "-o", "rw,size=1G,allow_other", "-n"]).unwrap();
        assert_eq!(a.source, "memfs");
        assert_eq!(a.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(a.options, ["rw", "size=1G", "allow_other"]);
        assert!(!a.remount && !a.fake);
        assert_eq!(
            a.server_options(),
            "fsname=memfs,subtype=memfs,rw,size=1G,allow_other"
        );
        let a = parse(&["-sv", "src,x", "/m", "-oremount,ro", "-r"]).unwrap();
        assert!(a.remount && a.verbose);
        assert_eq!(a.options, ["remount", "ro", "ro"]);
        assert_eq!(a.server_options(), r"fsname=src\,x,subtype=memfs,ro,ro");
        let a = parse(&[
            "s",
            "/m",
            "-o",
            "defaults,noauto,x-systemd.automount,fsname=n,_netdev",
        ])
        .unwrap();
        assert_eq!(a.server_options(), "fsname=s,subtype=memfs,fsname=n");
        assert!(parse(&["s"]).is_err());
        assert!(parse(&["s", "/m", "/x"]).is_err());
        assert!(parse(&["s", "/m", "-q"]).is_err());
        assert!(parse(&["s", "/m", "-o"]).is_err());
        assert!(parse(&["s", "/m", "-f"]).unwrap().fake);
    }
}
