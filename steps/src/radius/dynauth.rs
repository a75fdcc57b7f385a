//! Dynamic Authorization (RFC 5176): CoA-Request and Disconnect-Request to
//! a NAS over UDP.
//!
//! A request carries a Message-Authenticator (RFC 3579 §3.2, RFC 5176 §3.1):
//! HMAC-MD5 keyed with the shared secret over the packet whose authenticator
//! field and Message-Authenticator value are zero. Its Request Authenticator
//! (RFC 5176 §2.3, as for Accounting-Request) is then MD5 over the packet,
//! Message-Authenticator included, with a zero authenticator field, followed
//! by the secret. The NAS's answer is trusted only when its Response
//! Authenticator — MD5(Code, Identifier, Length, Request Authenticator,
//! Attributes, secret) — and its Message-Authenticator, if any, verify: a
//! mismatch means the NAS uses another secret.
//!
//! UDP loses packets, so the request is retransmitted unchanged (same
//! Identifier and authenticator, RFC 5080 §2.2.1) when no answer arrives in
//! time, each wait twice as long as the one before, a bounded number of times.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866, rfc2869, rfc3576};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Error, Result};

const HEADER_LEN: usize = 20;
const AUTH: Range<usize> = 4..20;
const MESSAGE_AUTHENTICATOR: u8 = rfc2869::MESSAGE_AUTHENTICATOR_TYPE;
const MAX_PACKET: usize = 4096;

/// Which Dynamic Authorization request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynAuthKind {
    /// CoA-Request: change the session's authorization (e.g. its filter).
    Coa,
    /// Disconnect-Request: end the session.
    Disconnect,
}

impl DynAuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DynAuthKind::Coa => "CoA-Request",
            DynAuthKind::Disconnect => "Disconnect-Request",
        }
    }

    pub fn nak_name(self) -> &'static str {
        match self {
            DynAuthKind::Coa => "CoA-NAK",
            DynAuthKind::Disconnect => "Disconnect-NAK",
        }
    }

    pub fn response_name(self) -> &'static str {
        match self {
            DynAuthKind::Coa => "CoA response",
            DynAuthKind::Disconnect => "Disconnect response",
        }
    }

    pub(super) fn codes(self) -> (Code, Code, Code) {
        match self {
            DynAuthKind::Coa => (Code::CoARequest, Code::CoAACK, Code::CoANAK),
            DynAuthKind::Disconnect => (
                Code::DisconnectRequest,
                Code::DisconnectACK,
                Code::DisconnectNAK,
            ),
        }
    }
}

impl fmt::Display for DynAuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Error-Cause attribute (101) of a NAK, RFC 5176 §3.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCause(pub u32);

impl ErrorCause {
    pub const ADMINISTRATIVELY_PROHIBITED: ErrorCause = ErrorCause(501);
    pub const SESSION_CONTEXT_NOT_FOUND: ErrorCause = ErrorCause(503);
    pub const RESOURCES_UNAVAILABLE: ErrorCause = ErrorCause(506);

    /// The RFC 5176 name of the value.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            201 => "Residual-Session-Context-Removed",
            202 => "Invalid-EAP-Packet",
            401 => "Unsupported-Attribute",
            402 => "Missing-Attribute",
            403 => "NAS-Identification-Mismatch",
            404 => "Invalid-Request",
            405 => "Unsupported-Service",
            406 => "Unsupported-Extension",
            407 => "Invalid-Attribute-Value",
            501 => "Administratively-Prohibited",
            502 => "Request-Not-Routable",
            503 => "Session-Context-Not-Found",
            504 => "Session-Context-Not-Removable",
            505 => "Other-Proxy-Processing-Error",
            506 => "Resources-Unavailable",
            507 => "Request-Initiated",
            508 => "Multiple-Session-Selection-Unsupported",
            _ => return None,
        })
    }

    /// Whether the same request may succeed later: the NAS (or a proxy on
    /// the way) lacked resources or failed on its own side. Errors in the
    /// request (4xx) and refusals (other 5xx) stay.
    pub fn is_transient(self) -> bool {
        matches!(self.0, 505..=507)
    }
}

impl fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The session a request is about: User-Name, and optionally the
/// Framed-IP-Address and Acct-Session-Id that narrow it to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_name: String,
    pub framed_ip: Option<Ipv4Addr>,
    pub acct_session_id: Option<String>,
}

