//! [`DynAuthClient`]: sends a CoA-Request or Disconnect-Request, retransmits
//! it with a doubling wait, and verifies and classifies the NAS's answer.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866, rfc2869, rfc3576};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::radius::{Error, Result};

/// Sends CoA-Request and Disconnect-Request with one shared secret.
#[derive(Clone)]
pub struct DynAuthClient {
    secret: Vec<u8>,
    timeout: Duration,
    retries: u32,
}

impl fmt::Debug for DynAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynAuthClient")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// What one received datagram means for the request.
pub(super) enum Received {
    /// Not an answer to this request (wrong Identifier, too short): keep
    /// waiting.
    Ignore,
    Answer(Result<()>),
}

impl DynAuthClient {
    /// `timeout` is the first attempt's wait; `retries` retransmissions
    /// follow, each waiting twice as long as the one before.
    pub fn new(secret: &[u8], timeout: Duration, retries: u32) -> Self {
        Self {
            secret: secret.to_vec(),
            timeout,
            retries,
        }
    }

    /// The longest [`send`](Self::send) waits for answers in all.
    pub fn max_wait(&self) -> Duration {
        (0..=self.retries).map(|i| self.wait(i + 1)).sum()
    }

    pub(super) fn wait(&self, attempt: u32) -> Duration {
        self.timeout.saturating_mul(1u32 << (attempt - 1).min(16))
    }

    /// The request's bytes, signed, with a fresh Identifier.
    pub fn encode(&self, request: &DynAuthRequest) -> std::result::Result<Vec<u8>, String> {
        let (code, _, _) = request.kind.codes();
        let mut packet = Packet::new_with_identifier(code, &self.secret, fastrand::u8(..));
        let s = &request.session;
        rfc2865::add_user_name(&mut packet, &s.user_name);
        if let Some(ip) = &s.framed_ip {
            rfc2865::add_framed_ip_address(&mut packet, ip);
        }
        if let Some(id) = &s.acct_session_id {
            rfc2866::add_acct_session_id(&mut packet, id);
        }
        if let Some(filter) = &request.filter_id {
            rfc2865::add_filter_id(&mut packet, filter);
        }
        rfc2869::add_message_authenticator(&mut packet, &[0; 16]);
        let mut bytes = packet.encode().map_err(|e| e.to_string())?;
        sign_request(&mut bytes, &self.secret)?;
        Ok(bytes)
    }

    /// Sends `request` to the NAS at `nas` and waits for its ACK. A NAK is
    /// [`Error::Nak`] with its Error-Cause; an answer that does not verify
    /// with the secret is [`Error::WrongSecret`], returned at once; silence
    /// through every retransmission is [`Error::NoResponse`].
    pub async fn send(
        &self,
        nas: SocketAddr,
        request: &DynAuthRequest,
        cancel: &CancellationToken,
    ) -> Result<DynAuthOutcome> {
        let kind = request.kind;
        let bytes = self
            .encode(request)
            .map_err(|detail| Error::InvalidRequest { kind, nas, detail })?;
        let mut request_auth = [0u8; 16];
        request_auth.copy_from_slice(&bytes[AUTH]);
        let io = |source| Error::Io { nas, source };
        let local: SocketAddr = if nas.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(nas).await.map_err(io)?;

        let started = Instant::now();
        let attempts = self.retries + 1;
        let mut refused = 0;
        let mut buf = vec![0u8; MAX_PACKET];
        for attempt in 1..=attempts {
            let deadline = Instant::now() + self.wait(attempt);
            tracing::debug!(%nas, %kind, attempt, id = bytes[1], "sending");
            let sent = socket.send(&bytes).await;
            let mut was_refused =
                matches!(&sent, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            if let Err(e) = sent
                && !was_refused
            {
                return Err(io(e));
            }
            while !was_refused {
                let received = tokio::select! {
                    _ = cancel.cancelled() => return Err(Error::Cancelled { kind, nas }),
                    r = tokio::time::timeout_at(deadline, socket.recv(&mut buf)) => r,
                };
                match received {
                    Err(_elapsed) => break,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        was_refused = true;
                    }
                    Ok(Err(e)) => return Err(io(e)),
                    Ok(Ok(n)) => {
                        match self.receive(&buf[..n], bytes[1], &request_auth, kind, nas) {
                            Received::Ignore => {}
                            Received::Answer(answer) => {
                                return answer.map(|()| DynAuthOutcome { attempts: attempt });
                            }
                        }
                    }
                }
            }
            if was_refused {
                // Nothing listens there (ICMP port unreachable): wait out the
                // attempt's time before the next one, as for a lost packet.
                refused += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return Err(Error::Cancelled { kind, nas }),
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        if refused == attempts {
            return Err(Error::Unreachable {
                kind,
                nas,
                attempts,
            });
        }
        Err(Error::NoResponse {
            kind,
            nas,
            attempts,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    pub(super) fn receive(
        &self,
        datagram: &[u8],
        identifier: u8,
        request_auth: &[u8; 16],
        kind: DynAuthKind,
        nas: SocketAddr,
    ) -> Received {
        if datagram.len() < HEADER_LEN || datagram[1] != identifier {
            tracing::debug!(%nas, len = datagram.len(), "ignoring a datagram that answers no request of ours");
            return Received::Ignore;
        }
        if let Err(what) = verify_response(datagram, request_auth, &self.secret) {
            return Received::Answer(Err(if what == "length" || what == "attribute framing" {
                Error::InvalidResponse {
                    kind,
                    nas,
                    detail: format!("malformed packet ({what})"),
                }
            } else {
                Error::WrongSecret { kind, nas, what }
            }));
        }
        let packet = match Packet::decode(datagram, &self.secret) {
            Ok(p) => p,
            Err(e) => {
                return Received::Answer(Err(Error::InvalidResponse {
                    kind,
                    nas,
                    detail: e.to_string(),
                }));
            }
        };
        let (_, ack, nak) = kind.codes();
        let code = packet.get_code();
        Received::Answer(if code == ack {
            Ok(())
        } else if code == nak {
            Err(Error::Nak {
                kind,
                nas,
                error_cause: rfc3576::lookup_error_cause(&packet)
                    .and_then(|r| r.ok())
                    .map(ErrorCause),
            })
        } else {
            Err(Error::InvalidResponse {
                kind,
                nas,
                detail: format!("unexpected {} (code {})", code.string(), datagram[0]),
            })
        })
    }
}
