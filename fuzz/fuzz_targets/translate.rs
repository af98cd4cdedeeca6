#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| infect::fuzzing::translate::run(data));
