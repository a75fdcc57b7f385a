//! A NAS stand-in for tests and `dev`: a UDP server on loopback that
//! receives CoA-Request and Disconnect-Request, records them, and answers as
//! told. Like a real NAS it verifies each request's Request Authenticator and
//! Message-Authenticator with its shared secret and silently drops a request
//! that fails (RFC 5176 §3.5), recording it as not authentic.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use radius::core::code::Code;
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::dynauth::{DynAuthKind, ErrorCause, encode_response, verify_request};

/// What the simulator does with an authentic request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NasReply {
    Ack,
    Nak(Option<ErrorCause>),
    /// No answer (a lost packet).
    Silent,
    /// An ACK signed with another secret (a misconfigured NAS).
    AckSignedWith(Vec<u8>),
}

/// One request the simulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// `None` for a code other than CoA-Request / Disconnect-Request.
    pub kind: Option<DynAuthKind>,
    /// Whether the authenticators verified with the simulator's secret.
    pub authentic: bool,
    pub user_name: Option<String>,
    pub framed_ip: Option<Ipv4Addr>,
    pub acct_session_id: Option<String>,
    pub filter_id: Option<String>,
    /// The datagram as received.
    pub raw: Vec<u8>,
}

/// Decides the answer to the n-th (from 1) authentic request.
pub type NasBehaviour = Box<dyn Fn(usize, &ReceivedRequest) -> NasReply + Send + Sync>;

/// The simulator; stops when dropped.
pub struct NasSimulator {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for NasSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NasSimulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl NasSimulator {
    /// A simulator on a free loopback port that ACKs every authentic request.
    pub async fn acking(secret: &[u8]) -> std::io::Result<Self> {
        Self::start(secret, Box::new(|_, _| NasReply::Ack)).await
    }

    /// A simulator on a free loopback port answering as `behaviour` says.
    pub async fn start(secret: &[u8], behaviour: NasBehaviour) -> std::io::Result<Self> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = socket.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let secret = secret.to_vec();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let request = inspect(&buf[..n], &secret);
                let count = {
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.push(request.clone());
                    log.iter().filter(|r| r.authentic).count()
                };
                let (Some(kind), true) = (request.kind, request.authentic) else {
                    continue;
                };
                let (_, ack, nak) = kind.codes();
                let answer = match behaviour(count, &request) {
                    NasReply::Ack => encode_response(&request.raw, ack, None, &secret, false),
                    NasReply::Nak(cause) => {
                        encode_response(&request.raw, nak, cause, &secret, false)
                    }
                    NasReply::Silent => continue,
                    NasReply::AckSignedWith(other) => {
                        encode_response(&request.raw, ack, None, &other, false)
                    }
                };
                if let Ok(answer) = answer {
                    // A lost answer is what UDP does; the client retransmits.
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// Where to send requests.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for NasSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decodes and authenticates one datagram.
fn inspect(datagram: &[u8], secret: &[u8]) -> ReceivedRequest {
    let kind = match datagram.first().map(|c| Code::from(*c)) {
        Some(Code::CoARequest) => Some(DynAuthKind::Coa),
        Some(Code::DisconnectRequest) => Some(DynAuthKind::Disconnect),
        _ => None,
    };
    let packet = Packet::decode(datagram, secret).ok();
    let authentic = kind.is_some() && verify_request(datagram, secret).is_ok();
    let text = |v: Option<Result<String, _>>| v.and_then(Result::ok);
    ReceivedRequest {
        kind,
        authentic,
        user_name: packet
            .as_ref()
            .and_then(|p| text(rfc2865::lookup_user_name(p))),
        framed_ip: packet
            .as_ref()
            .and_then(|p| rfc2865::lookup_framed_ip_address(p).and_then(Result::ok)),
        acct_session_id: packet
            .as_ref()
            .and_then(|p| text(rfc2866::lookup_acct_session_id(p))),
        filter_id: packet
            .as_ref()
            .and_then(|p| text(rfc2865::lookup_filter_id(p))),
        raw: datagram.to_vec(),
    }
}
