//! The wire protocol from the outside: round trips, chunking, garbage, limits, truncation and
//! payloads, each with its exact outcome.

use infect::wire::{
    Aid, DEFAULT_MAX_FRAME, FrameDecoder, FuncKind, Malformed, Msg, SpawnSpec, WireError, decode_payload, encode_frame,
    encode_payload,
};
use infect::wire::{CUT_MARKER, TtyReq, encode_frame_fit};
use serde::{Deserialize, Serialize};

fn aid(name: &str) -> Aid {
    Aid { name: name.into(), uuid: format!("{name}-uuid"), pid: 4242 }
}

/// One message of every variant, with non-trivial fields.
fn every_variant() -> Vec<Msg> {
    vec![
        Msg::Aid(aid("child")),
        Msg::SpawnSpec(SpawnSpec {
            protocol: infect::wire::PROTOCOL_VERSION,
            parent: aid("root"),
            name: "child".into(),
            enable_modules: vec!["math".into(), "io".into()],
            infect_host: true,
            debug_mode: true,
        }),
        Msg::Start {
            cid: 1,
            ns: "math".into(),
            func: "add".into(),
            args: encode_payload(&(2u32, 3u32)).unwrap(),
            kind: FuncKind::Function,
        },
        Msg::StartAck { cid: 1, functype: FuncKind::Function },
        Msg::StartAck { cid: 2, functype: FuncKind::Context },
        Msg::Started { cid: 2, value: vec![0, 1, 0, 0xFF] },
        Msg::Yield { cid: 2, value: vec![0; 300] },
        Msg::Stop { cid: 2 },
        Msg::Return { cid: u64::MAX, value: vec![0xAB; 1000] },
        Msg::CancelAck { cid: Some(2) },
        Msg::CancelAck { cid: None },
        Msg::Credit { cid: 2, n: 512 },
        Msg::StreamWindow { items: 16 },
        Msg::Error {
            cid: Some(3),
            src: aid("grandchild"),
            boxed_type: "ContextCancelled".into(),
            message: "cancelled by child".into(),
            relay_path: vec!["grandchild".into(), "child".into()],
            canceller: Some("child".into()),
        },
        Msg::Error {
            cid: None,
            src: aid("child"),
            boxed_type: "Corrupt".into(),
            message: String::new(),
            relay_path: vec![],
            canceller: None,
        },
        Msg::Cancel { cid: Some(3) },
        Msg::Cancel { cid: None },
        Msg::DumpRequest { id: 7, wait_ms: 2000 },
        Msg::DumpReply { id: 7, text: "actor \"child\"\n".into() },
        Msg::TtyLock { req: TtyReq { who: aid("child"), n: 0 } },
        Msg::TtyGranted { req: TtyReq { who: aid("child"), n: 1 } },
        Msg::TtyRelease { req: TtyReq { who: aid("child"), n: 1 }, quit: true },
    ]
}

fn stream_of(msgs: &[Msg]) -> Vec<u8> {
    msgs.iter().flat_map(|m| encode_frame(m, DEFAULT_MAX_FRAME).unwrap()).collect()
}

fn decode_all<const MAX: usize>(chunks: &[&[u8]]) -> (Vec<Result<Msg, WireError>>, Option<WireError>) {
    let mut decoder = FrameDecoder::<MAX>::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        out.extend(decoder.by_ref());
    }
    (out, decoder.finish())
}

#[test]
fn every_variant_round_trips() {
    for msg in every_variant() {
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(frame.last(), Some(&0));
        assert!(!frame[..frame.len() - 1].contains(&0), "{msg:?}: a zero inside the frame");
        let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&[&frame]);
        assert_eq!(out, [Ok(msg)]);
        assert_eq!(end, None);
    }
}

#[test]
fn a_stream_of_every_variant_decodes_in_order() {
    let msgs = every_variant();
    let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&[&stream_of(&msgs)]);
    assert_eq!(out, msgs.into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!(end, None);
}

#[test]
fn one_byte_at_a_time_gives_the_same_messages() {
    let msgs = every_variant();
    let stream = stream_of(&msgs);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&bytes);
    assert_eq!(out, msgs.into_iter().map(Ok).collect::<Vec<_>>());
    assert_eq!(end, None);
}

#[test]
fn garbage_then_valid_frames_gives_one_error_then_every_message() {
    let msgs = every_variant();
    // Not COBS: the first code byte (0x30) points past the end of the 11-byte frame.
    let mut stream = b"0123456789\n\x00".to_vec();
    stream.extend(stream_of(&msgs));
    let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&[&stream]);
    let mut expected = vec![Err(WireError::Corrupt { size: 12 })];
    expected.extend(msgs.into_iter().map(Ok));
    assert_eq!(out, expected);
    assert_eq!(end, None);
}

