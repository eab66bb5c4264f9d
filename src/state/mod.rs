//! What a loop allocates once and both the loop and a filesystem's handlers touch: the
//! slots' memory and bookkeeping ([`slab`]), the tags saying what each ring completion is
//! for ([`tags`]), the notification buffers ([`notifier`]), the board of lost deferral
//! tokens ([`lost`]) and the counters ([`stats`]). It sits below the user's API (`Cx` and
//! the replies reach into it) and the loop (which drives it); it knows neither.

pub(crate) mod lost;
pub(crate) mod notifier;
pub(crate) mod slab;
pub(crate) mod stats;
pub(crate) mod tags;

pub use slab::MAX_SLOTS;
pub(crate) use slab::{Layout, Outcome, Slab, SlotKind, SlotMeta, Storage};
pub use stats::Stats;
