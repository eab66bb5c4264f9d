//! Deferred requests whose token was dropped unanswered.
//!
//! A [`Deferred`](crate::Deferred) token is plain data the filesystem may keep anywhere, so
//! its `Drop` cannot reach the loop that holds its request. It posts `(loop, slot,
//! unique)` on a small board shared by every loop of the process instead; each loop looks
//! at the board once per pass (one atomic load while nothing was posted) and answers the
//! requests posted for it with `EIO`, as fuser does when a reply is dropped. A post the
//! board overwrote before its loop looked (more than [`BOARD`] tokens dropped between two
//! passes of that loop) is not lost for good: a stopping loop answers every request still
//! held with `EIO` after [`Config::stop_grace`](crate::Config::stop_grace).
//!
//! A slot stays reserved until its token comes back, so a posted slot and unique name one
//! request exactly; the unique is compared in its low 32 bits, the loop by a 16-bit id
//! that a process would have to create 65,535 more loops to see again.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Posts kept before the oldest is overwritten.
pub(crate) const BOARD: usize = 64;

static POSTS: [AtomicU64; BOARD] = [const { AtomicU64::new(0) }; BOARD];
/// Where the next post goes (modulo [`BOARD`]).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Posts completed: bumped after the post is stored, so a loop that sees it changed finds
/// the post.
static POSTED: AtomicU64 = AtomicU64::new(0);
static NEXT_LOOP: AtomicU32 = AtomicU32::new(1);

/// A fresh loop id (never 0, which marks an empty post and a token of no loop).
pub(crate) fn new_loop_id() -> u16 {
    loop {
        let id = NEXT_LOOP.fetch_add(1, Ordering::Relaxed) as u16;
        if id != 0 {
            return id;
        }
    }
}

fn pack(owner: u16, slot: u32, unique: u64) -> u64 {
    (u64::from(owner) << 48) | ((u64::from(slot) & 0xffff) << 32) | (unique & 0xffff_ffff)
}

/// Called by a token's `Drop`: tells loop `owner` that the request in `slot` with `unique`
/// will never be answered.
pub(crate) fn post(owner: u16, slot: u32, unique: u64) {
    if owner == 0 {
        return;
    }
    let at = NEXT.fetch_add(1, Ordering::Relaxed) % BOARD;
    if let Some(p) = POSTS.get(at) {
        p.store(pack(owner, slot, unique), Ordering::Release);
    }
    POSTED.fetch_add(1, Ordering::Release);
}

/// Says once per process, on stderr, that tokens were dropped unanswered (each is also
/// counted in [`Stats::lost_deferred`](crate::Stats::lost_deferred)).
pub(crate) fn warn_lost() {
    #[cfg(feature = "std")]
    {
        static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            std::eprintln!(
                "ringfuse: a Deferred token was dropped without Cx::resume; its request was \
                 answered EIO (Stats::lost_deferred counts them; this is said once)"
            );
        }
    }
}

/// Says on stderr that a stop answered `held` requests the filesystem never resumed.
#[cfg_attr(not(feature = "std"), allow(unused_variables))]
pub(crate) fn warn_abandoned(held: u64, grace: core::time::Duration) {
    #[cfg(feature = "std")]
    if held > 0 {
        std::eprintln!(
            "ringfuse: stopping: {held} deferred request(s) still unanswered after {grace:?} \
             (Config::stop_grace): answered EIO (on the native transport, by the connection's \
             end)"
        );
    }
}

/// One loop's view of the board.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The loop's id, carried by its tokens.
    pub id: u16,
    seen: u64,
}

impl Watch {
    pub(crate) fn new() -> Self {
        Self {
            id: new_loop_id(),
            seen: POSTED.load(Ordering::Acquire),
        }
    }

    /// Calls `f(slot, unique_low32)` for every post for this loop since the last call, and
    /// removes them from the board.
    pub(crate) fn take(&mut self, mut f: impl FnMut(u32, u32)) {
        let posted = POSTED.load(Ordering::Acquire);
        if posted == self.seen {
            return;
        }
        self.seen = posted;
        for p in &POSTS {
            let v = p.load(Ordering::Acquire);
            if v == 0 || (v >> 48) as u16 != self.id {
                continue;
            }
            if p.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                f(((v >> 32) & 0xffff) as u32, v as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_takes_its_own_posts_once() {
        let mut a = Watch::new();
        let mut b = Watch::new();
        post(a.id, 3, 0x1_0000_0007);
        post(b.id, 5, 9);
        let mut got = arrayvec::ArrayVec::<(u32, u32), 4>::new();
        a.take(|s, u| got.push((s, u)));
        assert_eq!(&got[..], &[(3, 7)]);
        got.clear();
        a.take(|s, u| got.push((s, u)));
        assert!(got.is_empty(), "taken twice");
        b.take(|s, u| got.push((s, u)));
        assert_eq!(&got[..], &[(5, 9)]);
    }
}
