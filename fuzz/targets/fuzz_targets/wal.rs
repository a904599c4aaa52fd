//! Fuzz target: see `fortress_props::wal` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fortress_props::wal(data));
