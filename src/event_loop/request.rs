//! The handling of one request, whichever transport brought it: parsing, INIT, INTERRUPT,
//! DESTROY, and everything else through [`dispatch`].

use crate::abi::Errno;
use crate::abi::flags::InitFlags;
use crate::abi::kernel::fuse_out_header;
use crate::abi::reply as enc;
use crate::abi::request::{Operation, ParseConfig, ParseError, Request, parse_header};
use crate::api::cx::{Cx, Env, Info};
use crate::api::fs::Filesystem;
use crate::api::reply::{Lent, Whose};
use crate::event_loop::dispatch::{ReplySlot, dispatch};
#[cfg(feature = "std")]
use crate::event_loop::forward::Forward;
use crate::event_loop::init::{InitOutcome, Negotiated, negotiate};
use crate::state::{Outcome, SlotKind, Stats};

/// What the loop does after handling one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this header (and `len - 16` payload bytes already in place).
    Reply(fuse_out_header),
    /// No reply (FORGET, BATCH_FORGET, NOTIFY_REPLY, INTERRUPT, unparseable header).
    Nothing,
    /// The filesystem kept the request.
    Deferred,
}

/// The transport-independent half of a session: the filesystem, what INIT settled, and
/// the handling of one request.
pub(crate) struct Core<F> {
    pub fs: F,
    pub negotiated: Option<Negotiated>,
    pub parse: ParseConfig,
    /// Largest `max_write` the buffers allow.
    pub max_write: u32,
    /// INIT failed: the connection is unusable.
    pub init_failed: Option<Errno>,
    /// `allow_root`: the mounter's uid; requests from any other uid but root's get EACCES
    /// (but for those on files already open, as in libfuse).
    pub allow_root: Option<u32>,
    /// With several loops on one connection, what INIT settled, published by the loop that
    /// answered it for the others.
    #[cfg(feature = "std")]
    pub shared: Option<std::sync::Arc<std::sync::OnceLock<Negotiated>>>,
    /// Per-CPU loops: where INTERRUPTs this loop does not hold go, and this loop's index.
    #[cfg(feature = "std")]
    pub forward: Option<(std::sync::Arc<Forward>, usize)>,
}

impl<F: Filesystem> Core<F> {
    pub(crate) fn new(fs: F, max_write: u32) -> Self {
        Self {
            fs,
            negotiated: None,
            parse: ParseConfig::default(),
            max_write,
            init_failed: None,
            allow_root: None,
            #[cfg(feature = "std")]
            shared: None,
            #[cfg(feature = "std")]
            forward: None,
        }
    }

    /// The INTERRUPTs other loops passed on (per-CPU), newest last; zeros without.
    #[cfg_attr(not(feature = "std"), allow(clippy::unused_self))]
    pub(crate) fn forwarded(&self) -> [u64; 64] {
        #[cfg(feature = "std")]
        if let Some((f, _)) = &self.forward {
            return f.posted();
        }
        [0u64; 64]
    }

    /// Interrupts `target` if this loop holds it (an INTERRUPT another loop passed on).
    pub(crate) fn interrupt_forwarded(&mut self, env: Env<'_>, target: u64) {
        let mut cx = Cx {
            info: Info::default(),
            env,
            lent: None,
        };
        let _ = interrupt(&mut self.fs, &mut cx, target);
    }

    /// What INIT settled, from this loop or (per-CPU) from the loop that answered it.
    pub(crate) fn settled(&mut self) -> Option<Negotiated> {
        #[cfg(feature = "std")]
        if self.negotiated.is_none() {
            if let Some(n) = self.shared.as_ref().and_then(|s| s.get()).copied() {
                self.parse = ParseConfig::from_init_flags(n.flags);
                self.negotiated = Some(n);
            }
        }
        self.negotiated
    }

