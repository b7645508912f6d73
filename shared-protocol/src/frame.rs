//! Frames: parse once, borrowing from the text; payloads decoded only when someone asks.
//!
//! The proxy sits on every frame, so [`Frame::parse`] reads just the envelope (`type`, `id`,
//! `method`/`event`, `ok`, `seq`) and keeps `params`/`payload`/`error` as raw JSON slices of the
//! original text. Forward the original bytes; never re-serialise a frame you pass on.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::ErrorShape;

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Binary frame or text that is not UTF-8.
    #[error("frame is not valid UTF-8 text")]
    NotUtf8,
    /// Not a JSON object of the frame shape.
    #[error("frame is not valid JSON: {0}")]
    Json(String),
    /// A field the frame kind requires is absent.
    #[error("`{kind}` frame has no `{field}` field")]
    MissingField {
        /// Frame kind.
        kind: &'static str,
        /// Missing field.
        field: &'static str,
    },
    /// `type` is not `req`, `res` or `event`.
    #[error("unknown frame type `{0}`")]
    UnknownType(String),
    /// The payload or params do not have the expected shape.
    #[error("{what} has an unexpected shape: {detail}")]
    Payload {
        /// What was being decoded.
        what: &'static str,
        /// serde's explanation.
        detail: String,
    },
    /// Serialising an outbound frame failed (a bug, not bad input).
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

/// A parsed frame, borrowing from the text it was read from.
#[derive(Debug, Clone)]
pub enum Frame<'a> {
    /// `type: "req"`.
    Request(RequestFrame<'a>),
    /// `type: "res"`.
    Response(ResponseFrame<'a>),
    /// `type: "event"`.
    Event(EventFrame<'a>),
}

/// A request: `{type:"req", id, method, params?}`.
#[derive(Debug, Clone)]
pub struct RequestFrame<'a> {
    /// Correlation id echoed by the response.
    pub id: Cow<'a, str>,
    /// Method name.
    pub method: Cow<'a, str>,
    /// Raw params, decoded on demand.
    pub params: Option<&'a RawValue>,
}

/// A response: `{type:"res", id, ok, payload?, error?}`.
#[derive(Debug, Clone)]
pub struct ResponseFrame<'a> {
    /// Echo of the request id.
    pub id: Cow<'a, str>,
    /// Success flag.
    pub ok: bool,
    /// Raw payload (present on success, sometimes on failure too).
    pub payload: Option<&'a RawValue>,
    /// Raw error object.
    pub error: Option<&'a RawValue>,
}

/// An event: `{type:"event", event, payload?, seq?}`.
#[derive(Debug, Clone)]
pub struct EventFrame<'a> {
    /// Event name (`chat`, `tick`, `connect.challenge`...).
    pub event: Cow<'a, str>,
    /// Raw payload.
    pub payload: Option<&'a RawValue>,
    /// Per-connection sequence number; a gap means events were dropped.
    pub seq: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_str")]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_str")]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "borrowed_str")]
    event: Option<Cow<'a, str>>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default)]
    seq: Option<u64>,
}

/// An optional string borrowed from the frame when it has no escapes. serde borrows a bare
/// `Cow<str>` field but always allocates for `Option<Cow<str>>`: one allocation per field per
/// frame on the proxy's hot path.
fn borrowed_str<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl<'a> Frame<'a> {
    /// Parses one text frame. Unknown fields are ignored; a wrong shape is a typed error.
    ///
    /// # Errors
    /// [`FrameError`] when the text is not a frame.
    pub fn parse(text: &'a str) -> Result<Self, FrameError> {
        let env: Envelope<'a> =
            serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
        let missing = |kind, field| FrameError::MissingField { kind, field };
        match env.kind.as_ref() {
            "req" => Ok(Frame::Request(RequestFrame {
                id: non_empty(env.id).ok_or(missing("req", "id"))?,
                method: non_empty(env.method).ok_or(missing("req", "method"))?,
                params: env.params,
            })),
            "res" => Ok(Frame::Response(ResponseFrame {
                id: env.id.ok_or(missing("res", "id"))?,
                ok: env.ok.ok_or(missing("res", "ok"))?,
                payload: env.payload,
                error: env.error,
            })),
            "event" => Ok(Frame::Event(EventFrame {
                event: non_empty(env.event).ok_or(missing("event", "event"))?,
                payload: env.payload,
                seq: env.seq,
            })),
            other => Err(FrameError::UnknownType(other.to_string())),
        }
    }

    /// Parses a frame from bytes (a binary WebSocket message or a raw buffer).
    ///
    /// # Errors
    /// [`FrameError::NotUtf8`] or any error of [`Frame::parse`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, FrameError> {
        Self::parse(std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)?)
    }
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

