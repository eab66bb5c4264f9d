//! One loop's memory and ring, allocated once, and the loop run in them.

use crate::api::fs::Filesystem;
use crate::error::Error;
use crate::event_loop::request::Core;
use crate::event_loop::{End, Loop, Native, layout};
use crate::state::notifier::Notifier;
use crate::state::{MAX_SLOTS, Slab, SlotKind, SlotMeta, Stats, Storage};

use super::Config;

/// What one loop serves.
pub(super) struct LoopSpec<'a> {
    /// The `/dev/fuse` descriptor this loop reads and writes (per-CPU classic loops each
    /// have a clone).
    pub fuse: rustix::fd::BorrowedFd<'a>,
    /// Device slots (0 for per-CPU native loops other than the first).
    pub dev_slots: usize,
    /// Native queues this loop registers entries for (`queue_depth` each).
    pub queues: &'a [u16],
    /// The native transport's starting state.
    pub native: Native,
    /// The stop eventfd.
    pub stop_fd: Option<rustix::fd::BorrowedFd<'a>>,
    /// Per-CPU native loops other than the first: an eventfd written once INIT is answered.
    pub init_event: Option<rustix::fd::BorrowedFd<'a>>,
    /// The loop that answers INIT: the other loops' `init_event`s.
    pub init_notify: &'a [rustix::fd::BorrowedFd<'a>],
    /// Per-CPU loops: the eventfd that says another loop passed on an INTERRUPT.
    pub irq_event: Option<rustix::fd::BorrowedFd<'a>>,
}

/// How many slots a loop serving `spec` has.
pub(super) fn slot_count(config: &Config, spec: &LoopSpec<'_>) -> Result<usize, Error> {
    let slots = spec.dev_slots + spec.queues.len() * config.entries_per_queue();
    if slots > usize::from(MAX_SLOTS) || slots == 0 {
        return Err(Error::Config(
            "slots + possible CPUs x queue_depth must be 1..=1024",
        ));
    }
    Ok(slots)
}

/// Allocates a loop's buffers, once, and runs it.
#[cfg(feature = "std")]
pub(super) fn serve_loop<F: Filesystem>(
    core: &mut Core<F>,
    config: &Config,
    spec: &LoopSpec<'_>,
    stats: &mut Stats,
) -> Result<End, Error> {
    let layout = layout(config.max_write, F::TASK_BYTES);
    let slots = slot_count(config, spec)?;
    let mut slab = Storage::heap(layout.size(slots));
    let notify_bytes = Notifier::bytes(
        usize::from(config.notify_slots),
        config.notify_size as usize,
    );
    let notify = Storage::heap(notify_bytes);
    let mut meta = std::vec![SlotMeta::default(); slots];
    let result = serve_loop_in(core, config, spec, stats, slab.as_mut(), notify, &mut meta);
    if result.is_err() {
        // The loop gave up with READs possibly in flight: the kernel may still write the
        // slab until the ring's teardown completes. Leak it rather than free it under them.
        core::mem::forget(slab);
    }
    result
}

/// Runs a loop in the given memory: `slab` for the slots, `notify` for the notification
/// buffers, `meta` one entry per slot.
pub(super) fn serve_loop_in<F: Filesystem>(
    core: &mut Core<F>,
    config: &Config,
    spec: &LoopSpec<'_>,
    stats: &mut Stats,
    slab: &mut [u8],
    notify: Storage,
    meta: &mut [SlotMeta],
) -> Result<End, Error> {
    let layout = layout(config.max_write, F::TASK_BYTES);
    let slots = meta.len();
    let notify_size = config.notify_size as usize;
    let notify_count = usize::from(config.notify_slots);
    let mut notifier = Notifier::new(notify, notify_count, notify_size);
    let depth = config.entries_per_queue();
    let entries = slots.saturating_sub(spec.dev_slots);
    for (k, m) in meta.iter_mut().enumerate() {
        *m = SlotMeta::default();
        if let Some(e) = k.checked_sub(spec.dev_slots) {
            let qid = spec.queues.get(e / depth).copied().unwrap_or(0);
            m.kind = SlotKind::Entry { qid };
        }
    }
    let native = spec.native != Native::Off && entries > 0;
    // Reads and writes of every slot, notifications, the stop and init events, room for
    // the filesystem's own operations.
    let ring_entries = (2 * slots + notify_count + 64).next_power_of_two();
    let ring_entries = u32::try_from(ring_entries).map_err(|_| Error::Config("too many slots"))?;
    // The native transport's uring_cmds need 128-byte SQEs; ask for them only then.
    let mut ring = crate::ring::Builder::event_loop(ring_entries)
        .sqe128(native)
        .build()?;
    let mut stop_buf = [0u8; 8];
    let mut init_buf = [0u8; 8];
    let mut irq_buf = [0u8; 8];
    let result = Loop {
        core,
        ring: &mut ring,
        fuse: spec.fuse,
        slab: Slab::new(slab, layout),
        layout,
        meta,
        notifier: &mut notifier,
        stats,
        stop_fd: spec.stop_fd,
        stop_buf: &mut stop_buf,
        max_reads: usize::from(config.reads_in_flight).min(spec.dev_slots),
        replies_first: config.replies_first,
        dev_slots: spec.dev_slots,
        native: if native { spec.native } else { Native::Off },
        init_event: spec.init_event,
        init_buf: &mut init_buf,
        init_notify: spec.init_notify,
        irq_event: spec.irq_event,
        irq_buf: &mut irq_buf,
        lost: crate::state::lost::Watch::new(),
        stop_grace: config.stop_grace,
    }
    .run();
    if result.is_err() {
        // The loop gave up with operations possibly in flight: the kernel may still read
        // the notification buffers until the ring's teardown; never free them under it.
        // (Without `std` they are the caller's static memory: nothing to free.)
        #[cfg_attr(not(feature = "std"), allow(clippy::forget_non_drop))]
        core::mem::forget(notifier);
    }
    result
}

/// Every possible CPU's queue (the kernel makes one per possible CPU).
#[cfg(feature = "std")]
pub(super) fn all_queues() -> std::vec::Vec<u16> {
    (0..crate::sys::possible_cpus().unwrap_or(1))
        .map(|q| q as u16)
        .collect()
}
