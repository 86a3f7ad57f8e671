//! Arbitrary input sequences into `ClusterState`, invariants and contract checked after
//! each: see `clutch_sim::fuzz::cluster_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clutch_sim::fuzz::cluster_inputs(data).unwrap_or_else(|e| panic!("{e}"));
});