#[test]
fn a_valid_cobs_frame_that_is_not_a_msg_is_undecodable() {
    // COBS of [0x7F]: variant 127 does not exist.
    let mut stream = vec![0x02, 0x7F, 0x00];
    // COBS of a valid `Stop { cid: 1 }` followed by one stray byte.
    let mut stop = postcard::to_allocvec(&Msg::Stop { cid: 1 }).unwrap();
    stop.push(0x05);
    stream.extend([stop.len() as u8 + 1]);
    stream.extend(&stop);
    stream.push(0);
    stream.extend(encode_frame(&Msg::Stop { cid: 2 }, DEFAULT_MAX_FRAME).unwrap());

    let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&[&stream]);
    assert_eq!(out.len(), 3);
    assert!(matches!(&out[0], Err(WireError::Undecodable { size: 3, reason: Malformed::Postcard(_) })));
    assert_eq!(out[1], Err(WireError::Undecodable { size: stop.len() + 2, reason: Malformed::TrailingBytes(1) }));
    assert_eq!(out[2], Ok(Msg::Stop { cid: 2 }));
    assert_eq!(end, None);
}

#[test]
fn the_sender_refuses_a_frame_over_the_limit_with_exact_sizes() {
    // postcard: tag, cid, a 2-byte length, 1000 bytes = 1004 bytes; COBS adds one code byte per
    // block of up to 254 bytes (4 blocks), then the delimiter: 1009.
    let msg = Msg::Return { cid: 1, value: vec![0xAB; 1000] };
    let size = postcard::to_allocvec_cobs(&msg).unwrap().len();
    assert_eq!(size, 1009);
    assert_eq!(encode_frame(&msg, 1008), Err(WireError::FrameTooLarge { size: 1009, max: 1008 }));
    assert_eq!(encode_frame(&msg, 1009).unwrap().len(), 1009);

    // 3 + 3 + 65536 = 65541 bytes in 259 blocks, plus the delimiter: 65801.
    let big = Msg::Yield { cid: 9, value: vec![1; DEFAULT_MAX_FRAME] };
    let err = encode_frame(&big, DEFAULT_MAX_FRAME).unwrap_err();
    assert_eq!(err, WireError::FrameTooLarge { size: 65_801, max: 65_536 });
    assert_eq!(
        err.to_string(),
        "a frame of 65801 bytes exceeds the 65536-byte frame limit: send less per message \
         (split it, or stream it as `Yield`s) or raise the limit on both ends of the pipe"
    );
}

#[test]
fn an_oversized_incoming_frame_is_reported_and_the_next_frame_decodes() {
    // The peer's limit is larger than ours (1024 bytes).
    let big = encode_frame(&Msg::Return { cid: 1, value: vec![0xAB; 1000] }, usize::MAX).unwrap();
    assert_eq!(big.len(), 1009);
    let small = encode_frame(&Msg::Stop { cid: 2 }, 1000).unwrap();
    let mut stream = big.clone();
    stream.extend(&small);

    for chunk in [1, 7, 1000, stream.len()] {
        let pieces: Vec<&[u8]> = stream.chunks(chunk).collect();
        let (out, end) = decode_all::<1000>(&pieces);
        assert_eq!(
            out,
            [Err(WireError::FrameTooLarge { size: 1009, max: 1000 }), Ok(Msg::Stop { cid: 2 })],
            "chunk size {chunk}"
        );
        assert_eq!(end, None);
    }
}

#[test]
fn truncation_at_eof_is_reported_with_the_exact_byte_count() {
    let frame = encode_frame(&Msg::Return { cid: 5, value: vec![7; 20] }, DEFAULT_MAX_FRAME).unwrap();
    let mut stream = stream_of(&[Msg::Stop { cid: 4 }]);
    stream.extend(&frame[..13]);
    let (out, end) = decode_all::<DEFAULT_MAX_FRAME>(&[&stream]);
    assert_eq!(out, [Ok(Msg::Stop { cid: 4 })]);
    assert_eq!(end, Some(WireError::Truncated { bytes: 13 }));
    assert_eq!(
        end.unwrap().to_string(),
        "the stream ended 13 bytes into a frame: the peer exited or closed the pipe in the middle \
         of a write"
    );
}

#[test]
fn an_oversized_frame_cut_by_eof_is_reported_as_too_large() {
    let (out, end) = decode_all::<32>(&[&[0x22; 50]]);
    assert_eq!(out, []);
    assert_eq!(end, Some(WireError::FrameTooLarge { size: 50, max: 32 }));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    item: String,
    quantities: Vec<u16>,
    rush: Option<bool>,
}

