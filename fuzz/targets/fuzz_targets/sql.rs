//! Fuzz target: see `fortress_props::sql` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fortress_props::sql(data));
