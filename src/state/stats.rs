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
    /// Deferred requests whose [`Deferred`](crate::Deferred) token the filesystem dropped
    /// without resuming it; each was answered `EIO` (a bug in the filesystem).
    pub lost_deferred: u64,
    /// Deferred requests still unanswered when a stop's
    /// [`grace`](crate::Config::stop_grace) ran out; answered `EIO` (native entries: by the
    /// connection's end).
    pub abandoned: u64,
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
    /// Cancels submitted for the filesystem's own ring operations
    /// ([`Cx::cancel`](crate::Cx::cancel); for an
    /// [`AsyncFilesystem`](crate::AsyncFilesystem), those of interrupted requests, of a
    /// stop, and of operations whose future was dropped).
    pub fs_ops_cancelled: u64,
    /// Bytes of requests the library copied before handing them to the filesystem: the
    /// native transport copies a request payload of at most 512 bytes (a name, a path)
    /// aside, so that the reply can be built in the payload buffer. WRITE data and other
    /// larger payloads are never copied.
    pub request_bytes_copied: u64,
    /// Bytes of replies the library copied before sending them: under the native
    /// transport, the reply to a request whose payload was larger than 512 bytes (a
    /// WRITE's 8-byte `fuse_write_out`) is built beside the payload and copied into the
    /// payload buffer at commit. READ data is never copied: it is read into the reply
    /// buffer itself.
    pub reply_bytes_copied: u64,
}

impl Stats {
    /// Adds `other`'s counters to these (one loop's to a total).
    pub fn add(&mut self, other: &Stats) {
        let Stats {
            requests_dev,
            requests_uring,
            replies,
            errors,
            deferred,
            interrupts,
            lost_deferred,
            abandoned,
            malformed,
            reply_failures,
            notifications,
            notification_errors,
            enters,
            replies_first,
            completions,
            fs_ops_in_flight,
            fs_ops_cancelled,
            request_bytes_copied,
            reply_bytes_copied,
        } = *other;
        self.requests_dev += requests_dev;
        self.requests_uring += requests_uring;
        self.replies += replies;
        self.errors += errors;
        self.deferred += deferred;
        self.interrupts += interrupts;
        self.lost_deferred += lost_deferred;
        self.abandoned += abandoned;
        self.malformed += malformed;
        self.reply_failures += reply_failures;
        self.notifications += notifications;
        self.notification_errors += notification_errors;
        self.enters += enters;
        self.replies_first += replies_first;
        self.completions += completions;
        self.fs_ops_in_flight += fs_ops_in_flight;
        self.fs_ops_cancelled += fs_ops_cancelled;
        self.request_bytes_copied += request_bytes_copied;
        self.reply_bytes_copied += reply_bytes_copied;
    }

    /// All requests received.
    pub fn requests(&self) -> u64 {
        self.requests_dev + self.requests_uring
    }
}
