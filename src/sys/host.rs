//! What this machine offers: the CPUs a process may run on, the possible CPUs (one
//! FUSE-over-io_uring queue each), and the kernel's FUSE-over-io_uring switch.

use rustix::fs::{Mode, OFlags};
#[cfg(feature = "std")]
use rustix::io;

use super::parse_dec;

/// The CPUs this process may run on, in order.
#[cfg(feature = "std")]
pub(crate) fn allowed_cpus() -> io::Result<std::vec::Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

/// Pins the calling thread to `cpu`.
#[cfg(feature = "std")]
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
}

/// Whether the kernel's FUSE-over-io_uring switch is on: `None` if the parameter does not
/// exist (a kernel without it).
pub(crate) fn uring_enabled() -> Option<bool> {
    let fd = rustix::fs::open(
        c"/sys/module/fuse/parameters/enable_uring",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 8];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    Some(matches!(buf.get(..n)?.first(), Some(b'Y' | b'y' | b'1')))
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. "0-1"): the
/// kernel makes one FUSE-over-io_uring queue for each, and all must get an entry.
pub(crate) fn possible_cpus() -> Option<usize> {
    let fd = rustix::fs::open(
        c"/sys/devices/system/cpu/possible",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 256];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    parse_cpu_list(buf.get(..n)?)
}

/// The highest CPU number + 1 in a kernel CPU list ("0-3,8-11" → 12).
pub(crate) fn parse_cpu_list(list: &[u8]) -> Option<usize> {
    let mut max = None;
    for part in list.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let upper = part.rsplit(|&b| b == b'-').next()?;
        let n = usize::try_from(parse_dec(upper)?).ok()?;
        max = Some(max.map_or(n, |m: usize| m.max(n)));
    }
    max.map(|m| m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list(b"0-1\n"), Some(2));
        assert_eq!(parse_cpu_list(b"0"), Some(1));
        assert_eq!(parse_cpu_list(b"0-3,8-11\n"), Some(12));
        assert_eq!(parse_cpu_list(b""), None);
        assert_eq!(parse_cpu_list(b"x"), None);
    }
}
