//! Mounting through `fusermount3` (`std` only), for a process that may not call `mount(2)`.
//!
//! The protocol is libfuse's: a Unix socket pair, one end passed to `fusermount3 -o OPTS --
//! DIR` in `_FUSE_COMMFD`; fusermount3 (setuid root) checks that the user may mount there
//! with those options, mounts, sends the `/dev/fuse` fd back as `SCM_RIGHTS` and exits.
//! Unmounting is `fusermount3 -u -z -- DIR`. `auto_unmount` is not passed to it: ringfuse's
//! own watcher does that job for every mount (see `sys::spawn_unmount_watcher`), because
//! fusermount3's never unmounts a mount without `allow_other` before libfuse 3.15 (Debian 12
//! ships 3.14; libfuse commit 055478f), and would keep a fusermount3 process waiting.
//!
//! This is the one part of mounting that allocates (the child process, its arguments and
//! the text it prints on failure); it runs once per mount, never per request.

extern crate std;

use core::ffi::CStr;
use core::fmt::Write as _;
use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::string::String;
use std::vec::Vec;

use rustix::fd::{AsFd, OwnedFd};

use super::{FusermountFailure, FusermountReason, MountError, MountOptions, Text};
use crate::sys;

/// The environment variable that names the fusermount3 to use (a path), overriding the
/// search of `PATH`, `/usr/bin` and `/bin`.
pub const FUSERMOUNT_ENV: &str = "RINGFUSE_FUSERMOUNT";

/// What a mount made through fusermount3 keeps: the fusermount3 that unmounts it.
pub(super) struct Helper {
    program: PathBuf,
}

/// Finds fusermount3: `RINGFUSE_FUSERMOUNT`, else the first `fusermount3` in `PATH`, else
/// `/usr/bin/fusermount3` or `/bin/fusermount3`.
pub(super) fn program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(FUSERMOUNT_ENV) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("fusermount3"))
        .find(|p| p.is_file())
}

fn os(path: &CStr) -> &OsStr {
    OsStr::from_bytes(path.to_bytes())
}

/// Mounts `target` (canonical) through fusermount3 and returns the `/dev/fuse` fd.
pub(super) fn mount(
    target: &CStr,
    options: &MountOptions,
) -> Result<(OwnedFd, Helper), MountError> {
    let program = program().ok_or(MountError::NoFusermount)?;
    let opts = options.fusermount_opts()?;
    let (ours, theirs) = sys::comm_socketpair().map_err(MountError::Spawn)?;
    let mut cmd = Command::new(&program);
    cmd.arg("-o")
        .arg(&opts)
        .arg("--")
        .arg(os(target))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let fd_number = sys::pass_fd(&mut cmd, theirs.as_fd());
    cmd.env("_FUSE_COMMFD", OsString::from(fd_number.to_string()));
    let mut child = cmd.spawn().map_err(|e| spawn_error(&e))?;
    drop(theirs);
    let received = sys::recv_fd(ours.as_fd());
    let mut stderr = child.stderr.take();
    // fusermount3 has exited or is about to: its stderr ends.
    let mut text = Vec::new();
    if let Some(err) = stderr.as_mut() {
        let _ = err.read_to_end(&mut text);
    }
    let status = child.wait().ok().and_then(|s| s.code());
    match received {
        Ok(Some(fd)) => Ok((fd, Helper { program })),
        _ => Err(MountError::Fusermount(classify(&text, status))),
    }
}

fn spawn_error(e: &std::io::Error) -> MountError {
    if e.kind() == std::io::ErrorKind::NotFound {
        MountError::NoFusermount
    } else {
        MountError::Spawn(rustix::io::Errno::from_io_error(e).unwrap_or(rustix::io::Errno::IO))
    }
}

impl Helper {
    /// The fusermount3 that made the mount.
    pub(super) fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Unmounts `target` with `fusermount3 -u -z` (lazy: it disappears now, the kernel
    /// finishes when the last user is gone).
    pub(super) fn unmount(&self, target: &CStr) -> Result<(), MountError> {
        let output = Command::new(&self.program)
            .args(["-u", "-z", "--"])
            .arg(os(target))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| spawn_error(&e))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(MountError::Fusermount(classify(
                &output.stderr,
                output.status.code(),
            )))
        }
    }
}

/// Reads what fusermount3 printed into a cause.
fn classify(stderr: &[u8], status: Option<i32>) -> FusermountFailure {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.contains("unsafe option"))
        .unwrap_or("")
        .trim();
    // "/usr/bin/fusermount3: option ..." → "option ...".
    let line = match line.split_once(": ") {
        Some((program, rest)) if program.ends_with("fusermount3") => rest,
        _ => line,
    };
    let has = |s: &str| text.contains(s);
    let reason = if has("user_allow_other") {
        FusermountReason::AllowOtherNotAllowed
    } else if has("not owned by user") || has("no write access to mountpoint") {
        FusermountReason::MountPointNotOwned
    } else if has("too many FUSE filesystems mounted") {
        FusermountReason::MountLimit
    } else if has("fuse device") && has("not found") {
        FusermountReason::NoDevice
    } else if has("failed to open /dev/fuse") {
        FusermountReason::DeviceAccess
    } else if has("unknown option") {
        FusermountReason::UnknownOption
    } else if has("not mounted") || has("entry for") && has("not found in") {
        FusermountReason::NotMounted
    } else if has("Device or resource busy") {
        FusermountReason::Busy
    } else {
        FusermountReason::Other
    };
    let mut message = Text::new();
    let _ = message.write_str(line);
    FusermountFailure {
        reason,
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusermount_messages_name_their_cause() {
        let cases: [(&str, FusermountReason); 6] = [
            (
                "fusermount3: option allow_other only allowed if 'user_allow_other' is set in \
                 /etc/fuse.conf\n",
                FusermountReason::AllowOtherNotAllowed,
            ),
            (
                "fusermount3: mountpoint /mnt not owned by user\n",
                FusermountReason::MountPointNotOwned,
            ),
            (
                "fusermount3: too many FUSE filesystems mounted; mount_max=N can be set in \
                 /etc/fuse.conf\n",
                FusermountReason::MountLimit,
            ),
            (
                "fusermount3: failed to open /dev/fuse: Permission denied\n",
                FusermountReason::DeviceAccess,
            ),
            (
                "fusermount3: unknown option 'bogus'\n",
                FusermountReason::UnknownOption,
            ),
            ("something else\n", FusermountReason::Other),
        ];
        for (text, reason) in cases {
            let f = classify(text.as_bytes(), Some(1));
            assert_eq!(f.reason, reason, "{text}");
            let expected = text.trim();
            let expected = expected.strip_prefix("fusermount3: ").unwrap_or(expected);
            assert_eq!(f.message.as_str(), expected, "{text}");
        }
        // The warning about ignored options is not taken as the cause.
        let f = classify(
            b"fusermount3: unsafe option suid ignored\nfusermount3: mount failed: Invalid argument\n",
            Some(1),
        );
        assert_eq!(f.message.as_str(), "mount failed: Invalid argument");
    }
}
