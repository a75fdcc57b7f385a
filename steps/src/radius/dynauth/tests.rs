//! Tests of the authenticators against RFC examples and independent
//! implementations, of answer classification and of the retransmission
//! schedule.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::rfc2865;

use super::client::*;
use super::*;
use crate::radius::{Error, Result};

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