fn decode<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    what: &'static str,
) -> Result<T, FrameError> {
    let text = raw.map_or("null", RawValue::get);
    serde_json::from_str(text).map_err(|e| FrameError::Payload {
        what,
        detail: e.to_string(),
    })
}

impl<'a> RequestFrame<'a> {
    /// Decodes `params` (absent params decode from `null`).
    ///
    /// # Errors
    /// [`FrameError::Payload`] when params do not match `T`.
    pub fn params_as<T: Deserialize<'a>>(&self) -> Result<T, FrameError> {
        decode(self.params, "request params")
    }
}

impl<'a> ResponseFrame<'a> {
    /// Decodes `payload`.
    ///
    /// # Errors
    /// [`FrameError::Payload`] when the payload does not match `T`.
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, FrameError> {
        decode(self.payload, "response payload")
    }

    /// The error object, if any. A malformed error still yields an `ErrorShape` (code
    /// `MALFORMED_ERROR`), so a failed response is never mistaken for a success.
    pub fn error(&self) -> Option<ErrorShape> {
        let raw = self.error?;
        Some(serde_json::from_str(raw.get()).unwrap_or_else(|_| {
            ErrorShape::new(
                crate::ErrorCode::Unknown("MALFORMED_ERROR".into()),
                raw.get().to_string(),
            )
        }))
    }
}

impl<'a> EventFrame<'a> {
    /// Decodes `payload`.
    ///
    /// # Errors
    /// [`FrameError::Payload`] when the payload does not match `T`.
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, FrameError> {
        decode(self.payload, "event payload")
    }
}

#[derive(Serialize)]
struct OutRequest<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    method: &'a str,
    params: &'a P,
}

#[derive(Serialize)]
struct OutResponse<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a P>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorShape>,
}

#[derive(Serialize)]
struct OutEvent<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a str,
    payload: &'a P,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

fn encode<T: Serialize>(value: &T) -> Result<String, FrameError> {
    serde_json::to_string(value).map_err(|e| FrameError::Encode(e.to_string()))
}

/// Encodes a request frame.
///
/// # Errors
/// [`FrameError::Encode`] only if `params` cannot be serialised (a bug).
pub fn encode_request<P: Serialize>(
    id: &str,
    method: &str,
    params: &P,
) -> Result<String, FrameError> {
    encode(&OutRequest {
        kind: "req",
        id,
        method,
        params,
    })
}

/// Encodes a successful response.
///
/// # Errors
/// [`FrameError::Encode`] only if `payload` cannot be serialised (a bug).
pub fn encode_response_ok<P: Serialize>(id: &str, payload: &P) -> Result<String, FrameError> {
    encode(&OutResponse {
        kind: "res",
        id,
        ok: true,
        payload: Some(payload),
        error: None,
    })
}

/// Encodes a failed response, optionally with a payload (chat.send setup failures carry one).
///
/// # Errors
/// [`FrameError::Encode`] only if `payload` cannot be serialised (a bug).
pub fn encode_response_err<P: Serialize>(
    id: &str,
    error: &ErrorShape,
    payload: Option<&P>,
) -> Result<String, FrameError> {
    encode(&OutResponse {
        kind: "res",
        id,
        ok: false,
        payload,
        error: Some(error),
    })
}

