//! Tests against the running kernel (Linux 6.18 on the development machines, as root).
//!
//! Style note: the house rule is `#![forbid(unsafe_code)]` in tests, but the builders that
//! point the kernel at test buffers are `unsafe fn`, so `unsafe` stays denied (workspace lint)
//! and is allowed per test function, each use with its `// SAFETY:` argument.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ringfuse_ring::{
    Builder, Cqe, Errno, FixedBuffers, IoringAsyncCancelFlags, IoringFeatureFlags,
    IoringFsyncFlags, IoringOp, IoringSetupFlags, IoringSqeFlags, IoringTimeoutFlags, PushError,
    Ring, Sqe, Target,
};
use rustix::event::PollFlags;
use rustix::fs::{AtFlags, CWD, FallocateFlags, Mode, OFlags, StatxFlags};

/// Turns a hang (a completion that never comes) into a failure: aborts the test binary
/// after 60 s. The whole binary normally runs in well under a second.
fn watchdog() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(60));
            eprintln!("watchdog: a ring test hung for 60 s");
            std::process::abort();
        });
    });
}

/// Reaps until `n` completions were seen, waiting through the ring as needed.
fn reap(ring: &mut Ring, n: usize) -> Vec<Cqe> {
    watchdog();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(c) = ring.next_completion() {
            out.push(c);
        }
        if out.len() < n {
            ring.submit_and_wait(1).unwrap();
        }
    }
    out
}

/// The completion with `user_data`.
fn by_ud(cqes: &[Cqe], ud: u64) -> Cqe {
    *cqes.iter().find(|c| c.user_data() == ud).unwrap()
}

/// A fresh temporary file path for this process.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ringfuse-ring-{}-{name}", std::process::id()))
}

