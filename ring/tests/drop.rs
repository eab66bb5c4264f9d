//! Dropping a ring closes its descriptor and unmaps its memory. Alone in its binary so that
//! no other test opens descriptors or maps memory meanwhile.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use ringfuse_ring::{Builder, FixedBuffers, Sqe};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Lines of `/proc/self/maps` backed by the `io_uring` file (`anon_inode:[io_uring]`).
fn ring_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("io_uring"))
        .count()
}

#[test]
fn drop_closes_fd_and_unmaps() {
    let (fds, maps) = (open_fds(), ring_maps());
    for sqe128 in [false, true] {
        let mut ring = Builder::event_loop(64).sqe128(sqe128).build().unwrap();
        ring.register_buffers(FixedBuffers::new(4, 4096).unwrap())
            .unwrap();
        ring.push(&Sqe::nop()).unwrap();
        ring.submit_and_wait(1).unwrap();
        assert!(ring.next_completion().is_some());
        assert_eq!(open_fds(), fds + 1, "the ring holds exactly one descriptor");
        assert_eq!(ring_maps(), maps + 2, "rings + SQE array");
        drop(ring);
        assert_eq!(open_fds(), fds);
        assert_eq!(ring_maps(), maps);
    }
}
