#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| infect::fuzzing::wire_decode::run(data));