/// Encodes an event frame.
///
/// # Errors
/// [`FrameError::Encode`] only if `payload` cannot be serialised (a bug).
pub fn encode_event<P: Serialize>(
    event: &str,
    payload: &P,
    seq: Option<u64>,
) -> Result<String, FrameError> {
    encode(&OutEvent {
        kind: "event",
        event,
        payload,
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fields without escapes borrow from the text (no allocation per frame); escaped ones are
    /// decoded.
    #[test]
    fn strings_borrow_unless_escaped() {
        let Frame::Request(r) =
            Frame::parse(r#"{"type":"req","id":"r1","method":"health"}"#).unwrap()
        else {
            panic!("not a request")
        };
        assert!(matches!(r.id, Cow::Borrowed("r1")));
        assert!(matches!(r.method, Cow::Borrowed("health")));
        let Frame::Event(e) = Frame::parse(r#"{"type":"event","event":"a\"b"}"#).unwrap() else {
            panic!("not an event")
        };
        assert!(matches!(e.event, Cow::Owned(ref s) if s == "a\"b"));
    }

    #[test]
    fn parses_each_kind_and_keeps_raw_payloads() {
        let req =
            r#"{"type":"req","id":"1","method":"chat.send","params":{"sessionKey":"k","x":[1,2]}}"#;
        let Frame::Request(r) = Frame::parse(req).unwrap() else {
            panic!("not a request")
        };
        assert_eq!((r.id.as_ref(), r.method.as_ref()), ("1", "chat.send"));
        assert_eq!(r.params.unwrap().get(), r#"{"sessionKey":"k","x":[1,2]}"#);

        let res = r#"{"type":"res","id":"1","ok":false,"error":{"code":"FORBIDDEN","message":"m"},"extra":true}"#;
        let Frame::Response(r) = Frame::parse(res).unwrap() else {
            panic!("not a response")
        };
        assert!(!r.ok);
        assert_eq!(r.error().unwrap().code, crate::ErrorCode::Forbidden);

        let ev = r#"{"type":"event","event":"tick","payload":{"ts":5},"seq":24}"#;
        let Frame::Event(e) = Frame::parse(ev).unwrap() else {
            panic!("not an event")
        };
        assert_eq!((e.event.as_ref(), e.seq), ("tick", Some(24)));
    }

    #[test]
    fn typed_errors_for_bad_frames() {
        assert!(matches!(Frame::parse("[]"), Err(FrameError::Json(_))));
        assert!(
            matches!(Frame::parse(r#"{"type":"nope"}"#), Err(FrameError::UnknownType(t)) if t == "nope")
        );
        assert_eq!(
            Frame::parse(r#"{"type":"req","id":"","method":"x"}"#).unwrap_err(),
            FrameError::MissingField {
                kind: "req",
                field: "id"
            }
        );
        assert_eq!(
            Frame::parse_bytes(&[0xff, 0xfe]).unwrap_err(),
            FrameError::NotUtf8
        );
        let malformed = r#"{"type":"res","id":"1","ok":false,"error":"boom"}"#;
        let Frame::Response(r) = Frame::parse(malformed).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.error().unwrap().code,
            crate::ErrorCode::Unknown("MALFORMED_ERROR".into())
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_frame_or_a_typed_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Frame::parse_bytes(&bytes);
        }

        #[test]
        fn any_json_ish_text_gives_a_frame_or_a_typed_error(text in r#"\{("(type|id|method|event|ok|seq|params|payload|error)":("req"|"res"|"event"|"x"|1|-1|true|null|\{\}|\[\]|""),?){0,8}\}"#) {
            if let Ok(Frame::Response(r)) = Frame::parse(&text) {
                let _ = r.error();
                let _ = r.payload_as::<serde_json::Value>();
            }
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let Frame::Request(r) = Frame::parse(r#"{"type":"req","id":"a\"b","method":"m"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.id, "a\"b");
    }

    #[test]
    fn encoders_round_trip() {
        let text = encode_request("7", "health", &serde_json::json!({})).unwrap();
        let Frame::Request(r) = Frame::parse(&text).unwrap() else {
            panic!()
        };
        assert_eq!((r.id.as_ref(), r.method.as_ref()), ("7", "health"));
        let err = ErrorShape::missing_scope("operator.admin");
        let text = encode_response_err::<()>("7", &err, None).unwrap();
        let Frame::Response(r) = Frame::parse(&text).unwrap() else {
            panic!()
        };
        assert_eq!(r.error(), Some(err));
        let text = encode_event("tick", &serde_json::json!({"ts":1}), Some(3)).unwrap();
        assert_eq!(
            text,
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":3}"#
        );
    }
}