    /// Parses the bytes of one classic request.
    pub(crate) fn parse<'b>(&self, bytes: &'b [u8]) -> Result<Request<'b>, ParseError> {
        Request::parse(bytes, &self.parse)
    }

    /// Answers a request that did not parse: with the parser's errno if its header is
    /// readable, else not at all.
    pub(crate) fn malformed(bytes: &[u8], err: ParseError, stats: &mut Stats) -> Action {
        stats.malformed += 1;
        match parse_header(bytes) {
            Ok(h) if !crate::abi::Opcode::from(h.opcode).is_no_reply() => {
                Action::Reply(enc::error_header(h.unique, err.errno()))
            }
            _ => Action::Nothing,
        }
    }

    /// Handles one request: INIT and INTERRUPT here, everything else through
    /// [`dispatch`]. `payload` is where the reply's payload goes.
    /// `native`: answer an INIT with `FUSE_OVER_IO_URING` if the kernel offers it (the
    /// transport has its entries ready).
    pub(crate) fn handle(
        &mut self,
        env: Env<'_>,
        slot: u32,
        req: &Request<'_>,
        payload: &mut [u8],
        native: bool,
    ) -> Action {
        let h = &req.header;
        let info = Info {
            unique: h.unique,
            nodeid: h.nodeid,
            uid: h.uid,
            gid: h.gid,
            pid: h.pid,
        };
        match req.op {
            Operation::Init { arg } => return self.init(&arg, h.unique, payload, native),
            Operation::Interrupt { arg } => {
                let mut cx = Cx {
                    info,
                    env,
                    lent: None,
                };
                if !interrupt(&mut self.fs, &mut cx, arg.unique) {
                    #[cfg(feature = "std")]
                    if let Some((f, k)) = &self.forward {
                        f.post(arg.unique, *k);
                    }
                }
                return Action::Nothing;
            }
            Operation::Destroy => {
                self.fs.destroy();
                return Action::Reply(enc::out_header(h.unique, 0));
            }
            _ => {}
        }
        if self.settled().is_none() {
            // The kernel sends nothing before INIT is answered; anything else is garbage.
            return Action::Reply(enc::error_header(h.unique, Errno::EIO));
        }
        if let Some(owner) = self.allow_root {
            if h.uid != owner && h.uid != 0 && !open_file_op(req.opcode()) {
                if req.opcode().is_no_reply() {
                    return Action::Nothing;
                }
                return Action::Reply(enc::error_header(h.unique, Errno::EACCES));
            }
        }
        let mut outcome = Outcome::Pending;
        let owner = env.owner;
        let lent = Lent::new(None);
        let mut cx = Cx {
            info,
            env,
            lent: Some(&lent),
        };
        dispatch(
            &mut self.fs,
            &mut cx,
            req,
            ReplySlot {
                payload,
                outcome: &mut outcome,
                whose: Whose {
                    slot,
                    unique: h.unique,
                    owner,
                },
                lent: &lent,
            },
        );
        if req.opcode().is_no_reply() {
            return Action::Nothing;
        }
        match outcome {
            Outcome::Payload(n) => Action::Reply(enc::out_header(h.unique, n)),
            Outcome::Error(e) => Action::Reply(enc::error_header(h.unique, e)),
            // Counted (and, if resumed in the same call, sent) by the transport.
            Outcome::Deferred => Action::Deferred,
            // The method returned another reply's Done and dropped its own: answer EIO
            // rather than leave the caller waiting.
            Outcome::Pending => Action::Reply(enc::error_header(h.unique, Errno::EIO)),
        }
    }

    pub(crate) fn init(
        &mut self,
        arg: &crate::abi::kernel::fuse_init_in,
        unique: u64,
        payload: &mut [u8],
        native: bool,
    ) -> Action {
        let fs = &mut self.fs;
        let extra = if native {
            InitFlags::OVER_IO_URING
        } else {
            InitFlags::EMPTY
        };
        match negotiate(arg, self.max_write, extra, |cfg| fs.init(cfg)) {
            InitOutcome::Reply(out, negotiated) => {
                self.parse = ParseConfig::from_init_flags(negotiated.flags);
                self.negotiated = Some(negotiated);
                #[cfg(feature = "std")]
                if let Some(shared) = &self.shared {
                    let _ = shared.set(negotiated);
                }
                match enc::init(payload, &out, arg.minor) {
                    Ok(n) => {
                        // A `mount.fuse.NAME` helper waiting for this server may go now.
                        #[cfg(feature = "std")]
                        crate::mount::helper::notify_ready();
                        Action::Reply(enc::out_header(unique, n))
                    }
                    Err(_) => Action::Reply(enc::error_header(unique, Errno::EIO)),
                }
            }
            InitOutcome::VersionOnly(out) => match enc::init(payload, &out, 0) {
                Ok(n) => Action::Reply(enc::out_header(unique, n)),
                Err(_) => Action::Reply(enc::error_header(unique, Errno::EIO)),
            },
            InitOutcome::Fail(e) => {
                self.init_failed = Some(e);
                Action::Reply(enc::error_header(unique, e))
            }
        }
    }
}

/// The operations `allow_root` lets through from any user, as libfuse does: those on a file
/// or directory already open (the open was checked), and the ones that answer nothing.
fn open_file_op(op: crate::abi::Opcode) -> bool {
    use crate::abi::Opcode as O;
    op.is_no_reply()
        || matches!(
            op,
            O::Read
                | O::Write
                | O::Fsync
                | O::Release
                | O::Readdir
                | O::Readdirplus
                | O::Fsyncdir
                | O::Releasedir
                | O::Flush
        )
}

/// INTERRUPT: if the request is one the filesystem deferred and has not answered, answer
/// it `EINTR` now (classic) and tell the filesystem; otherwise (answered already, or
/// unknown) do nothing — a single loop answers requests in order, so an unknown unique was
/// answered, or is held by another per-CPU loop. False if this loop does not hold it.
fn interrupt<F: Filesystem>(fs: &mut F, cx: &mut Cx<'_>, target: u64) -> bool {
    let env = &mut cx.env;
    let Some(meta) = env
        .slab
        .meta
        .iter_mut()
        // Native entries are interrupted only by filesystems that answer them themselves
        // (`Filesystem::INTERRUPTS_ENTRIES`): answering one here would commit the entry,
        // which the kernel may refill while the filesystem's own I/O still uses its buffers.
        .find(|m| {
            (m.kind == SlotKind::Dev || F::INTERRUPTS_ENTRIES)
                && m.fs_holds
                && !m.answered
                && m.unique == target
        })
    else {
        // Answered already, or held by another loop (per-CPU), or unknown.
        return env
            .slab
            .meta
            .iter()
            .any(|m| m.unique == target && m.fs_holds);
    };
    if meta.kind == SlotKind::Dev {
        // Answered from now on: a `resume` (even inside `interrupted` below) yields `None`,
        // so nothing can replace the EINTR.
        meta.answer_held(Errno::EINTR);
        *env.resumed += 1;
    }
    env.stats.interrupts += 1;
    fs.interrupted(cx, target);
    true
}
