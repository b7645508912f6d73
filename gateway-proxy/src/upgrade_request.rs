//! The client's HTTP/1.1 upgrade request (RFC 6455 §4.2.1), read and judged without I/O.
//!
//! The proxy answers every request it refuses with an HTTP status, as the gateway's WebSocket
//! server (`ws`) does, in the same order of checks: method (405), `Upgrade` (400), then
//! `Sec-WebSocket-Key` (400), then `Sec-WebSocket-Version` (400, naming the version spoken).
//! Stricter than `ws` where `ws` relies on Node joining repeated headers into one value that then
//! fails its check: here a repeated `Upgrade`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` is
//! refused by name. A head longer than [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`]
//! headers is refused 431.

/// Longest request head read (Node's default `--max-http-header-size`).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines taken.
pub const MAX_HEADERS: usize = 64;

/// An acceptable upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key` (the 24 characters of a base64 16-byte nonce).
    pub key: String,
}

/// A refused request: the HTTP status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Status code.
    pub status: u16,
    /// Body text (as `ws` words it).
    pub message: &'static str,
}

impl Refused {
    const fn new(status: u16, message: &'static str) -> Self {
        Self { status, message }
    }

    /// The whole HTTP response (`Connection: close`; the socket is closed after it).
    pub fn response(&self) -> String {
        let reason = match self.status {
            400 => "Bad Request",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let version = if self.message == BAD_VERSION.message {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {} {reason}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: {}\r\n{version}\r\n{}",
            self.status,
            self.message.len(),
            self.message,
        )
    }
}

const BAD_REQUEST: Refused = Refused::new(400, "Bad Request");
const TOO_LARGE: Refused = Refused::new(431, "Request Header Fields Too Large");
const BAD_METHOD: Refused = Refused::new(405, "Invalid HTTP method");
const BAD_UPGRADE: Refused = Refused::new(400, "Invalid Upgrade header");
const BAD_CONNECTION: Refused = Refused::new(400, "Invalid Connection header");
const BAD_KEY: Refused = Refused::new(400, "Missing or invalid Sec-WebSocket-Key header");
const BAD_VERSION: Refused = Refused::new(400, "Missing or invalid Sec-WebSocket-Version header");

/// Where the head ends in `buf` (just past its blank line), once it has; `from` is how much of
/// `buf` was already searched.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| start + i + 4)
}

/// What to do with a head that has not ended after `len` bytes: refuse it once it is too long.
pub fn check_unfinished(len: usize) -> Result<(), Refused> {
    if len >= MAX_HEAD_BYTES {
        Err(TOO_LARGE)
    } else {
        Ok(())
    }
}

/// Judges a complete request head (up to and including its blank line).
///
/// # Errors
/// The [`Refused`] answer.
pub fn check(head: &[u8]) -> Result<Upgrade, Refused> {
    if head.len() > MAX_HEAD_BYTES {
        return Err(TOO_LARGE);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Ok(httparse::Status::Partial) | Err(_) => return Err(BAD_REQUEST),
    }
    if req.method != Some("GET") {
        return Err(BAD_METHOD);
    }
    if req.version != Some(1) {
        return Err(BAD_REQUEST);
    }
    let one = |name: &str| -> Result<Option<&[u8]>, ()> {
        let mut found = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name));
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(h), None) => Ok(Some(h.value)),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let upgrade = one("upgrade").map_err(|()| BAD_UPGRADE)?;
    if !upgrade.is_some_and(|v| trim(v).eq_ignore_ascii_case(b"websocket")) {
        return Err(BAD_UPGRADE);
    }
    let connection_upgrades = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .any(|token| trim(token).eq_ignore_ascii_case(b"upgrade"));
    if !connection_upgrades {
        return Err(BAD_CONNECTION);
    }
    let key = one("sec-websocket-key").map_err(|()| BAD_KEY)?;
    let key = key.map(trim).filter(|k| is_key(k)).ok_or(BAD_KEY)?;
    let version = one("sec-websocket-version").map_err(|()| BAD_VERSION)?;
    if version.map(trim) != Some(b"13".as_slice()) {
        return Err(BAD_VERSION);
    }
    Ok(Upgrade {
        key: String::from_utf8_lossy(key).into_owned(),
    })
}

/// `ws`'s key check: `^[+/0-9A-Za-z]{22}==$`.
fn is_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// A header value without surrounding spaces and tabs.
fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut h = String::from("GET /ws HTTP/1.1\r\nHost: x\r\n");
        for l in lines {
            h.push_str(l);
            h.push_str("\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    fn good() -> Vec<&'static str> {
        vec![
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    }

    #[test]
    fn a_proper_request_is_accepted() {
        assert_eq!(check(&head(&good())), Ok(Upgrade { key: KEY.into() }));
        let mut lower = good();
        lower[0] = "upgrade:  WebSocket ";
        assert!(check(&head(&lower)).is_ok());
    }

    /// Each field missing, repeated or wrong gets the status `ws` gives it.
    #[test]
    fn each_defect_gets_its_status() {
        let without = |name: &str| -> Vec<&str> {
            good()
                .into_iter()
                .filter(|l| !l.starts_with(name))
                .collect()
        };
        let with = |extra: &'static str| {
            let mut l = good();
            l.push(extra);
            l
        };
        for (lines, want) in [
            (without("Sec-WebSocket-Key"), BAD_KEY),
            (with("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="), BAD_KEY),
            (with("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=="), BAD_KEY),
            (without("Upgrade"), BAD_UPGRADE),
            (with("Upgrade: websocket"), BAD_UPGRADE),
            (without("Connection"), BAD_CONNECTION),
            (without("Sec-WebSocket-Version"), BAD_VERSION),
            (with("Sec-WebSocket-Version: 13"), BAD_VERSION),
        ] {
            assert_eq!(check(&head(&lines)), Err(want), "{lines:?}");
        }
        let mut bad_key = good();
        bad_key[2] = "Sec-WebSocket-Key: short==";
        assert_eq!(check(&head(&bad_key)), Err(BAD_KEY));
        let mut v8 = good();
        v8[3] = "Sec-WebSocket-Version: 8";
        assert_eq!(check(&head(&v8)), Err(BAD_VERSION));
        assert!(
            BAD_VERSION
                .response()
                .contains("Sec-WebSocket-Version: 13\r\n")
        );
        let post = b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(check(post), Err(BAD_METHOD));
        assert_eq!(check(b"GET / HTTP/1.0\r\n\r\n"), Err(BAD_REQUEST));
        assert_eq!(check(b"\x00\x01garbage\r\n\r\n"), Err(BAD_REQUEST));
        let many: Vec<String> = (0..70).map(|i| format!("X-{i}: y")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(check(&head(&many)), Err(TOO_LARGE));
    }

    #[test]
    fn the_head_end_is_found_across_reads() {
        let h = head(&good());
        let end = h.len();
        for cut in 0..end {
            assert_eq!(head_end(&h[..cut], 0), None);
        }
        for searched in 0..end {
            assert_eq!(head_end(&h, searched), Some(end));
        }
        assert_eq!(check_unfinished(MAX_HEAD_BYTES), Err(TOO_LARGE));
        let r = BAD_KEY.response();
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n") && r.ends_with(BAD_KEY.message));
    }
}
