#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| infect::fuzzing::hostile_peer::run(data));
