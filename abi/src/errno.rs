//! Error numbers, in the only form the kernel accepts.

use core::num::NonZeroU16;

/// A Linux error number in `1..=511`: the only values a FUSE reply may carry (as
/// `-errno` in `fuse_out_header::error`).
///
/// It can't be zero, negative or too large by construction, so an error reply can't carry a
/// positive value or one the kernel would reject: [`Errno::to_wire`] is the one place that
/// negates it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(NonZeroU16);

impl Errno {
    /// The largest error number the kernel accepts in a reply (`-512 < error < 0`).
    pub const MAX: u16 = 511;

    /// The error for a positive errno value; `None` unless `1 <= errno <= 511`.
    #[inline]
    pub const fn new(errno: i32) -> Option<Self> {
        if errno >= 1 && errno <= Self::MAX as i32 {
            #[allow(clippy::cast_sign_loss)] // 1 <= errno <= 511, checked above
            match NonZeroU16::new(errno as u16) {
                Some(n) => Some(Self(n)),
                None => None,
            }
        } else {
            None
        }
    }

    /// The error for a positive errno value, or `EIO` if it is out of range.
    #[inline]
    pub const fn new_or_eio(errno: i32) -> Self {
        match Self::new(errno) {
            Some(e) => e,
            None => Self::EIO,
        }
    }

    /// The error a kernel reply field carries (`-errno`, as in `fuse_out_header::error`);
    /// `None` for 0, positive values and values below -511.
    #[inline]
    pub const fn from_wire(error: i32) -> Option<Self> {
        if error < 0 {
            Self::new(error.wrapping_neg())
        } else {
            None
        }
    }

    const fn known(errno: u16) -> Self {
        match NonZeroU16::new(errno) {
            Some(n) if errno <= Self::MAX => Self(n),
            _ => panic!("errno out of range"),
        }
    }

    /// The positive errno value (`1..=511`).
    #[inline]
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    /// The value for `fuse_out_header::error`: `-errno`, always in `-511..=-1`.
    #[inline]
    pub const fn to_wire(self) -> i32 {
        -(self.0.get() as i32)
    }