/// One CoA-Request or Disconnect-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynAuthRequest {
    pub kind: DynAuthKind,
    pub session: Session,
    /// For a CoA: the Filter-Id (the policy) the NAS is to apply.
    pub filter_id: Option<String>,
}

/// An ACK, and the attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynAuthOutcome {
    pub attempts: u32,
}

/// MD5 over `packet` (whose authenticator field must be zero) followed by
/// the secret: the Request Authenticator of a CoA-Request or
/// Disconnect-Request (RFC 5176 §2.3) or an Accounting-Request.
pub fn request_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(packet);
    md5.update(secret);
    md5.finalize().into()
}

/// HMAC-MD5 keyed with the secret over `packet` (prepared by the caller:
/// Message-Authenticator value zero, and the authenticator field zero for a
/// request or the request's authenticator for a response), RFC 3579 §3.2.
pub fn message_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match <Hmac<Md5> as Mac>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return [0; 16],
    };
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

/// MD5(Code, Identifier, Length, Request Authenticator, Attributes, secret):
/// the Response Authenticator the NAS must put in its answer.
pub fn response_authenticator(response: &[u8], request_auth: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(&response[..4.min(response.len())]);
    md5.update(request_auth);
    if response.len() > HEADER_LEN {
        md5.update(&response[HEADER_LEN..]);
    }
    md5.update(secret);
    md5.finalize().into()
}

/// The range of the value of the first attribute of type `typ`, after
/// checking the packet's attribute framing.
fn find_attribute(packet: &[u8], typ: u8) -> std::result::Result<Option<Range<usize>>, String> {
    let mut at = HEADER_LEN;
    let mut found = None;
    while at < packet.len() {
        if at + 2 > packet.len() {
            return Err("truncated attribute header".into());
        }
        let len = packet[at + 1] as usize;
        if len < 2 || at + len > packet.len() {
            return Err(format!(
                "attribute {} has an invalid length {len}",
                packet[at]
            ));
        }
        if packet[at] == typ && found.is_none() {
            found = Some(at + 2..at + len);
        }
        at += len;
    }
    Ok(found)
}

/// Checks the header's Length against the datagram and returns the packet
/// it delimits (trailing bytes are padding, RFC 2865 §3).
fn framed(datagram: &[u8]) -> std::result::Result<&[u8], String> {
    if datagram.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes is shorter than a RADIUS header",
            datagram.len()
        ));
    }
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    if !(HEADER_LEN..=MAX_PACKET).contains(&len) || len > datagram.len() {
        return Err(format!(
            "the header's length {len} does not fit the {}-byte datagram",
            datagram.len()
        ));
    }
    Ok(&datagram[..len])
}

/// Signs an encoded CoA-Request or Disconnect-Request in place: computes its
/// Message-Authenticator (if the packet has that attribute) and then its
/// Request Authenticator.
pub fn sign_request(packet: &mut [u8], secret: &[u8]) -> std::result::Result<(), String> {
    let len = framed(packet)?.len();
    let packet = &mut packet[..len];
    packet[AUTH].fill(0);
    if let Some(ma) = find_attribute(packet, MESSAGE_AUTHENTICATOR)? {
        if ma.len() != 16 {
            return Err("Message-Authenticator must be 16 bytes".into());
        }
        packet[ma.clone()].fill(0);
        let mac = message_authenticator(packet, secret);
        packet[ma].copy_from_slice(&mac);
    }
    let auth = request_authenticator(packet, secret);
    packet[AUTH].copy_from_slice(&auth);
    Ok(())
}

/// Verifies a CoA-Request or Disconnect-Request as a NAS does: its Request
/// Authenticator and, if present, its Message-Authenticator. The error names
/// what did not verify.
pub fn verify_request(request: &[u8], secret: &[u8]) -> std::result::Result<(), &'static str> {
    let Ok(request) = framed(request) else {
        return Err("length");
    };
    let mut copy = request.to_vec();
    copy[AUTH].fill(0);
    if request_authenticator(&copy, secret)[..] != request[AUTH] {
        return Err("request authenticator");
    }
    match find_attribute(&copy, MESSAGE_AUTHENTICATOR) {
        Err(_) => Err("attribute framing"),
        Ok(None) => Ok(()),
        Ok(Some(ma)) => {
            copy[ma.clone()].fill(0);
            if message_authenticator(&copy, secret)[..] == request[ma] {
                Ok(())
            } else {
                Err("Message-Authenticator")
            }
        }
    }
}

