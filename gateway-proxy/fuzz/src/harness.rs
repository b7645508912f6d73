//! What the fuzz targets check, input by input. Shared with the regression test that replays
//! every input that ever failed here (`gateway-proxy/tests/fuzz_regressions.rs`): the paths
//! below name the real crates there, and this crate itself in the fuzz build.

use gateway_proxy::chat_session::{SessionDefaults, chat_send_session};
use gateway_proxy::client_codec::{Broke, ClientCodec, ClientSink, Message};
use gateway_proxy::frame_cursor::{FrameCursor, Passed};
use gateway_proxy::request_read::{Read, read_request, read_request_fully};
use gateway_proxy::request_scan::scan_request;
use gateway_proxy::upgrade_request;
use gateway_proxy::wire::Header;
use shared_protocol::ScopeSet;
use shared_protocol::js_json::{self, Value};
use shared_protocol::scopes::{Scope, core_requirement};

/// Message limit in the codec target: small, so that inputs reach the too-big paths.
const MAX_MESSAGE: usize = 4096;

/// What a run of the codec decided: each message seen, the bytes forwarded, how it ended.
#[derive(Debug, Default, PartialEq, Eq)]
struct Recorder {
    frames: usize,
    messages: Vec<(u8, usize)>,
    out: Vec<u8>,
}

impl ClientSink for Recorder {
    type Error = Broke;
    fn frame(&mut self, h: &Header) -> Result<(), Broke> {
        self.frames += 1;
        // A frame budget that some inputs exhaust.
        if self.frames > 200 && h.opcode == 0x9 {
            return Err(Broke {
                code: 1008,
                reason: "too many frames",
            });
        }
        Ok(())
    }
    fn message(&mut self, m: Message<'_>) -> Result<bool, Broke> {
        let (kind, len) = match m {
            Message::Text(t) => (1, t.len()),
            Message::Binary => (2, 0),
            Message::Ping => (9, 0),
            Message::Pong => (10, 0),
        };
        self.messages.push((kind, len));
        Ok(kind != 2 && len % 3 != 1)
    }
    fn forward(&mut self, bytes: &[u8]) -> Result<(), Broke> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn mask(&mut self) -> [u8; 4] {
        [1, 2, 3, 4]
    }
}

/// Feeds `stream` to a fresh codec `chunk` bytes at a time.
fn run(stream: &[u8], chunk: usize) -> (Recorder, Result<bool, Broke>) {
    let mut codec = ClientCodec::new(MAX_MESSAGE);
    let mut sink = Recorder::default();
    for piece in stream.chunks(chunk) {
        let mut buf = piece.to_vec();
        match codec.read(&mut buf, &mut sink) {
            Ok(p) if p.closed => return (sink, Ok(true)),
            Ok(_) => {}
            Err(e) => return (sink, Err(e)),
        }
        // Never more held than the message limit, its header and one read ahead.
        assert!(
            codec.held()
                <= 2 * MAX_MESSAGE
                    + 64
                    + chunk.max(gateway_proxy::client_codec::PARTIAL_RESERVE_BYTES)
        );
    }
    (sink, Ok(false))
}

/// The client path's codec, and the frame follower of the gateway path: any bytes, cut at the
/// place the first byte says; never a panic, and the same decisions, forwarded bytes and end
/// whether the stream came whole or cut.
pub fn client_frames(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 32) + 1;
    let whole = run(stream, stream.len().max(1));
    let cut_up = run(stream, chunk);
    assert_eq!(whole, cut_up, "cut every {chunk} bytes");

    let follow = |chunk: usize| {
        let mut cursor = FrameCursor::new();
        let mut total = Passed::default();
        for piece in stream.chunks(chunk) {
            let p = cursor.follow(piece);
            total.messages += p.messages;
            total.close |= p.close;
        }
        (total, cursor.at_message_boundary(), cursor.allowance())
    };
    assert_eq!(follow(stream.len().max(1)), follow(chunk));
}

/// The request scanner and the policy decision on any text: the fast path reads what the full
/// (`JSON.parse`) reading reads whenever it answers, and deciding a request never panics.
pub fn request_decision(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if scan_request(text).is_some() {
        match (read_request(text), read_request_fully(text)) {
            (Read::Request(fast), Read::Request(full)) => {
                assert_eq!(fast.id_json, full.id_json);
                assert_eq!(fast.method, full.method);
                let raw =
                    |v: Option<Value<'_>>| v.map(|p| p.raw().to_string()).filter(|p| p != "null");
                assert_eq!(raw(fast.params), raw(full.params));
            }
            (fast, full) => panic!("scanner {fast:?}, full reading {full:?}"),
        }
    }
    if let Read::Request(r) = read_request(text) {
        let sets = [
            ScopeSet::EMPTY,
            ScopeSet::from_iter([Scope::Read]),
            ScopeSet::from_iter([Scope::Read, Scope::Write]),
            ScopeSet::from_iter([Scope::Admin]),
        ];
        if let Some(req) = core_requirement(r.method.as_str(), r.params) {
            let admin = req.check(sets[3]);
            for s in sets {
                let _ = req.check(s);
            }
            // Admin satisfies every operator rule.
            assert!(admin.is_ok() || admin == Err(None));
        }
        let _ = chat_send_session(r.params, &SessionDefaults::default());
    }
    if let Ok(v) = js_json::parse(text) {
        walk(v, 0);
    }
}

/// Reads every member and string of a value, a few levels down.
fn walk(v: Value<'_>, depth: usize) {
    if depth > 6 {
        return;
    }
    let _ = v.as_str();
    for (k, x) in v.members() {
        let key = k.decode();
        if key.lossless {
            assert!(v.get(key.as_str()).is_some());
        }
        walk(x, depth + 1);
    }
}

/// The upgrade request's judge on any bytes: never a panic; an accepted request has a proper
/// key; the end of the head is found wherever the search resumes.
pub fn upgrade_request(data: &[u8]) {
    if let Ok(u) = upgrade_request::check(data) {
        assert_eq!(u.key.len(), 24);
    }
    let end = upgrade_request::head_end(data, 0);
    if let Some(end) = end {
        for from in [0, end / 2, end.saturating_sub(4), end.saturating_sub(1)] {
            assert_eq!(upgrade_request::head_end(data, from), Some(end));
        }
    }
    let _ = upgrade_request::check_unfinished(data.len());
}
