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
//!
//! This module holds the request and answer types; `packet.rs` the
//! authenticators, signing, verification and encoding, `client.rs` the
//! client that sends, retransmits and classifies the answer.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use radius::core::code::Code;
use radius::core::rfc2869;

mod client;
mod packet;
#[cfg(test)]
mod tests;

pub use client::DynAuthClient;
pub use packet::*;

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