    /// The symbolic name (`"ENOENT"`), or `None` for a number without one.
    #[allow(clippy::too_many_lines)] // one arm per errno of asm-generic/errno.h
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0.get() {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            8 => "ENOEXEC",
            9 => "EBADF",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            15 => "ENOTBLK",
            16 => "EBUSY",
            17 => "EEXIST",
            18 => "EXDEV",
            19 => "ENODEV",
            20 => "ENOTDIR",
            21 => "EISDIR",
            22 => "EINVAL",
            23 => "ENFILE",
            24 => "EMFILE",
            25 => "ENOTTY",
            26 => "ETXTBSY",
            27 => "EFBIG",
            28 => "ENOSPC",
            29 => "ESPIPE",
            30 => "EROFS",
            31 => "EMLINK",
            32 => "EPIPE",
            33 => "EDOM",
            34 => "ERANGE",
            35 => "EDEADLK",
            36 => "ENAMETOOLONG",
            37 => "ENOLCK",
            38 => "ENOSYS",
            39 => "ENOTEMPTY",
            40 => "ELOOP",
            42 => "ENOMSG",
            43 => "EIDRM",
            44 => "ECHRNG",
            45 => "EL2NSYNC",
            46 => "EL3HLT",
            47 => "EL3RST",
            48 => "ELNRNG",
            49 => "EUNATCH",
            50 => "ENOCSI",
            51 => "EL2HLT",
            52 => "EBADE",
            53 => "EBADR",
            54 => "EXFULL",
            55 => "ENOANO",
            56 => "EBADRQC",
            57 => "EBADSLT",
            59 => "EBFONT",
            60 => "ENOSTR",
            61 => "ENODATA",
            62 => "ETIME",
            63 => "ENOSR",
            64 => "ENONET",
            65 => "ENOPKG",
            66 => "EREMOTE",
            67 => "ENOLINK",
            68 => "EADV",
            69 => "ESRMNT",
            70 => "ECOMM",
            71 => "EPROTO",
            72 => "EMULTIHOP",
            73 => "EDOTDOT",
            74 => "EBADMSG",
            75 => "EOVERFLOW",
            76 => "ENOTUNIQ",
            77 => "EBADFD",
            78 => "EREMCHG",
            79 => "ELIBACC",
            80 => "ELIBBAD",
            81 => "ELIBSCN",
            82 => "ELIBMAX",
            83 => "ELIBEXEC",
            84 => "EILSEQ",
            85 => "ERESTART",
            86 => "ESTRPIPE",
            87 => "EUSERS",
            88 => "ENOTSOCK",
            89 => "EDESTADDRREQ",
            90 => "EMSGSIZE",
            91 => "EPROTOTYPE",
            92 => "ENOPROTOOPT",
            93 => "EPROTONOSUPPORT",
            94 => "ESOCKTNOSUPPORT",
            95 => "EOPNOTSUPP",
            96 => "EPFNOSUPPORT",
            97 => "EAFNOSUPPORT",
            98 => "EADDRINUSE",
            99 => "EADDRNOTAVAIL",
            100 => "ENETDOWN",
            101 => "ENETUNREACH",
            102 => "ENETRESET",
            103 => "ECONNABORTED",
            104 => "ECONNRESET",
            105 => "ENOBUFS",
            106 => "EISCONN",
            107 => "ENOTCONN",
            108 => "ESHUTDOWN",
            109 => "ETOOMANYREFS",
            110 => "ETIMEDOUT",
            111 => "ECONNREFUSED",
            112 => "EHOSTDOWN",
            113 => "EHOSTUNREACH",
            114 => "EALREADY",
            115 => "EINPROGRESS",
            116 => "ESTALE",
            117 => "EUCLEAN",
            118 => "ENOTNAM",
            119 => "ENAVAIL",
            120 => "EISNAM",
            121 => "EREMOTEIO",
            122 => "EDQUOT",
            123 => "ENOMEDIUM",
            124 => "EMEDIUMTYPE",
            125 => "ECANCELED",
            126 => "ENOKEY",
            127 => "EKEYEXPIRED",
            128 => "EKEYREVOKED",
            129 => "EKEYREJECTED",
            130 => "EOWNERDEAD",
            131 => "ENOTRECOVERABLE",
            132 => "ERFKILL",
            133 => "EHWPOISON",
            _ => return None,
        })
    }

    /// `EPERM` (1): Operation not permitted.
    pub const EPERM: Errno = Errno::known(1);
    /// `ENOENT` (2): No such file or directory.
    pub const ENOENT: Errno = Errno::known(2);
    /// `ESRCH` (3): No such process.
    pub const ESRCH: Errno = Errno::known(3);
    /// `EINTR` (4): Interrupted system call.
    pub const EINTR: Errno = Errno::known(4);
    /// `EIO` (5): I/O error.
    pub const EIO: Errno = Errno::known(5);
    /// `ENXIO` (6): No such device or address.
    pub const ENXIO: Errno = Errno::known(6);
    /// `E2BIG` (7): Argument list too long.
    pub const E2BIG: Errno = Errno::known(7);
    /// `ENOEXEC` (8): Exec format error.
    pub const ENOEXEC: Errno = Errno::known(8);
    /// `EBADF` (9): Bad file number.
    pub const EBADF: Errno = Errno::known(9);
    /// `ECHILD` (10): No child processes.
    pub const ECHILD: Errno = Errno::known(10);
    /// `EAGAIN` (11): Try again.
    pub const EAGAIN: Errno = Errno::known(11);
    /// `ENOMEM` (12): Out of memory.
    pub const ENOMEM: Errno = Errno::known(12);
    /// `EACCES` (13): Permission denied.
    pub const EACCES: Errno = Errno::known(13);
    /// `EFAULT` (14): Bad address.
    pub const EFAULT: Errno = Errno::known(14);
    /// `ENOTBLK` (15): Block device required.
    pub const ENOTBLK: Errno = Errno::known(15);
    /// `EBUSY` (16): Device or resource busy.
    pub const EBUSY: Errno = Errno::known(16);
    /// `EEXIST` (17): File exists.
    pub const EEXIST: Errno = Errno::known(17);
    /// `EXDEV` (18): Cross-device link.
    pub const EXDEV: Errno = Errno::known(18);
    /// `ENODEV` (19): No such device.
    pub const ENODEV: Errno = Errno::known(19);
    /// `ENOTDIR` (20): Not a directory.
    pub const ENOTDIR: Errno = Errno::known(20);
    /// `EISDIR` (21): Is a directory.
    pub const EISDIR: Errno = Errno::known(21);
    /// `EINVAL` (22): Invalid argument.
    pub const EINVAL: Errno = Errno::known(22);
    /// `ENFILE` (23): File table overflow.
    pub const ENFILE: Errno = Errno::known(23);
    /// `EMFILE` (24): Too many open files.
    pub const EMFILE: Errno = Errno::known(24);
    /// `ENOTTY` (25): Not a typewriter.
    pub const ENOTTY: Errno = Errno::known(25);
    /// `ETXTBSY` (26): Text file busy.
    pub const ETXTBSY: Errno = Errno::known(26);
    /// `EFBIG` (27): File too large.
    pub const EFBIG: Errno = Errno::known(27);
    /// `ENOSPC` (28): No space left on device.
    pub const ENOSPC: Errno = Errno::known(28);
    /// `ESPIPE` (29): Illegal seek.
    pub const ESPIPE: Errno = Errno::known(29);
    /// `EROFS` (30): Read-only file system.
    pub const EROFS: Errno = Errno::known(30);
    /// `EMLINK` (31): Too many links.
    pub const EMLINK: Errno = Errno::known(31);
    /// `EPIPE` (32): Broken pipe.
    pub const EPIPE: Errno = Errno::known(32);
    /// `EDOM` (33): Math argument out of domain of func.
    pub const EDOM: Errno = Errno::known(33);
    /// `ERANGE` (34): Math result not representable.
    pub const ERANGE: Errno = Errno::known(34);
    /// `EDEADLK` (35): Resource deadlock would occur.
    pub const EDEADLK: Errno = Errno::known(35);
    /// `ENAMETOOLONG` (36): File name too long.
    pub const ENAMETOOLONG: Errno = Errno::known(36);
    /// `ENOLCK` (37): No record locks available.
    pub const ENOLCK: Errno = Errno::known(37);
    /// `ENOSYS` (38): Invalid system call number.
    pub const ENOSYS: Errno = Errno::known(38);
    /// `ENOTEMPTY` (39): Directory not empty.
    pub const ENOTEMPTY: Errno = Errno::known(39);
    /// `ELOOP` (40): Too many symbolic links encountered.
    pub const ELOOP: Errno = Errno::known(40);
    /// `ENOMSG` (42): No message of desired type.
    pub const ENOMSG: Errno = Errno::known(42);
    /// `EIDRM` (43): Identifier removed.
    pub const EIDRM: Errno = Errno::known(43);
    /// `ECHRNG` (44): Channel number out of range.
    pub const ECHRNG: Errno = Errno::known(44);
    /// `EL2NSYNC` (45): Level 2 not synchronized.
    pub const EL2NSYNC: Errno = Errno::known(45);
    /// `EL3HLT` (46): Level 3 halted.
    pub const EL3HLT: Errno = Errno::known(46);
    /// `EL3RST` (47): Level 3 reset.
    pub const EL3RST: Errno = Errno::known(47);
    /// `ELNRNG` (48): Link number out of range.
    pub const ELNRNG: Errno = Errno::known(48);
    /// `EUNATCH` (49): Protocol driver not attached.
    pub const EUNATCH: Errno = Errno::known(49);
    /// `ENOCSI` (50): No CSI structure available.
    pub const ENOCSI: Errno = Errno::known(50);
    /// `EL2HLT` (51): Level 2 halted.
    pub const EL2HLT: Errno = Errno::known(51);
    /// `EBADE` (52): Invalid exchange.
    pub const EBADE: Errno = Errno::known(52);
    /// `EBADR` (53): Invalid request descriptor.
    pub const EBADR: Errno = Errno::known(53);
    /// `EXFULL` (54): Exchange full.
    pub const EXFULL: Errno = Errno::known(54);
    /// `ENOANO` (55): No anode.
    pub const ENOANO: Errno = Errno::known(55);
    /// `EBADRQC` (56): Invalid request code.
    pub const EBADRQC: Errno = Errno::known(56);
    /// `EBADSLT` (57): Invalid slot.
    pub const EBADSLT: Errno = Errno::known(57);
    /// `EBFONT` (59): Bad font file format.
    pub const EBFONT: Errno = Errno::known(59);
    /// `ENOSTR` (60): Device not a stream.
    pub const ENOSTR: Errno = Errno::known(60);
    /// `ENODATA` (61): No data available.
    pub const ENODATA: Errno = Errno::known(61);
    /// `ETIME` (62): Timer expired.
    pub const ETIME: Errno = Errno::known(62);
    /// `ENOSR` (63): Out of streams resources.
    pub const ENOSR: Errno = Errno::known(63);
    /// `ENONET` (64): Machine is not on the network.
    pub const ENONET: Errno = Errno::known(64);
    /// `ENOPKG` (65): Package not installed.
    pub const ENOPKG: Errno = Errno::known(65);
    /// `EREMOTE` (66): Object is remote.
    pub const EREMOTE: Errno = Errno::known(66);
    /// `ENOLINK` (67): Link has been severed.
    pub const ENOLINK: Errno = Errno::known(67);
    /// `EADV` (68): Advertise error.
    pub const EADV: Errno = Errno::known(68);
    /// `ESRMNT` (69): Srmount error.
    pub const ESRMNT: Errno = Errno::known(69);
    /// `ECOMM` (70): Communication error on send.
    pub const ECOMM: Errno = Errno::known(70);
    /// `EPROTO` (71): Protocol error.
    pub const EPROTO: Errno = Errno::known(71);
    /// `EMULTIHOP` (72): Multihop attempted.
    pub const EMULTIHOP: Errno = Errno::known(72);
    /// `EDOTDOT` (73): RFS specific error.
    pub const EDOTDOT: Errno = Errno::known(73);
    /// `EBADMSG` (74): Not a data message.
    pub const EBADMSG: Errno = Errno::known(74);
    /// `EOVERFLOW` (75): Value too large for defined data type.
    pub const EOVERFLOW: Errno = Errno::known(75);
    /// `ENOTUNIQ` (76): Name not unique on network.
    pub const ENOTUNIQ: Errno = Errno::known(76);
    /// `EBADFD` (77): File descriptor in bad state.
    pub const EBADFD: Errno = Errno::known(77);
    /// `EREMCHG` (78): Remote address changed.
    pub const EREMCHG: Errno = Errno::known(78);
    /// `ELIBACC` (79): Can not access a needed shared library.
    pub const ELIBACC: Errno = Errno::known(79);
    /// `ELIBBAD` (80): Accessing a corrupted shared library.
    pub const ELIBBAD: Errno = Errno::known(80);
    /// `ELIBSCN` (81): .lib section in a.out corrupted.
    pub const ELIBSCN: Errno = Errno::known(81);
    /// `ELIBMAX` (82): Attempting to link in too many shared libraries.
    pub const ELIBMAX: Errno = Errno::known(82);
    /// `ELIBEXEC` (83): Cannot exec a shared library directly.
    pub const ELIBEXEC: Errno = Errno::known(83);
    /// `EILSEQ` (84): Illegal byte sequence.
    pub const EILSEQ: Errno = Errno::known(84);
    /// `ERESTART` (85): Interrupted system call should be restarted.
    pub const ERESTART: Errno = Errno::known(85);
    /// `ESTRPIPE` (86): Streams pipe error.
    pub const ESTRPIPE: Errno = Errno::known(86);
    /// `EUSERS` (87): Too many users.
    pub const EUSERS: Errno = Errno::known(87);
    /// `ENOTSOCK` (88): Socket operation on non-socket.
    pub const ENOTSOCK: Errno = Errno::known(88);
    /// `EDESTADDRREQ` (89): Destination address required.
    pub const EDESTADDRREQ: Errno = Errno::known(89);
    /// `EMSGSIZE` (90): Message too long.
    pub const EMSGSIZE: Errno = Errno::known(90);
    /// `EPROTOTYPE` (91): Protocol wrong type for socket.
    pub const EPROTOTYPE: Errno = Errno::known(91);
    /// `ENOPROTOOPT` (92): Protocol not available.
    pub const ENOPROTOOPT: Errno = Errno::known(92);
    /// `EPROTONOSUPPORT` (93): Protocol not supported.
    pub const EPROTONOSUPPORT: Errno = Errno::known(93);
    /// `ESOCKTNOSUPPORT` (94): Socket type not supported.
    pub const ESOCKTNOSUPPORT: Errno = Errno::known(94);
    /// `EOPNOTSUPP` (95): Operation not supported on transport endpoint.
    pub const EOPNOTSUPP: Errno = Errno::known(95);
    /// `EPFNOSUPPORT` (96): Protocol family not supported.
    pub const EPFNOSUPPORT: Errno = Errno::known(96);
    /// `EAFNOSUPPORT` (97): Address family not supported by protocol.
    pub const EAFNOSUPPORT: Errno = Errno::known(97);
    /// `EADDRINUSE` (98): Address already in use.
    pub const EADDRINUSE: Errno = Errno::known(98);
    /// `EADDRNOTAVAIL` (99): Cannot assign requested address.
    pub const EADDRNOTAVAIL: Errno = Errno::known(99);
    /// `ENETDOWN` (100): Network is down.
    pub const ENETDOWN: Errno = Errno::known(100);
    /// `ENETUNREACH` (101): Network is unreachable.
    pub const ENETUNREACH: Errno = Errno::known(101);
    /// `ENETRESET` (102): Network dropped connection because of reset.
    pub const ENETRESET: Errno = Errno::known(102);
    /// `ECONNABORTED` (103): Software caused connection abort.
    pub const ECONNABORTED: Errno = Errno::known(103);
    /// `ECONNRESET` (104): Connection reset by peer.
    pub const ECONNRESET: Errno = Errno::known(104);
    /// `ENOBUFS` (105): No buffer space available.
    pub const ENOBUFS: Errno = Errno::known(105);
    /// `EISCONN` (106): Transport endpoint is already connected.
    pub const EISCONN: Errno = Errno::known(106);
    /// `ENOTCONN` (107): Transport endpoint is not connected.
    pub const ENOTCONN: Errno = Errno::known(107);
    /// `ESHUTDOWN` (108): Cannot send after transport endpoint shutdown.
    pub const ESHUTDOWN: Errno = Errno::known(108);
    /// `ETOOMANYREFS` (109): Too many references: cannot splice.
    pub const ETOOMANYREFS: Errno = Errno::known(109);
    /// `ETIMEDOUT` (110): Connection timed out.
    pub const ETIMEDOUT: Errno = Errno::known(110);
    /// `ECONNREFUSED` (111): Connection refused.
    pub const ECONNREFUSED: Errno = Errno::known(111);
    /// `EHOSTDOWN` (112): Host is down.
    pub const EHOSTDOWN: Errno = Errno::known(112);
    /// `EHOSTUNREACH` (113): No route to host.
    pub const EHOSTUNREACH: Errno = Errno::known(113);
    /// `EALREADY` (114): Operation already in progress.
    pub const EALREADY: Errno = Errno::known(114);
    /// `EINPROGRESS` (115): Operation now in progress.
    pub const EINPROGRESS: Errno = Errno::known(115);
    /// `ESTALE` (116): Stale file handle.
    pub const ESTALE: Errno = Errno::known(116);
    /// `EUCLEAN` (117): Structure needs cleaning.
    pub const EUCLEAN: Errno = Errno::known(117);
    /// `ENOTNAM` (118): Not a XENIX named type file.
    pub const ENOTNAM: Errno = Errno::known(118);
    /// `ENAVAIL` (119): No XENIX semaphores available.
    pub const ENAVAIL: Errno = Errno::known(119);
    /// `EISNAM` (120): Is a named type file.
    pub const EISNAM: Errno = Errno::known(120);
    /// `EREMOTEIO` (121): Remote I/O error.
    pub const EREMOTEIO: Errno = Errno::known(121);
    /// `EDQUOT` (122): Quota exceeded.
    pub const EDQUOT: Errno = Errno::known(122);
    /// `ENOMEDIUM` (123): No medium found.
    pub const ENOMEDIUM: Errno = Errno::known(123);
    /// `EMEDIUMTYPE` (124): Wrong medium type.
    pub const EMEDIUMTYPE: Errno = Errno::known(124);
    /// `ECANCELED` (125): Operation Canceled.
    pub const ECANCELED: Errno = Errno::known(125);
    /// `ENOKEY` (126): Required key not available.
    pub const ENOKEY: Errno = Errno::known(126);
    /// `EKEYEXPIRED` (127): Key has expired.
    pub const EKEYEXPIRED: Errno = Errno::known(127);
    /// `EKEYREVOKED` (128): Key has been revoked.
    pub const EKEYREVOKED: Errno = Errno::known(128);
    /// `EKEYREJECTED` (129): Key was rejected by service.
    pub const EKEYREJECTED: Errno = Errno::known(129);
    /// `EOWNERDEAD` (130): Owner died.
    pub const EOWNERDEAD: Errno = Errno::known(130);
    /// `ENOTRECOVERABLE` (131): State not recoverable.
    pub const ENOTRECOVERABLE: Errno = Errno::known(131);
    /// `ERFKILL` (132): Operation not possible due to RF-kill.
    pub const ERFKILL: Errno = Errno::known(132);
    /// `EHWPOISON` (133): Memory page has hardware error.
    pub const EHWPOISON: Errno = Errno::known(133);
    /// `EWOULDBLOCK`: the same number as `EAGAIN`.
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// `EDEADLOCK`: the same number as `EDEADLK`.
    pub const EDEADLOCK: Errno = Errno::EDEADLK;
}

