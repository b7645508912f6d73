//! The WebSocket upgrade of an accepted client socket, done by the proxy itself: the request
//! head is read with a bound ([`upgrade_request::MAX_HEAD_BYTES`]), judged by
//! [`upgrade_request`], and answered `101 Switching Protocols` or with the HTTP status that
//! says what is wrong (a missing or repeated `Sec-WebSocket-Key` is a 400, never a silently
//! dropped connection or a 101). The socket then goes to tungstenite as an established
//! WebSocket, behind the [frame gate](crate::frame_gate) so that the relay can take it over
//! losslessly; bytes the client sent after its head are kept and read first.
//!
//! The caller bounds the whole upgrade in time (`listen.upgrade_timeout_ms`).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::frame_gate::GatedIo;
use crate::upgrade_request::{self, MAX_HEAD_BYTES, Refused};

/// Bytes asked of the socket per read while the head is incomplete.
const READ_BYTES: usize = 2048;

/// Why an upgrade did not happen.
#[derive(Debug)]
pub enum UpgradeError {
    /// The request was refused with this HTTP status (already sent).
    Refused(Refused),
    /// The socket closed or failed before a whole head arrived.
    Gone(std::io::Error),
}

/// Reads and answers the upgrade request on `stream`; on success the WebSocket, with its gate
/// disarmed and the client's early bytes kept.
///
/// # Errors
/// [`UpgradeError`] (a refusal has been answered; the caller drops the socket).
pub async fn accept<S>(mut stream: S) -> Result<WebSocketStream<GatedIo<S>>, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(READ_BYTES);
    let mut searched = 0;
    let end = loop {
        if let Some(end) = upgrade_request::head_end(&buf, searched) {
            break end;
        }
        searched = buf.len();
        if let Err(refused) = upgrade_request::check_unfinished(buf.len()) {
            return Err(refuse(&mut stream, refused).await);
        }
        let room = READ_BYTES.min(MAX_HEAD_BYTES - buf.len());
        let start = buf.len();
        buf.resize(start + room, 0);
        let n = match stream.read(&mut buf[start..]).await {
            Ok(0) => {
                return Err(UpgradeError::Gone(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => n,
            Err(e) => return Err(UpgradeError::Gone(e)),
        };
        buf.truncate(start + n);
    };
    let upgrade = match upgrade_request::check(&buf[..end]) {
        Ok(u) => u,
        Err(refused) => return Err(refuse(&mut stream, refused).await),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(upgrade.key.as_bytes())
    );
    let written = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await
    };
    written.await.map_err(UpgradeError::Gone)?;
    let early = buf.split_off(end);
    let io = GatedIo::with_early_bytes(stream, early);
    Ok(WebSocketStream::from_raw_socket(io, Role::Server, Some(crate::ws::preauth_config())).await)
}

/// Sends the refusal (best effort: the peer may be gone) and ends the write side.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refused: Refused) -> UpgradeError {
    let _ = stream.write_all(refused.response().as_bytes()).await;
    let _ = stream.shutdown().await;
    UpgradeError::Refused(refused)
}
