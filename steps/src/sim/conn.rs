//! The simulators' listener: TCP connections a handler can drop without
//! answering. The "applied then reset" fault applies a request and then
//! resets the connection (RST, no response written), the way a gateway
//! that crashes after forwarding a request looks to its caller.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections that can be reset from a handler.
pub(super) struct ResettableListener(pub(super) TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        ResettableStream {
                            stream,
                            reset: ResetSwitch::default(),
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: the axum listener
                // retries the same way.
                Err(e) => {
                    tracing::warn!(error = %e, "simulators: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await; // back-off after a failed accept
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Resets the connection it came with: the next write fails and the
/// socket closes with RST, so whatever the handler returns is never sent.
#[derive(Debug, Clone, Default)]
pub(super) struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    pub(super) fn trip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn tripped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ResetSwitch {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.io().reset.clone()
    }
}

/// A TCP stream that refuses to write once its [`ResetSwitch`] is tripped.
pub(super) struct ResettableStream {
    stream: TcpStream,
    reset: ResetSwitch,
}

impl ResettableStream {
    fn refuse(&self) -> io::Error {
        // Linger 0: closing the socket sends RST instead of FIN.
        let _ = self.stream.set_zero_linger();
        io::Error::new(io::ErrorKind::ConnectionReset, "reset by the simulator")
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.reset.tripped() {
            return Poll::Ready(Err(self.refuse()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.reset.tripped() {
            return Poll::Ready(Err(self.refuse()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset.tripped() {
            return Poll::Ready(Err(self.refuse()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset.tripped() {
            return Poll::Ready(Err(self.refuse()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