/// Verifies a NAS's answer to the request whose authenticator was
/// `request_auth`. The error names what did not verify.
pub fn verify_response(
    response: &[u8],
    request_auth: &[u8; 16],
    secret: &[u8],
) -> std::result::Result<(), &'static str> {
    let Ok(response) = framed(response) else {
        return Err("length");
    };
    if response_authenticator(response, request_auth, secret)[..] != response[AUTH] {
        return Err("response authenticator");
    }
    let Ok(ma) = find_attribute(response, MESSAGE_AUTHENTICATOR) else {
        return Err("attribute framing");
    };
    if let Some(ma) = ma {
        let mut copy = response.to_vec();
        copy[AUTH].copy_from_slice(request_auth);
        copy[ma.clone()].fill(0);
        if message_authenticator(&copy, secret)[..] != response[ma] {
            return Err("Message-Authenticator");
        }
    }
    Ok(())
}

/// A NAS's answer (`code`: an ACK or NAK) to the request `request`, with an
/// optional Error-Cause and Message-Authenticator, signed with `secret`:
/// what a NAS (or [`NasSimulator`](super::NasSimulator)) sends back.
pub fn encode_response(
    request: &[u8],
    code: Code,
    error_cause: Option<ErrorCause>,
    secret: &[u8],
    with_message_authenticator: bool,
) -> std::result::Result<Vec<u8>, String> {
    let request = framed(request)?;
    let mut request_auth = [0u8; 16];
    request_auth.copy_from_slice(&request[AUTH]);
    let mut p = vec![code as u8, request[1], 0, 0];
    p.extend(request_auth);
    if let Some(ErrorCause(cause)) = error_cause {
        p.extend([rfc3576::ERROR_CAUSE_TYPE, 6]);
        p.extend(cause.to_be_bytes());
    }
    let ma_at = p.len() + 2;
    if with_message_authenticator {
        p.extend([MESSAGE_AUTHENTICATOR, 18]);
        p.extend([0; 16]);
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if with_message_authenticator {
        let mac = message_authenticator(&p, secret);
        p[ma_at..ma_at + 16].copy_from_slice(&mac);
    }
    let auth = response_authenticator(&p, &request_auth, secret);
    p[AUTH].copy_from_slice(&auth);
    Ok(p)
}

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
enum Received {
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

    fn wait(&self, attempt: u32) -> Duration {
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

    fn receive(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn request(kind: DynAuthKind) -> DynAuthRequest {
        DynAuthRequest {
            kind,
            session: Session {
                user_name: "sub-42".into(),
                framed_ip: Some(Ipv4Addr::new(10, 0, 0, 7)),
                acct_session_id: Some("S-1".into()),
            },
            filter_id: Some("suspended".into()),
        }
    }

    /// RFC 2104's HMAC-MD5 test case 2 (key "Jefe").
    #[test]
    fn message_authenticator_is_hmac_md5() {
        assert_eq!(
            message_authenticator(b"what do ya want for nothing?", b"Jefe").to_vec(),
            hex("750c783e6ab0b503eaa86e310a5db738")
        );
    }

    /// RFC 2865 §7.1: the Access-Accept for "nemo", answering the request
    /// whose authenticator is 0f403f94…f4227a, shared secret "xyzzy5461".
    #[test]
    fn response_authenticator_matches_rfc_2865_example() {
        let request_auth: [u8; 16] = hex("0f403f9473978057bd83d5cb98f4227a").try_into().unwrap();
        let response = hex("02000026\
             86fe220e7624ba2a1005f6bf9b55e0b2\
             0606000000010f06000000000e06c0a80103");
        assert_eq!(
            response_authenticator(&response, &request_auth, b"xyzzy5461")[..],
            response[AUTH]
        );
        assert_eq!(
            verify_response(&response, &request_auth, b"xyzzy5461"),
            Ok(())
        );
        assert_eq!(
            verify_response(&response, &request_auth, b"wrong"),
            Err("response authenticator")
        );
    }

    /// A CoA-Request computed independently (Python's hashlib/hmac): code
    /// 43, Identifier 7, User-Name "alice", Message-Authenticator, secret
    /// "testing123".
    #[test]
    fn signs_a_coa_request_like_an_independent_implementation() {
        let mut packet = hex("2b07002d\
             00000000000000000000000000000000\
             0107616c696365\
             501200000000000000000000000000000000");
        sign_request(&mut packet, b"testing123").unwrap();
        assert_eq!(
            packet,
            hex("2b07002d\
                 74083604fd9b0d25dadc02f214ea024e\
                 0107616c696365\
                 5012869402831f8d0e697d9d1c26a565bb15")
        );
    }

    #[test]
    fn encoded_requests_verify_as_rfc_5176_requests() {
        let client = DynAuthClient::new(b"s3cret", Duration::from_millis(10), 0);
        for kind in [DynAuthKind::Coa, DynAuthKind::Disconnect] {
            let bytes = client.encode(&request(kind)).unwrap();
            // The radius crate's own check of the Request Authenticator.
            assert!(Packet::is_authentic_request(&bytes, b"s3cret"));
            assert!(!Packet::is_authentic_request(&bytes, b"other"));
            // And the NAS-side check.
            assert_eq!(verify_request(&bytes, b"s3cret"), Ok(()));
            assert_eq!(
                verify_request(&bytes, b"other"),
                Err("request authenticator")
            );
            // The Message-Authenticator recomputed from scratch.
            let ma = find_attribute(&bytes, MESSAGE_AUTHENTICATOR)
                .unwrap()
                .unwrap();
            let mut copy = bytes.clone();
            copy[AUTH].fill(0);
            copy[ma.clone()].fill(0);
            assert_eq!(message_authenticator(&copy, b"s3cret")[..], bytes[ma]);
            let decoded = Packet::decode(&bytes, b"s3cret").unwrap();
            assert_eq!(decoded.get_code(), kind.codes().0);
            assert_eq!(
                rfc2865::lookup_user_name(&decoded).unwrap().unwrap(),
                "sub-42"
            );
            assert_eq!(
                rfc2865::lookup_framed_ip_address(&decoded)
                    .unwrap()
                    .unwrap(),
                Ipv4Addr::new(10, 0, 0, 7)
            );
        }
    }

    fn answer(request: &[u8], code: Code, cause: Option<u32>, secret: &[u8], ma: bool) -> Vec<u8> {
        encode_response(request, code, cause.map(ErrorCause), secret, ma).unwrap()
    }

    fn classify(
        client: &DynAuthClient,
        request: &[u8],
        response: &[u8],
        kind: DynAuthKind,
    ) -> Result<()> {
        let mut auth = [0; 16];
        auth.copy_from_slice(&request[AUTH]);
        let nas: SocketAddr = "127.0.0.1:3799".parse().unwrap();
        match client.receive(response, request[1], &auth, kind, nas) {
            Received::Answer(a) => a,
            Received::Ignore => panic!("answer ignored"),
        }
    }

    #[test]
    fn parses_acks_and_naks_with_their_error_cause() {
        let client = DynAuthClient::new(b"s3cret", Duration::from_millis(10), 0);
        let req = client.encode(&request(DynAuthKind::Coa)).unwrap();
        for with_ma in [false, true] {
            let ack = answer(&req, Code::CoAACK, None, b"s3cret", with_ma);
            assert!(classify(&client, &req, &ack, DynAuthKind::Coa).is_ok());
            let nak = answer(&req, Code::CoANAK, Some(503), b"s3cret", with_ma);
            match classify(&client, &req, &nak, DynAuthKind::Coa) {
                Err(Error::Nak {
                    error_cause, kind, ..
                }) => {
                    assert_eq!(error_cause, Some(ErrorCause::SESSION_CONTEXT_NOT_FOUND));
                    assert_eq!(kind, DynAuthKind::Coa);
                }
                other => panic!("expected a NAK, got {other:?}"),
            }
        }
        let bare = answer(&req, Code::CoANAK, None, b"s3cret", false);
        let err = classify(&client, &req, &bare, DynAuthKind::Coa).unwrap_err();
        assert!(matches!(
            err,
            Error::Nak {
                error_cause: None,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "CoA-NAK from NAS 127.0.0.1:3799 without Error-Cause"
        );
        // A Disconnect-ACK does not answer a CoA-Request.
        let wrong = answer(&req, Code::DisconnectACK, None, b"s3cret", false);
        assert!(matches!(
            classify(&client, &req, &wrong, DynAuthKind::Coa),
            Err(Error::InvalidResponse { .. })
        ));
    }

    #[test]
    fn a_nak_error_names_its_cause_and_classifies_it() {
        let nas: SocketAddr = "192.0.2.1:3799".parse().unwrap();
        let nak = |c| Error::Nak {
            kind: DynAuthKind::Disconnect,
            nas,
            error_cause: Some(ErrorCause(c)),
        };
        assert_eq!(
            nak(501).to_string(),
            "Disconnect-NAK from NAS 192.0.2.1:3799 with Error-Cause 501 (Administratively-Prohibited)"
        );
        assert!(!nak(501).is_retryable());
        assert!(!nak(404).is_retryable());
        assert!(nak(506).is_retryable());
        assert_eq!(ErrorCause(999).to_string(), "999");
    }

    #[test]
    fn an_answer_signed_with_another_secret_is_a_wrong_secret() {
        let client = DynAuthClient::new(b"s3cret", Duration::from_millis(10), 0);
        let req = client.encode(&request(DynAuthKind::Disconnect)).unwrap();
        let forged = answer(&req, Code::DisconnectACK, None, b"other", false);
        let err = classify(&client, &req, &forged, DynAuthKind::Disconnect).unwrap_err();
        assert!(matches!(
            err,
            Error::WrongSecret {
                what: "response authenticator",
                ..
            }
        ));
        assert!(err.to_string().contains("response authenticator mismatch"));
        assert!(err.to_string().contains("wrong shared secret?"));
        assert!(!err.is_retryable());
        // A right Response Authenticator over a Message-Authenticator made
        // with another key is caught too.
        let mut bad_ma = answer(&req, Code::DisconnectACK, None, b"s3cret", true);
        bad_ma[HEADER_LEN + 2] ^= 1;
        let mut auth = [0; 16];
        auth.copy_from_slice(&req[AUTH]);
        let fixed = response_authenticator(&bad_ma, &auth, b"s3cret");
        bad_ma[AUTH].copy_from_slice(&fixed);
        assert!(matches!(
            classify(&client, &req, &bad_ma, DynAuthKind::Disconnect),
            Err(Error::WrongSecret {
                what: "Message-Authenticator",
                ..
            })
        ));
    }

    #[test]
    fn a_request_whose_message_authenticator_was_made_with_another_key_fails() {
        let client = DynAuthClient::new(b"s3cret", Duration::from_millis(10), 0);
        let mut bytes = client.encode(&request(DynAuthKind::Coa)).unwrap();
        let ma = find_attribute(&bytes, MESSAGE_AUTHENTICATOR)
            .unwrap()
            .unwrap();
        bytes[ma.start] ^= 0x80;
        // Re-sign the Request Authenticator only, over the altered value.
        bytes[AUTH].fill(0);
        let auth = request_authenticator(&bytes, b"s3cret");
        bytes[AUTH].copy_from_slice(&auth);
        assert_eq!(
            verify_request(&bytes, b"s3cret"),
            Err("Message-Authenticator")
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert!(sign_request(&mut [0u8; 10], b"s").is_err());
        // Length field larger than the datagram.
        let mut p = hex("2b0700ff00000000000000000000000000000000");
        assert!(sign_request(&mut p, b"s").is_err());
        // An attribute running past the end.
        let mut p = hex("2b07001800000000000000000000000000000000010a6162");
        assert!(sign_request(&mut p, b"s").is_err());
        assert_eq!(verify_response(&[0u8; 5], &[0; 16], b"s"), Err("length"));
    }

    #[test]
    fn waits_double_and_are_bounded() {
        let client = DynAuthClient::new(b"s", Duration::from_millis(100), 2);
        assert_eq!(client.wait(1), Duration::from_millis(100));
        assert_eq!(client.wait(3), Duration::from_millis(400));
        assert_eq!(client.max_wait(), Duration::from_millis(700));
    }
}
