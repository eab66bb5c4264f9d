//! FUSE_INIT negotiation (fuse-protocol.md §2): what the session answers, from what the
//! kernel offered, what the configuration allows and what the filesystem asked for.

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::kernel::{
    FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MIN_READ_BUFFER, fuse_init_in,
    fuse_init_out,
};
use crate::api::fs::InitConfig;

/// The kernel's page size as FUSE counts it (`max_pages` is in 4 KiB pages on every
/// architecture Linux FUSE supports with io_uring; `PAGE_SIZE` elsewhere is read at start).
pub(crate) const PAGE: u32 = 4096;

/// The most pages a request may carry without raising `/proc/sys/fs/fuse/max_pages_limit`
/// (256 = 1 MiB, the kernel's default limit).
pub(crate) const MAX_PAGES_LIMIT: u32 = 256;

/// INIT flags the session asks for on every filesystem's behalf: none of them needs
/// anything from the filesystem (fuse-protocol.md §2.3).
pub(crate) const DEFAULT_WANT: InitFlags = InitFlags(
    InitFlags::ASYNC_READ.0
        | InitFlags::BIG_WRITES.0
        | InitFlags::AUTO_INVAL_DATA.0
        | InitFlags::MAX_PAGES.0
        | InitFlags::PARALLEL_DIROPS.0
        | InitFlags::ABORT_ERROR.0
        | InitFlags::ASYNC_DIO.0
        | InitFlags::INIT_EXT.0,
);

/// Flags the session never lets through, whatever the filesystem asks: they change the
/// wire format or the kernel's expectations in ways the session does not implement
/// (extension blocks, resent requests, DAX, the native transport — which the transport
/// layer sets itself).
pub(crate) const REFUSED: InitFlags = InitFlags(
    InitFlags::SECURITY_CTX.0
        | InitFlags::CREATE_SUPP_GROUP.0
        | InitFlags::HAS_INODE_DAX.0
        | InitFlags::MAP_ALIGNMENT.0
        | InitFlags::HAS_RESEND.0
        | InitFlags::OVER_IO_URING.0
        | InitFlags::REQUEST_TIMEOUT.0
        | InitFlags::INIT_RESERVED.0,
);

/// What INIT settled, for the rest of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The kernel's protocol minor.
    pub kernel_minor: u32,
    /// The minor the session answered.
    pub minor: u32,
    /// The flags in force (answered ∩ offered).
    pub flags: InitFlags,
    /// Largest WRITE payload.
    pub max_write: u32,
    /// Largest request in pages.
    pub max_pages: u16,
    /// The readahead window answered.
    pub max_readahead: u32,
}

impl Negotiated {
    /// Whether `flag` was agreed.
    pub fn has(&self, flag: InitFlags) -> bool {
        self.flags.contains(flag)
    }
}

/// Why INIT could not be answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitOutcome {
    /// Answer with this and go on.
    Reply(fuse_init_out, Negotiated),
    /// The kernel's major is newer: answer `{7, 45}` only and wait for another INIT.
    VersionOnly(fuse_init_out),
    /// Answer with an error: the kernel is too old (EPROTO) or the filesystem refused.
    Fail(Errno),
}

/// The size of the buffer a request of `max_write` bytes needs: the kernel refuses reads
/// smaller than `max(8192, 80 + max_write)`; SETXATTR values up to 64 KiB (plus name) must
/// fit too. Rounded up to whole pages.
pub(crate) const fn request_buffer_size(max_write: u32) -> usize {
    let need = max_write as usize + 4096;
    let need = if need < FUSE_MIN_READ_BUFFER {
        FUSE_MIN_READ_BUFFER
    } else {
        need
    };
    let need = if need < 65536 + 4096 {
        65536 + 4096
    } else {
        need
    };
    need.div_ceil(PAGE as usize) * PAGE as usize
}

/// Clamps a configured `max_write` to what a request can carry: at least one page, at
/// most `MAX_PAGES_LIMIT` pages, a whole number of pages.
pub(crate) const fn clamp_max_write(max_write: u32) -> u32 {
    let pages = max_write.div_ceil(PAGE);
    let pages = if pages == 0 {
        1
    } else if pages > MAX_PAGES_LIMIT {
        MAX_PAGES_LIMIT
    } else {
        pages
    };
    pages * PAGE
}