impl core::fmt::Debug for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "Errno({})", self.get()),
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.get()),
            None => write!(f, "errno {}", self.get()),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_1_to_511_are_errors() {
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(-2), None);
        assert_eq!(Errno::new(512), None);
        assert_eq!(Errno::new(i32::MIN), None);
        assert_eq!(Errno::new(2), Some(Errno::ENOENT));
        assert_eq!(Errno::new(511).map(Errno::get), Some(511));
        assert_eq!(Errno::new_or_eio(100_000), Errno::EIO);
    }

    #[test]
    fn wire_value_is_negative_and_in_range() {
        for n in 1..=511 {
            let e = Errno::new(n).unwrap();
            assert_eq!(e.to_wire(), -n);
            assert!((-511..=-1).contains(&e.to_wire()));
            assert_eq!(Errno::from_wire(e.to_wire()), Some(e));
        }
        assert_eq!(Errno::from_wire(0), None);
        assert_eq!(Errno::from_wire(5), None);
        assert_eq!(Errno::from_wire(-512), None);
        assert_eq!(Errno::from_wire(i32::MIN), None);
    }

    #[test]
    fn names() {
        assert_eq!(Errno::ENOENT.name(), Some("ENOENT"));
        assert_eq!(Errno::ENOSYS.get(), 38);
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::new(400).unwrap().name(), None);
    }
}

/// The error's OS errno, or `EIO` for an error that carries none (`io::Error::other`, a
/// custom error): what to answer the kernel with when a call of the filesystem's own fails.
#[cfg(feature = "std")]
impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        e.raw_os_error().map_or(Errno::EIO, Errno::new_or_eio)
    }
}

#[cfg(all(test, feature = "std"))]
mod io_tests {
    use super::Errno;

    #[test]
    fn io_errors_keep_their_errno() {
        let e = std::fs::metadata("/nonexistent/ringfuse").unwrap_err();
        assert_eq!(Errno::from(e), Errno::ENOENT);
        assert_eq!(Errno::from(std::io::Error::other("no errno")), Errno::EIO);
    }
}
