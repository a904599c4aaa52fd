//! Fuzz target: see `fortress_props::wire` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fortress_props::wire(data));
