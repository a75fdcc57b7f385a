//! The packet side of Dynamic Authorization: Request, Response and
//! Message-Authenticator computation, signing and verifying requests,
//! encoding answers (what the NAS simulator sends back).

use std::ops::Range;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use radius::core::code::Code;
use radius::core::rfc3576;

use super::*;

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
pub(super) fn find_attribute(
    packet: &[u8],
    typ: u8,
) -> std::result::Result<Option<Range<usize>>, String> {
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
pub(super) fn framed(datagram: &[u8]) -> std::result::Result<&[u8], String> {
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