/// Builders covering the code paths: no optional flag (SQ index array, no CQSIZE), the
/// event-loop preset (`DEFER_TASKRUN`, `NO_SQARRAY`), and `COOP_TASKRUN` with `TASKRUN_FLAG`.
fn flavours(entries: u32) -> [(&'static str, Builder); 3] {
    [
        ("plain", Builder::new(entries)),
        ("event_loop", Builder::event_loop(entries)),
        (
            "coop",
            Builder::new(entries)
                .coop_taskrun(true)
                .taskrun_flag(true)
                .submit_all(true),
        ),
    ]
}

#[test]
fn nop_batches_larger_than_the_ring() {
    watchdog();
    for (name, b) in flavours(32) {
        let mut ring = b.build().unwrap();
        assert_eq!(ring.sq_entries(), 32, "{name}");
        let total = 1000u64;
        let mut next = 0;
        let mut seen = BTreeSet::new();
        let mut enters = 0;
        while (seen.len() as u64) < total {
            while next < total {
                match ring.push(&Sqe::nop().user_data(next)) {
                    Ok(()) => next += 1,
                    Err(PushError::Full) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            ring.submit_and_wait(1).unwrap();
            enters += 1;
            while let Some(c) = ring.next_completion() {
                assert_eq!(c.res(), 0, "{name}");
                assert!(
                    seen.insert(c.user_data()),
                    "{name}: duplicate {}",
                    c.user_data()
                );
            }
        }
        assert_eq!(seen, (0..total).collect::<BTreeSet<_>>(), "{name}");
        // One enter per ring-full of SQEs, not one per SQE.
        assert!(enters <= 40, "{name}: {enters} enters for 1000 nops");
        assert_eq!(ring.cq_overflow(), 0);
        assert_eq!(ring.sq_dropped(), 0);
        assert_eq!(ring.next_completion(), None);
    }
}

#[test]
fn push_reports_full_and_submit_frees_slots() {
    let mut ring = Builder::event_loop(4).build().unwrap();
    for i in 0..4 {
        ring.push(&Sqe::nop().user_data(i)).unwrap();
    }
    assert_eq!(ring.push(&Sqe::nop()), Err(PushError::Full));
    assert_eq!(ring.sq_space_left(), 0);
    assert_eq!(ring.submit().unwrap(), 4);
    assert_eq!(ring.sq_space_left(), 4);
    assert_eq!(reap(&mut ring, 4).len(), 4);
    // Nothing pushed, nothing pending: no syscall, 0 submitted.
    assert_eq!(ring.submit().unwrap(), 0);
}

#[test]
#[allow(unsafe_code)]
fn pipe_write_then_read() {
    for (name, b) in flavours(8) {
        let mut ring = b.build().unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let msg = b"hello through the ring";
        let mut buf = [0u8; 64];
        // SAFETY: `msg` and `buf` outlive both completions, which `reap` collects before
        // either is touched again.
        let write = unsafe { Sqe::write(w.as_fd(), msg, 0).user_data(1) };
        // SAFETY: as above.
        let read = unsafe { Sqe::read(r.as_fd(), &mut buf, 0).user_data(2) };
        let sqes = [write, read];
        ring.push_all(&sqes).unwrap();
        let cqes = reap(&mut ring, 2);
        assert_eq!(by_ud(&cqes, 1).result(), Ok(msg.len() as u32), "{name}");
        assert_eq!(by_ud(&cqes, 2).result(), Ok(msg.len() as u32), "{name}");
        assert_eq!(&buf[..msg.len()], msg, "{name}");
    }
}

#[test]
#[allow(unsafe_code)]
fn file_write_fsync_read_fallocate_statx() {
    let path = temp_path("file");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let data = b"0123456789abcdef";
    // SAFETY: `data` outlives the completion reaped just below.
    let w = unsafe { Sqe::write(file.as_fd(), data, 4096) }
        .user_data(1)
        .flags(IoringSqeFlags::IO_LINK);
    let sync = Sqe::fsync(file.as_fd(), IoringFsyncFlags::DATASYNC).user_data(2);
    ring.push_all(&[w, sync]).unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(by_ud(&cqes, 1).res(), 16);
    assert_eq!(by_ud(&cqes, 2).res(), 0);
    // Read back through the ring and through std.
    let mut back = [0u8; 16];
    // SAFETY: `back` outlives the completion reaped just below.
    ring.push(&unsafe { Sqe::read(file.as_fd(), &mut back, 4096) }.user_data(3))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 16);
    assert_eq!(&back, data);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 4096 + 16);
    assert_eq!(&on_disk[4096..], data);
    // fallocate extends the file to 64 KiB.
    ring.push(&Sqe::fallocate(file.as_fd(), FallocateFlags::empty(), 0, 65536).user_data(4))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    assert_eq!(file.metadata().unwrap().len(), 65536);
    // statx through the ring sees the same size.
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut stx = rustix::fs::statx(CWD, "/", AtFlags::empty(), StatxFlags::BASIC_STATS).unwrap();
    stx.stx_size = 0;
    // SAFETY: `cpath` and `stx` outlive the completion reaped just below.
    let sqe = unsafe { Sqe::statx(CWD, &cpath, AtFlags::empty(), StatxFlags::SIZE, &mut stx) };
    ring.push(&sqe.user_data(5)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    assert_eq!(stx.stx_size, 65536);
    std::fs::remove_file(&path).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn openat_and_close_through_the_ring() {
    let path = temp_path("openat");
    std::fs::write(&path, b"xyz").unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `cpath` outlives the completion reaped just below.
    let open = unsafe { Sqe::openat(CWD, &cpath, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) };
    ring.push(&open.user_data(1)).unwrap();
    let cqe = reap(&mut ring, 1)[0];
    // SAFETY: the completion of an openat, taken once.
    let fd = unsafe { cqe.into_owned_fd() }.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(rustix::io::read(&fd, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"xyz");
    ring.push(&Sqe::close(fd).user_data(2)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    // A missing file is an errno, not a descriptor.
    let missing = CString::new("/nonexistent/ringfuse").unwrap();
    // SAFETY: `missing` outlives the completion reaped just below.
    let open = unsafe { Sqe::openat(CWD, &missing, OFlags::RDONLY, Mode::empty()) };
    ring.push(&open).unwrap();
    let cqe = reap(&mut ring, 1)[0];
    // SAFETY: the completion of an openat, taken once.
    assert_eq!(unsafe { cqe.into_owned_fd() }.err(), Some(Errno::NOENT));
    std::fs::remove_file(&path).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn readv_writev_round_trip() {
    let path = temp_path("vec");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let (a, b) = (b"scatter ".as_slice(), b"and gather".as_slice());
    let out = [IoSlice::new(a), IoSlice::new(b)];
    // SAFETY: `out` and the bytes it points to outlive the completion reaped below.
    ring.push(&unsafe { Sqe::writev(file.as_fd(), &out, 0) }.user_data(1))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 18);
    let (mut x, mut y) = ([0u8; 8], [0u8; 10]);
    let mut inv = [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)];
    // SAFETY: `inv`, `x` and `y` outlive the completion reaped below and are not touched
    // before it.
    ring.push(&unsafe { Sqe::readv(file.as_fd(), &mut inv, 0) }.user_data(2))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 18);
    assert_eq!(&x, a);
    assert_eq!(&y, b);
    std::fs::remove_file(&path).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn fixed_buffers_write_fixed_read_fixed() {
    let path = temp_path("fixed");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let mut bufs = FixedBuffers::new(2, 4096).unwrap();
    for (i, byte) in bufs.get_mut(0).unwrap().iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    assert!(bufs.get(2).is_none());
    ring.register_buffers(bufs).unwrap();
    assert_eq!(
        ring.register_buffers(FixedBuffers::new(1, 64).unwrap()),
        Err(Errno::BUSY)
    );
    let fixed = ring.fixed_buffers().unwrap();
    // SAFETY: buffer 0 is not written until the completion is reaped below.
    let w = unsafe { Sqe::write_fixed(file.as_fd(), fixed, 0, 0, 4096, 0) }.unwrap();
    // Ranges outside the buffer are refused before reaching the kernel.
    // SAFETY: refused, so nothing is submitted.
    assert!(unsafe { Sqe::write_fixed(file.as_fd(), fixed, 0, 1, 4096, 0) }.is_none());
    // SAFETY: as above.
    assert!(unsafe { Sqe::read_fixed(file.as_fd(), fixed, 2, 0, 1, 0) }.is_none());
    ring.push(&w.user_data(1)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 4096);
    let fixed = ring.fixed_buffers().unwrap();
    // SAFETY: buffer 1 is not accessed until the completion is reaped below.
    let r = unsafe { Sqe::read_fixed(file.as_fd(), fixed, 1, 0, 4096, 0) }.unwrap();
    ring.push(&r.user_data(2)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 4096);
    let fixed = ring.fixed_buffers().unwrap();
    assert_eq!(fixed.get(0).unwrap(), fixed.get(1).unwrap());
    assert_eq!(fixed.get(1).unwrap()[300], (300 % 251) as u8);
    let back = ring.unregister_buffers().unwrap().unwrap();
    assert_eq!(back.count(), 2);
    assert!(ring.unregister_buffers().unwrap().is_none());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn timeout_completes_with_etime() {
    for (name, b) in flavours(8) {
        let mut ring = b.build().unwrap();
        let start = Instant::now();
        let t = Sqe::timeout(Duration::from_millis(20), 0, IoringTimeoutFlags::empty());
        ring.push(&t.user_data(7)).unwrap();
        let c = reap(&mut ring, 1)[0];
        assert_eq!(c.user_data(), 7, "{name}");
        assert_eq!(c.result(), Err(Errno::TIME), "{name}");
        assert!(start.elapsed() >= Duration::from_millis(20), "{name}");
    }
}

#[test]
fn timeout_with_count_completes_after_other_completions() {
    let mut ring = Builder::event_loop(8).build().unwrap();
    let start = Instant::now();
    let t = Sqe::timeout(Duration::from_secs(10), 2, IoringTimeoutFlags::empty()).user_data(9);
    ring.push(&t).unwrap();
    ring.push(&Sqe::nop().user_data(1)).unwrap();
    ring.push(&Sqe::nop().user_data(2)).unwrap();
    let cqes = reap(&mut ring, 3);
    assert_eq!(by_ud(&cqes, 9).res(), 0);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
#[allow(unsafe_code)]
fn link_timeout_cancels_read_on_empty_pipe() {
    for (name, b) in flavours(8) {
        let mut ring = b.build().unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let mut buf = [0u8; 16];
        let start = Instant::now();
        // SAFETY: `buf` outlives the read's completion, reaped below.
        let read = unsafe { Sqe::read(r.as_fd(), &mut buf, 0) }
            .user_data(1)
            .flags(IoringSqeFlags::IO_LINK);
        let lt =
            Sqe::link_timeout(Duration::from_millis(20), IoringTimeoutFlags::empty()).user_data(2);
        ring.push_all(&[read, lt]).unwrap();
        let cqes = reap(&mut ring, 2);
        assert_eq!(by_ud(&cqes, 1).result(), Err(Errno::CANCELED), "{name}");
        assert_eq!(by_ud(&cqes, 2).result(), Err(Errno::TIME), "{name}");
        assert!(start.elapsed() >= Duration::from_millis(20), "{name}");
    }
}

#[test]
#[allow(unsafe_code)]
fn async_cancel_of_pending_pipe_read() {
    let mut ring = Builder::event_loop(8).build().unwrap();
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let mut buf = [0u8; 16];
    // SAFETY: `buf` outlives the read's completion, reaped below.
    ring.push(&unsafe { Sqe::read(r.as_fd(), &mut buf, 0) }.user_data(1))
        .unwrap();
    assert_eq!(ring.submit().unwrap(), 1);
    assert_eq!(
        ring.next_completion(),
        None,
        "an empty pipe cannot complete a read"
    );
    ring.push(&Sqe::async_cancel(1, IoringAsyncCancelFlags::empty()).user_data(2))
        .unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(by_ud(&cqes, 1).result(), Err(Errno::CANCELED));
    assert_eq!(by_ud(&cqes, 2).res(), 0);
    // Cancelling something that does not exist.
    ring.push(&Sqe::async_cancel(1234, IoringAsyncCancelFlags::empty()).user_data(3))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::NOENT));
}

#[test]
fn poll_add_on_pipe() {
    let mut ring = Builder::event_loop(8).build().unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    ring.push(&Sqe::poll_add(r.as_fd(), PollFlags::IN).user_data(1))
        .unwrap();
    ring.submit().unwrap();
    assert_eq!(ring.next_completion(), None);
    rustix::io::write(&w, b"x").unwrap();
    let c = reap(&mut ring, 1)[0];
    let ready = PollFlags::from_bits_retain(u16::try_from(c.res()).unwrap());
    assert!(ready.contains(PollFlags::IN), "{ready:?}");
}

#[test]
fn full_completion_queue_overflows_without_loss() {
    for (name, b) in flavours(8) {
        // 8 SQ entries, 16 CQ entries; 40 completions are posted before any is reaped.
        let mut ring = b.cq_entries(16).build().unwrap();
        assert!(ring.features().contains(IoringFeatureFlags::NODROP));
        assert_eq!(ring.cq_entries(), 16);
        for batch in 0..5u64 {
            for i in 0..8 {
                ring.push(&Sqe::nop().user_data(batch * 8 + i)).unwrap();
            }
            assert_eq!(ring.submit().unwrap(), 8, "{name}");
        }
        assert!(ring.cq_overflow_pending(), "{name}: overflow flag not set");
        assert_eq!(ring.cq_ready(), 16, "{name}");
        let mut got = Vec::new();
        for round in 0.. {
            assert!(round < 10, "{name}: overflowed completions never arrived");
            if got.len() == 40 {
                break;
            }
            while let Some(c) = ring.next_completion() {
                got.push(c.user_data());
            }
            // Flushes the kernel's overflow list into the freed slots.
            ring.submit().unwrap();
        }
        assert_eq!(
            got,
            (0..40).collect::<Vec<_>>(),
            "{name}: lost or reordered"
        );
        assert!(!ring.cq_overflow_pending(), "{name}");
        assert!(ring.overflow_flushes() >= 1, "{name}");
        assert_eq!(
            ring.cq_overflow(),
            0,
            "{name}: NODROP kernel lost completions"
        );
    }
}

#[test]
fn probe_answers_per_opcode() {
    let ring = Builder::new(4).build().unwrap();
    let p = ring.probe().unwrap();
    assert!(p.is_supported(IoringOp::Nop));
    assert!(p.is_supported(IoringOp::Read));
    assert!(p.is_supported(IoringOp::UringCmd));
    assert!(p.last_op() >= IoringOp::UringCmd as u8);
    assert!(!p.is_supported_raw(255));
    assert!(!p.is_supported_raw(p.last_op().saturating_add(1)));
}

#[test]
#[allow(unsafe_code)]
fn uring_cmd_on_a_pipe_is_refused() {
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let mut ring = Builder::event_loop(4).build().unwrap();
    // SAFETY: no memory is designated (addr 0, len 0); a pipe has no uring_cmd handler.
    let small = unsafe { Sqe::uring_cmd(r.as_fd(), 1, 0, 0, &[0; 16]) };
    ring.push(&small.user_data(1)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::OPNOTSUPP));
    // SAFETY: as above.
    let big = unsafe { Sqe::uring_cmd80(r.as_fd(), 1, 0, 0, &[0; 80]) };
    assert_eq!(ring.push(&big), Err(PushError::Sqe128Required));

    let mut ring = Builder::event_loop(4).sqe128(true).build().unwrap();
    ring.push(&big.user_data(2)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::OPNOTSUPP));
}

#[test]
#[allow(unsafe_code)]
fn sqe128_and_cqe32_ring() {
    watchdog();
    let mut ring = Builder::event_loop(8)
        .sqe128(true)
        .cqe32(true)
        .build()
        .unwrap();
    let granted = ring.setup_flags();
    assert!(granted.contains(IoringSetupFlags::SQE128 | IoringSetupFlags::CQE32));
    // 100 nops through 8 slots of 128 bytes, completions of 32 bytes.
    let mut seen = BTreeSet::new();
    let mut next = 0;
    while seen.len() < 100 {
        while next < 100 && ring.push(&Sqe::nop().user_data(next)).is_ok() {
            next += 1;
        }
        ring.submit_and_wait(1).unwrap();
        while let Some(c) = ring.next_completion() {
            assert_eq!(c.res(), 0);
            assert_eq!(c.big(), [0, 0]);
            assert!(seen.insert(c.user_data()));
        }
    }
    // Real I/O at the 128-byte stride too.
    let (r, w) = rustix::pipe::pipe().unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: the literal and `buf` outlive the completions reaped below.
    let write = unsafe { Sqe::write(w.as_fd(), b"sqe128", 0).user_data(1) };
    // SAFETY: as above.
    let read = unsafe { Sqe::read(r.as_fd(), &mut buf, 0).user_data(2) };
    let sqes = [write, read];
    ring.push_all(&sqes).unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(by_ud(&cqes, 2).res(), 6);
    assert_eq!(&buf[..6], b"sqe128");
}

#[test]
#[allow(unsafe_code)]
fn every_optional_flag_requested_and_ring_works() {
    let b = Builder::new(16)
        .sqe128(true)
        .cqe32(true)
        .cq_entries(64)
        .single_issuer(true)
        .defer_taskrun(true)
        .coop_taskrun(true)
        .taskrun_flag(true)
        .no_sqarray(true)
        .submit_all(true);
    let mut ring = b.build().unwrap();
    let granted = ring.setup_flags();
    println!("requested {:?}", b.requested_flags());
    println!("granted   {granted:?}");
    println!("features  {:?}", ring.features());
    assert!(b.requested_flags().contains(granted));
    assert!(granted.contains(IoringSetupFlags::SQE128 | IoringSetupFlags::CQE32));
    assert!(ring.features().contains(IoringFeatureFlags::SINGLE_MMAP));
    let (r, w) = rustix::pipe::pipe().unwrap();
    let mut buf = [0u8; 4];
    // SAFETY: `buf` outlives the completion reaped below.
    ring.push(&unsafe { Sqe::read(r.as_fd(), &mut buf, 0) }.user_data(1))
        .unwrap();
    ring.push(&Sqe::nop().user_data(2)).unwrap();
    ring.submit().unwrap();
    rustix::io::write(&w, b"ok!!").unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(by_ud(&cqes, 1).res(), 4);
    assert_eq!(&buf, b"ok!!");
}

#[test]
#[allow(unsafe_code)]
fn registered_files_through_fixed_target() {
    let mut ring = Builder::event_loop(8).build().unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    ring.register_files(&[r.as_fd(), w.as_fd()]).unwrap();
    let mut buf = [0u8; 8];
    // SAFETY: the literal and `buf` outlive the completions reaped below.
    let write = unsafe { Sqe::write(Target::Fixed(1), b"fixed", 0).user_data(1) };
    // SAFETY: as above.
    let read = unsafe { Sqe::read(Target::Fixed(0), &mut buf, 0).user_data(2) };
    let sqes = [write, read];
    assert!(sqes[0].get_flags().contains(IoringSqeFlags::FIXED_FILE));
    ring.push_all(&sqes).unwrap();
    let cqes = reap(&mut ring, 2);
    assert_eq!(by_ud(&cqes, 1).res(), 5);
    assert_eq!(by_ud(&cqes, 2).res(), 5);
    assert_eq!(&buf[..5], b"fixed");
    // An index past the table is an error, not a crash.
    ring.push(&Sqe::fsync(Target::Fixed(9), IoringFsyncFlags::empty()).user_data(3))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::BADF));
    ring.push(&Sqe::close_fixed(1).user_data(4)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    ring.unregister_files().unwrap();
    assert_eq!(ring.unregister_files(), Err(Errno::NXIO));
}

/// A fresh temporary directory for this process, opened as a directory descriptor.
fn temp_dir(name: &str) -> (PathBuf, rustix::fd::OwnedFd) {
    let path = temp_path(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir(&path).unwrap();
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    (path, fd)
}

#[test]
#[allow(unsafe_code)]
fn openat2_resolve_beneath_confines_the_lookup() {
    use rustix::fs::ResolveFlags;
    use rustix::io_uring::open_how;
    let (dir, dfd) = temp_dir("openat2");
    std::fs::write(dir.join("inside"), b"in").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../x", dir.join("up")).unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let mut how = open_how::zeroed();
    how.flags = u64::from((OFlags::RDONLY | OFlags::CLOEXEC).bits());
    how.resolve = ResolveFlags::BENEATH;
    let cases: [(&std::ffi::CStr, Result<(), Errno>); 5] = [
        (c"inside", Ok(())),
        (c"..", Err(Errno::XDEV)),
        (c"abs", Err(Errno::XDEV)),
        (c"up", Err(Errno::XDEV)),
        (c"missing", Err(Errno::NOENT)),
    ];
    for (k, (name, want)) in cases.iter().enumerate() {
        // SAFETY: `name` (a literal) and `how` outlive the completion reaped just below.
        let sqe = unsafe { Sqe::openat2(dfd.as_fd(), name, &how) };
        ring.push(&sqe.user_data(k as u64)).unwrap();
        let cqe = reap(&mut ring, 1)[0];
        // SAFETY: the completion of an openat2, taken once.
        let got = unsafe { cqe.into_owned_fd() };
        assert_eq!(got.as_ref().map(drop).map_err(|e| *e), *want, "{name:?}");
        if let Ok(fd) = got {
            let mut buf = [0u8; 4];
            assert_eq!(rustix::io::read(&fd, &mut buf).unwrap(), 2);
        }
    }
    // O_PATH | O_NOFOLLOW gives the symlink itself.
    how.flags = u64::from((OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC).bits());
    // SAFETY: as above.
    let sqe = unsafe { Sqe::openat2(dfd.as_fd(), c"abs", &how) };
    ring.push(&sqe.user_data(9)).unwrap();
    // SAFETY: as above.
    let fd = unsafe { reap(&mut ring, 1)[0].into_owned_fd() }.unwrap();
    // statx of that O_PATH descriptor through the ring (AT_EMPTY_PATH) sees the link.
    let mut stx = rustix::fs::statx(CWD, "/", AtFlags::empty(), StatxFlags::BASIC_STATS).unwrap();
    let flags = AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW;
    // SAFETY: the literal and `stx` outlive the completion reaped just below.
    let sqe = unsafe { Sqe::statx(fd.as_fd(), c"", flags, StatxFlags::BASIC_STATS, &mut stx) };
    ring.push(&sqe.user_data(10)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    assert_eq!(
        rustix::fs::FileType::from_raw_mode(u32::from(stx.stx_mode)),
        rustix::fs::FileType::Symlink
    );
    assert_eq!(stx.stx_size, "/etc/hostname".len() as u64);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn namespace_operations_through_the_ring() {
    let (dir, dfd) = temp_dir("namespace");
    let d = dfd.as_fd();
    std::fs::write(dir.join("file"), b"data").unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let mut run = |sqe: Sqe| {
        ring.push(&sqe.user_data(1)).unwrap();
        reap(&mut ring, 1)[0].result()
    };
    // SAFETY: the paths are literals, valid for the whole program, and each completion is
    // reaped by `run` before the next SQE is built (so for every block below).
    let made = run(unsafe { Sqe::mkdirat(d, c"sub", Mode::from_raw_mode(0o750)) });
    assert_eq!(made, Ok(0));
    let st = std::fs::metadata(dir.join("sub")).unwrap();
    assert!(st.is_dir());
    // The umask may take bits away, never add any.
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o777 & !0o750,
        0
    );
    // SAFETY: as above.
    let again = run(unsafe { Sqe::mkdirat(d, c"sub", Mode::from_raw_mode(0o700)) });
    assert_eq!(again, Err(Errno::EXIST));
    // SAFETY: as above.
    let linked = run(unsafe { Sqe::symlinkat(c"file", d, c"sub/ln") });
    assert_eq!(linked, Ok(0));
    assert_eq!(
        std::fs::read_link(dir.join("sub/ln")).unwrap(),
        PathBuf::from("file")
    );
    // SAFETY: as above.
    let link = run(unsafe { Sqe::linkat(d, c"file", d, c"hard", AtFlags::empty()) });
    assert_eq!(link, Ok(0));
    assert_eq!(std::fs::read(dir.join("hard")).unwrap(), b"data");
    // linkat of a descriptor (AT_EMPTY_PATH; needs CAP_DAC_READ_SEARCH, else ENOENT).
    let fd = rustix::fs::openat(d, "file", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    // SAFETY: as above.
    let by_fd = run(unsafe { Sqe::linkat(fd.as_fd(), c"", d, c"byfd", AtFlags::EMPTY_PATH) });
    if by_fd == Err(Errno::NOENT) {
        eprintln!("linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; that case skipped");
    } else {
        assert_eq!(by_fd, Ok(0));
        assert_eq!(std::fs::read(dir.join("byfd")).unwrap(), b"data");
    }
    // SAFETY: as above.
    let renamed = run(unsafe {
        Sqe::renameat(
            d,
            c"hard",
            d,
            c"sub/moved",
            rustix::fs::RenameFlags::empty(),
        )
    });
    assert_eq!(renamed, Ok(0));
    assert!(dir.join("sub/moved").exists() && !dir.join("hard").exists());
    // SAFETY: as above.
    let noreplace = run(unsafe {
        Sqe::renameat(
            d,
            c"file",
            d,
            c"sub/moved",
            rustix::fs::RenameFlags::NOREPLACE,
        )
    });
    assert_eq!(noreplace, Err(Errno::EXIST));
    // SAFETY: as above.
    let not_empty = run(unsafe { Sqe::unlinkat(d, c"sub", AtFlags::REMOVEDIR) });
    assert_eq!(not_empty, Err(Errno::NOTEMPTY));
    for name in [c"sub/moved", c"sub/ln"] {
        // SAFETY: as above.
        let unlinked = run(unsafe { Sqe::unlinkat(d, name, AtFlags::empty()) });
        assert_eq!(unlinked, Ok(0));
    }
    // SAFETY: as above.
    let removed = run(unsafe { Sqe::unlinkat(d, c"sub", AtFlags::REMOVEDIR) });
    assert_eq!(removed, Ok(0));
    assert!(!dir.join("sub").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ftruncate_through_the_ring() {
    let path = temp_path("ftruncate");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    ring.push(&Sqe::ftruncate(file.as_fd(), 12345).user_data(1))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    assert_eq!(file.metadata().unwrap().len(), 12345);
    ring.push(&Sqe::ftruncate(file.as_fd(), 7).user_data(2))
        .unwrap();
    assert_eq!(reap(&mut ring, 1)[0].res(), 0);
    assert_eq!(file.metadata().unwrap().len(), 7);
    // A read-only descriptor cannot be truncated.
    let ro = File::open(&path).unwrap();
    ring.push(&Sqe::ftruncate(ro.as_fd(), 0).user_data(3))
        .unwrap();
    assert!(reap(&mut ring, 1)[0].result().is_err());
    std::fs::remove_file(&path).unwrap();
}

#[test]
#[allow(unsafe_code)]
fn getxattr_and_setxattr_through_the_ring() {
    let path = temp_path("xattr");
    std::fs::write(&path, b"x").unwrap();
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut ring = Builder::event_loop(8).build().unwrap();
    let value = b"ring value";
    // SAFETY: `cpath`, the literal name and `value` outlive the completion reaped below.
    let set = unsafe {
        Sqe::setxattr(
            &cpath,
            c"user.ringfuse",
            value,
            rustix::fs::XattrFlags::CREATE,
        )
    };
    ring.push(&set.user_data(1)).unwrap();
    let res = reap(&mut ring, 1)[0].result();
    if res == Err(Errno::OPNOTSUPP) {
        eprintln!("the temporary directory's filesystem has no user xattrs; skipped");
        std::fs::remove_file(&path).unwrap();
        return;
    }
    assert_eq!(res, Ok(0));
    // The size query, then the value.
    let mut none = [0u8; 0];
    // SAFETY: as above; `none` is empty.
    let size = unsafe { Sqe::getxattr(&cpath, c"user.ringfuse", &mut none) };
    ring.push(&size.user_data(2)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Ok(value.len() as u32));
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is not touched until the completion is reaped below.
    let get = unsafe { Sqe::getxattr(&cpath, c"user.ringfuse", &mut buf) };
    ring.push(&get.user_data(3)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Ok(value.len() as u32));
    assert_eq!(&buf[..value.len()], value);
    // CREATE on an existing attribute, and a missing one.
    // SAFETY: as above.
    let again = unsafe {
        Sqe::setxattr(
            &cpath,
            c"user.ringfuse",
            value,
            rustix::fs::XattrFlags::CREATE,
        )
    };
    ring.push(&again.user_data(4)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::EXIST));
    // SAFETY: as above.
    let missing = unsafe { Sqe::getxattr(&cpath, c"user.none", &mut buf) };
    ring.push(&missing.user_data(5)).unwrap();
    assert_eq!(reap(&mut ring, 1)[0].result(), Err(Errno::NODATA));
    std::fs::remove_file(&path).unwrap();
}
