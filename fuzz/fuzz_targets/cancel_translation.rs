#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| infect::fuzzing::cancel_translation::run(data));
