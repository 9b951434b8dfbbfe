//! Fuzz target `compact`: compaction of arbitrary memory and roots under
//! an arbitrary policy must verify (`ptwalk::compact::verify`) whenever
//! it succeeds. Written against the compaction API of its day; small on
//! purpose, to follow that API as it changes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ptwalk::I686;
use ptwalk::compact::{Compactor, Policy, verify};

#[allow(dead_code)]
mod input;

fuzz_target!(|data: &[u8]| {
    let c = input::decode(data);
    let mode = I686 { pse: c.pse };
    let p = c.policy;
    let skip_end = c.address.saturating_add(c.len);
    let policy = Policy {
        skip: if p & 0x10 != 0 && c.address < skip_end {
            core::iter::once(c.address..skip_end).collect()
        } else {
            Vec::new()
        },
        cow: p & 1 != 0,
        split_large: p & 2 != 0,
        drop_device_pages: p & 4 != 0,
        keep_empty_tables: p & 8 != 0,
    };
    let Ok(compactor) = Compactor::new(&c.mem[..], &c.roots) else {
        return; // duplicate roots: refused up front
    };
    let Ok(out) = compactor.with_mode(mode).policy(policy.clone()).run() else {
        return; // e.g. an address the rebuilt tables cannot encode
    };
    let report = verify(mode, &c.mem[..], &c.roots, &out, out.roots(), &policy);
    assert!(
        report.is_ok(),
        "compact-then-verify failed: {report:#?}\n{:?}",
        out.stats()
    );
});
