//! Counters a session keeps, cheap enough for every request.

/// What a session has done so far. Plain integers, updated by the loop's thread; read them
/// with [`Session::stats`](crate::Session::stats) after a run (or
/// [`PerCpuReport::total`](crate::PerCpuReport::total)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests read from `/dev/fuse` (the classic transport, and INIT, FORGET, INTERRUPT
    /// under the native one).
    pub requests_dev: u64,
    /// Requests that arrived through the kernel's FUSE-over-io_uring entries.
    pub requests_uring: u64,
    /// Replies sent (errors included).
    pub replies: u64,
    /// Of which errors.
    pub errors: u64,
    /// Requests deferred by the filesystem.
    pub deferred: u64,
    /// INTERRUPTs that cancelled a deferred request.
    pub interrupts: u64,
    /// Requests that could not be parsed (answered with an error when their header was
    /// readable).
    pub malformed: u64,
    /// Replies the kernel refused with an error other than `ENOENT` (a bug: please report).
    pub reply_failures: u64,
    /// Notifications written.
    pub notifications: u64,
    /// Notifications the kernel answered with an error (`ENOENT` is common and harmless).
    pub notification_errors: u64,
    /// `io_uring_enter` calls made by the loop.
    pub enters: u64,
    /// Of which calls that sent replies ahead of the next `/dev/fuse` READ, so that a
    /// client on the loop's CPU could queue its next request first (classic transport, one
    /// request at a time; see [`Config::replies_first`](crate::Config::replies_first)).
    pub replies_first: u64,
    /// Completions handled.
    pub completions: u64,
    /// Ring operations of the filesystem still in flight.
    pub fs_ops_in_flight: u64,
}

impl Stats {
    /// All requests received.
    pub fn requests(&self) -> u64 {
        self.requests_dev + self.requests_uring
    }
}
