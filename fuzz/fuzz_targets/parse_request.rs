//! Arbitrary bytes into the request parser, in both forms, with the round-trip property:
//! whatever parses must encode back to a request that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfuse_abi::Opcode;
use ringfuse_abi::request::{
    IN_HEADER_SIZE, Operation, ParseConfig, Request, fixed_arg_size, parse_header,
};

/// `same_len`: whether `req.header.len` must survive the round trip. Two documented cases
/// can't: INIT, whose argument is accepted at 8..=64 bytes (zero-extended, as the kernel's
/// older 16-byte form needs) and always encoded at 64; and an unknown opcode parsed from the
/// split form, whose `op_in` bytes are not kept (their size is unknowable).
fn check(req: &Request<'_>, cfg: &ParseConfig, same_len: bool) {
    let mut buf = vec![0u8; 2 << 20];
    let n = req.encode(cfg, &mut buf).expect("a parsed request encodes");
    let mut again = Request::parse(&buf[..n], cfg).expect("an encoded request parses");
    if !same_len {
        again.header.len = req.header.len;
    }
    assert_eq!(&again, req, "classic round trip");

    let (mut in_out, mut op_in, mut payload) = ([0u8; 128], [0u8; 128], vec![0u8; 2 << 20]);
    if let Ok(m) = req.encode_split(cfg, &mut in_out, &mut op_in, &mut payload) {
        let fixed = fixed_arg_size(req.opcode(), cfg);
        let mut split = Request::parse_split(&in_out, &op_in[..fixed], &payload[..m], cfg)
            .expect("a split-encoded request parses");
        if !same_len {
            split.header.len = req.header.len;
        }
        assert_eq!(&split, req, "split round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the configuration; the rest is the request.
    let Some((&sel, bytes)) = data.split_first() else { return };
    let cfg = ParseConfig::default().with_setxattr_ext(sel & 1 == 1);

    if let Ok(req) = Request::parse(bytes, &cfg) {
        let init = matches!(req.op, Operation::Init { .. });
        check(&req, &cfg, !init);
    }

    // The native transport's layout: the same bytes cut into header / op_in / payload.
    if let Ok(header) = parse_header(bytes) {
        let body = &bytes[IN_HEADER_SIZE.min(bytes.len())..];
        let fixed = fixed_arg_size(Opcode::from(header.opcode), &cfg).min(body.len());
        let cut = if sel & 2 == 2 { fixed } else { usize::from(sel >> 2).min(body.len()) };
        let (op_in, payload) = body.split_at(cut);
        if let Ok(req) = Request::parse_split(&bytes[..IN_HEADER_SIZE], op_in, payload, &cfg) {
            let lossy = match req.op {
                Operation::Unknown { .. } => !op_in.is_empty(),
                Operation::Init { .. } => true,
                _ => false,
            };
            check(&req, &cfg, !lossy);
        }
    }
});