#[test]
fn user_payloads_round_trip_and_a_type_mismatch_names_the_type() {
    let order = Order { id: 17, item: "widget".into(), quantities: vec![1, 300], rush: Some(true) };
    let bytes = encode_payload(&order).unwrap();
    assert_eq!(decode_payload::<Order>(&bytes).unwrap(), order);

    // Carried inside a message and back.
    let msg = Msg::Return { cid: 1, value: bytes.clone() };
    let (out, _) = decode_all::<DEFAULT_MAX_FRAME>(&[&encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap()]);
    let Ok(Msg::Return { value, .. }) = &out[0] else { panic!("{out:?}") };
    assert_eq!(decode_payload::<Order>(value).unwrap(), order);

    // The receiver expected a `u32`: it decodes 17 and finds the rest left over.
    let err = decode_payload::<u32>(&bytes).unwrap_err();
    assert_eq!(err, WireError::Decode { type_name: "u32", reason: Malformed::TrailingBytes(bytes.len() - 1) });
    // Too short for the expected type.
    let err = decode_payload::<Order>(&bytes[..3]).unwrap_err();
    assert_eq!(
        err,
        WireError::Decode {
            type_name: "wire::Order",
            reason: Malformed::Postcard(postcard::Error::DeserializeUnexpectedEnd),
        }
    );
    assert!(err.to_string().starts_with("could not decode the payload as a `wire::Order`"));
}

fn big_error(name: &str, message: &str, hops: usize) -> Msg {
    Msg::Error {
        cid: Some(9),
        src: Aid { name: name.into(), uuid: "u".repeat(40), pid: 4242 },
        boxed_type: "ValueError".into(),
        message: message.into(),
        relay_path: (0..hops).map(|i| format!("hop{i}-{}", "h".repeat(60))).collect(),
        canceller: Some("c".repeat(100)),
    }
}

fn decode_one(frame: &[u8]) -> Msg {
    let mut d = FrameDecoder::<DEFAULT_MAX_FRAME>::new();
    d.push(frame);
    let msg = d.next().expect("one outcome").expect("a message");
    assert_eq!(d.next(), None);
    msg
}

#[test]
fn an_error_that_fits_is_sent_as_it_is() {
    let msg = big_error("w", "short", 1);
    assert_eq!(encode_frame_fit(&msg, DEFAULT_MAX_FRAME).unwrap(), encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap());
}

#[test]
fn an_oversized_error_is_cut_to_fit() {
    // Only the message needs cutting: everything else is kept, the message is the longest
    // prefix that fits (one more byte would not), marked as cut.
    let msg = big_error("worker", &"é".repeat(400), 1);
    let frame = encode_frame_fit(&msg, 512).unwrap();
    assert!(frame.len() <= 512, "{}", frame.len());
    let Msg::Error { cid, src, boxed_type, message, relay_path, canceller } = decode_one(&frame) else { panic!() };
    let Msg::Error { src: src0, relay_path: path0, canceller: c0, .. } = &msg else { panic!() };
    assert_eq!((cid, &src, boxed_type.as_str(), &relay_path, &canceller), (Some(9), src0, "ValueError", path0, c0));
    let kept = message.strip_suffix(CUT_MARKER).expect("marked as cut");
    assert!(kept.chars().all(|c| c == 'é') && !kept.is_empty());
    let mut longer = decode_one(&frame);
    if let Msg::Error { message, .. } = &mut longer {
        *message = format!("{kept}é{CUT_MARKER}");
    }
    assert!(encode_frame(&longer, 512).is_err(), "one more character would have fit");
}

#[test]
fn an_error_with_huge_names_still_fits_the_smallest_limit() {
    let msg = big_error(&"n".repeat(5000), &"m".repeat(5000), 50);
    let frame = encode_frame_fit(&msg, 256).unwrap();
    assert!(frame.len() <= 256, "{}", frame.len());
    let Msg::Error { cid, src, boxed_type, message, relay_path, canceller } = decode_one(&frame) else { panic!() };
    assert_eq!((cid, src.pid, boxed_type.as_str()), (Some(9), 4242, "ValueError"));
    assert!(src.name.starts_with("nnn") && src.name.ends_with('…') && src.name.len() <= 64, "{}", src.name);
    assert!(message.ends_with(CUT_MARKER), "{message}");
    assert!(relay_path.len() <= 4 && relay_path.last().unwrap().starts_with("hop49"), "{relay_path:?}");
    assert!(canceller.unwrap().len() <= 64);
}

#[test]
fn other_messages_over_the_limit_are_still_refused() {
    let msg = Msg::Return { cid: 1, value: vec![1; 300] };
    assert_eq!(encode_frame_fit(&msg, 256), encode_frame(&msg, 256));
    assert!(matches!(encode_frame_fit(&msg, 256), Err(WireError::FrameTooLarge { max: 256, .. })));
}