/// Works out the answer to `init`. `configure` is the filesystem's
/// [`init`](crate::Filesystem::init) hook; `max_write` the session's buffer limit;
/// `transport` the flags the transport itself asks for (`OVER_IO_URING` once its entries
/// are ready), granted only if offered.
pub(crate) fn negotiate(
    init: &fuse_init_in,
    max_write: u32,
    transport: InitFlags,
    configure: impl FnOnce(&mut InitConfig) -> Result<(), Errno>,
) -> InitOutcome {
    let ours = |minor| fuse_init_out {
        major: FUSE_KERNEL_VERSION,
        minor,
        ..Default::default()
    };
    if init.major > FUSE_KERNEL_VERSION {
        return InitOutcome::VersionOnly(ours(FUSE_KERNEL_MINOR_VERSION));
    }
    if init.major < FUSE_KERNEL_VERSION {
        return InitOutcome::Fail(Errno::EPROTO);
    }
    let offered = InitFlags::from_words(init.flags, init.flags2);
    let max_write = clamp_max_write(max_write);
    let mut cfg = InitConfig {
        kernel_minor: init.minor,
        offered,
        want: DEFAULT_WANT,
        max_readahead: init.max_readahead,
        max_write,
        max_background: 64,
        congestion_threshold: 48,
        time_gran: 1,
        max_stack_depth: 1,
    };
    if let Err(e) = configure(&mut cfg) {
        return InitOutcome::Fail(e);
    }
    let mut flags = cfg
        .want
        .difference(REFUSED)
        .union(transport)
        .intersection(offered);
    // The kernel silently ignores PASSTHROUGH with a stack depth outside 1..=2 or together
    // with WRITEBACK_CACHE (fs/fuse/inode.c, process_init_reply): leave it out so that
    // `Negotiated` says what is really in force.
    let depth_ok = (1..=2).contains(&cfg.max_stack_depth);
    if !depth_ok || flags.contains(InitFlags::WRITEBACK_CACHE) {
        flags = flags.difference(InitFlags::PASSTHROUGH);
    }
    // flags2 is read only with INIT_EXT; keep the two consistent.
    if !offered.contains(InitFlags::INIT_EXT) {
        flags = InitFlags(flags.0 & u64::from(u32::MAX));
    }
    let max_write = clamp_max_write(cfg.max_write.min(max_write));
    let max_pages = (max_write / PAGE) as u16;
    let minor = init.minor.min(FUSE_KERNEL_MINOR_VERSION);
    let congestion = cfg.congestion_threshold.min(cfg.max_background);
    let out = fuse_init_out {
        max_readahead: cfg.max_readahead.min(init.max_readahead),
        flags: flags.low_word(),
        max_background: cfg.max_background,
        congestion_threshold: congestion,
        max_write,
        time_gran: cfg.time_gran.clamp(1, 1_000_000_000),
        max_pages,
        flags2: flags.high_word(),
        max_stack_depth: if flags.contains(InitFlags::PASSTHROUGH) {
            cfg.max_stack_depth
        } else {
            0
        },
        ..ours(minor)
    };
    let negotiated = Negotiated {
        kernel_minor: init.minor,
        minor,
        flags,
        max_write,
        max_pages,
        max_readahead: out.max_readahead,
    };
    InitOutcome::Reply(out, negotiated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate_fs(
        init: &fuse_init_in,
        max_write: u32,
        configure: impl FnOnce(&mut InitConfig) -> Result<(), Errno>,
    ) -> InitOutcome {
        negotiate(init, max_write, InitFlags::EMPTY, configure)
    }

    #[test]
    fn over_io_uring_only_from_the_transport_and_if_offered() {
        let offered = offered_618() | InitFlags::OVER_IO_URING;
        let InitOutcome::Reply(_, n) = negotiate(
            &kernel_init(offered),
            4096,
            InitFlags::OVER_IO_URING,
            |cfg| {
                cfg.want |= InitFlags::OVER_IO_URING;
                Ok(())
            },
        ) else {
            panic!()
        };
        assert!(n.has(InitFlags::OVER_IO_URING));
        // The filesystem alone can't ask for it (it is the transport's to set)...
        let InitOutcome::Reply(_, n) = negotiate_fs(&kernel_init(offered), 4096, |cfg| {
            cfg.want |= InitFlags::OVER_IO_URING;
            Ok(())
        }) else {
            panic!()
        };
        assert!(!n.has(InitFlags::OVER_IO_URING));
        // ...and the transport gets it only when the kernel offers it.
        let InitOutcome::Reply(_, n) = negotiate(
            &kernel_init(offered_618()),
            4096,
            InitFlags::OVER_IO_URING,
            |_| Ok(()),
        ) else {
            panic!()
        };
        assert!(!n.has(InitFlags::OVER_IO_URING));
    }

    fn kernel_init(flags: InitFlags) -> fuse_init_in {
        fuse_init_in {
            major: 7,
            minor: 45,
            max_readahead: 128 * 1024,
            flags: flags.low_word(),
            flags2: flags.high_word(),
            ..Default::default()
        }
    }

    /// What Linux 6.18 offers (captured from a real INIT, see abi/tests/fixtures).
    fn offered_618() -> InitFlags {
        InitFlags(0x0000_05fd_73ff_fffb) // flags=0x73fffffb flags2=0x5fd, from abi/tests/fixtures (01-INIT)
    }

    #[test]
    fn answers_wanted_and_offered_only() {
        let offered = InitFlags::ASYNC_READ | InitFlags::INIT_EXT | InitFlags::MAX_PAGES;
        let InitOutcome::Reply(out, n) = negotiate_fs(&kernel_init(offered), 128 * 1024, |cfg| {
            cfg.want |= InitFlags::DO_READDIRPLUS | InitFlags::POSIX_LOCKS;
            Ok(())
        }) else {
            panic!("expected a reply")
        };
        assert_eq!(n.flags, offered);
        assert_eq!((out.major, out.minor), (7, 45));
        assert_eq!(out.flags, offered.low_word());
        assert_eq!(out.max_write, 128 * 1024);
        assert_eq!(out.max_pages, 32);
        assert_eq!(out.time_gran, 1);
    }

    #[test]
    fn readdirplus_only_when_asked() {
        let all = offered_618();
        let InitOutcome::Reply(_, n) = negotiate_fs(&kernel_init(all), 1 << 20, |_| Ok(())) else {
            panic!()
        };
        assert!(!n.has(InitFlags::DO_READDIRPLUS));
        assert!(!n.has(InitFlags::READDIRPLUS_AUTO));
        assert!(n.has(InitFlags::MAX_PAGES));
        assert_eq!(n.max_pages, 256);
        let InitOutcome::Reply(_, n) = negotiate_fs(&kernel_init(all), 1 << 20, |cfg| {
            cfg.want |= InitFlags::DO_READDIRPLUS;
            Ok(())
        }) else {
            panic!()
        };
        assert!(n.has(InitFlags::DO_READDIRPLUS));
    }

    #[test]
    fn refused_flags_never_pass() {
        let all = InitFlags(u64::MAX);
        let InitOutcome::Reply(out, n) = negotiate_fs(&kernel_init(all), 4096, |cfg| {
            cfg.want = InitFlags(u64::MAX);
            Ok(())
        }) else {
            panic!()
        };
        assert!(!n.flags.intersects(REFUSED));
        assert_eq!(InitFlags::from_words(out.flags, out.flags2), n.flags);
    }

    #[test]
    fn no_flags2_without_init_ext() {
        let offered = InitFlags(u64::from(u32::MAX) & !InitFlags::INIT_EXT.0);
        let InitOutcome::Reply(out, _) = negotiate_fs(&kernel_init(offered), 4096, |cfg| {
            cfg.want |= InitFlags::PASSTHROUGH;
            Ok(())
        }) else {
            panic!()
        };
        assert_eq!(out.flags2, 0);
        assert_eq!(out.flags & InitFlags::INIT_EXT.low_word(), 0);
    }

    #[test]
    fn versions() {
        let mut init = kernel_init(InitFlags::EMPTY);
        init.major = 8;
        assert!(
            matches!(negotiate_fs(&init, 4096, |_| Ok(())), InitOutcome::VersionOnly(o) if o.major == 7 && o.minor == 45)
        );
        init.major = 6;
        assert_eq!(
            negotiate_fs(&init, 4096, |_| Ok(())),
            InitOutcome::Fail(Errno::EPROTO)
        );
        init.major = 7;
        init.minor = 31;
        let InitOutcome::Reply(out, _) = negotiate_fs(&init, 4096, |_| Ok(())) else {
            panic!()
        };
        assert_eq!(out.minor, 31);
        init.minor = 50;
        let InitOutcome::Reply(out, _) = negotiate_fs(&init, 4096, |_| Ok(())) else {
            panic!()
        };
        assert_eq!(out.minor, 45);
    }

    #[test]
    fn passthrough_needs_a_stack_depth_and_no_writeback_cache() {
        let offered = offered_618();
        let with = |depth: u32, writeback: bool| {
            let InitOutcome::Reply(out, n) = negotiate_fs(&kernel_init(offered), 4096, |cfg| {
                cfg.want |= InitFlags::PASSTHROUGH;
                if writeback {
                    cfg.want |= InitFlags::WRITEBACK_CACHE;
                }
                cfg.max_stack_depth = depth;
                Ok(())
            }) else {
                panic!()
            };
            (n.has(InitFlags::PASSTHROUGH), out.max_stack_depth)
        };
        assert_eq!(with(1, false), (true, 1));
        assert_eq!(with(2, false), (true, 2));
        assert_eq!(with(0, false), (false, 0));
        assert_eq!(with(3, false), (false, 0));
        assert_eq!(with(1, true), (false, 0));
    }

    #[test]
    fn filesystem_can_refuse() {
        assert_eq!(
            negotiate_fs(&kernel_init(InitFlags::EMPTY), 4096, |_| Err(Errno::EPERM)),
            InitOutcome::Fail(Errno::EPERM)
        );
    }

    #[test]
    fn limits() {
        assert_eq!(clamp_max_write(0), 4096);
        assert_eq!(clamp_max_write(5000), 8192);
        assert_eq!(clamp_max_write(u32::MAX), 1 << 20);
        assert_eq!(request_buffer_size(4096), 69632);
        assert_eq!(request_buffer_size(1 << 20), (1 << 20) + 4096);
        let InitOutcome::Reply(out, _) =
            negotiate_fs(&kernel_init(InitFlags::EMPTY), 1 << 20, |cfg| {
                cfg.max_readahead = u32::MAX;
                cfg.congestion_threshold = 1000;
                Ok(())
            })
        else {
            panic!()
        };
        assert_eq!(
            out.max_readahead,
            128 * 1024,
            "never more readahead than offered"
        );
        assert_eq!(out.congestion_threshold, out.max_background);
    }
}
