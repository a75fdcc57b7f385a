//! A TCP proxy in front of PostgreSQL that can fail the network the way
//! production does: stop answering (a partition: connections hang), or cut
//! a connection right after forwarding a commit, so the client never sees
//! whether it happened.
//!
//! It reads the client's side of the PostgreSQL protocol message by message:
//! a commit point is a simple `Query` containing `COMMIT`, or a `Sync` that
//! ends an extended-protocol `Execute` (an autocommit statement commits at
//! that `Sync`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct State {
    /// Nothing is forwarded while set (connections hang).
    frozen: watch::Sender<bool>,
    /// Cut after every `cut_every`-th commit point, while `cuts_left` > 0.
    cut_every: AtomicU32,
    cuts_left: AtomicU32,
    commit_points: AtomicU32,
    cuts: AtomicU32,
    stopped: AtomicBool,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.frozen.send_replace(false);
    }
}

impl Proxy {
    /// Listens on an ephemeral port and forwards to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            frozen: watch::channel(false).0,
            cut_every: AtomicU32::new(1),
            cuts_left: AtomicU32::new(0),
            commit_points: AtomicU32::new(0),
            cuts: AtomicU32::new(0),
            stopped: AtomicBool::new(false),
        });
        let upstream = upstream.to_owned();
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let s = s.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        connection(client, server, s).await;
                    }
                });
            }
        });
        Self { port, state }
    }

    /// Stops forwarding in both directions on every connection, old and
    /// new: the database seems to hang.
    pub fn freeze(&self) {
        self.state.frozen.send_replace(true);
    }

    /// Forwards again.
    pub fn thaw(&self) {
        self.state.frozen.send_replace(false);
    }

    /// Cuts the connection right after every `every`-th commit point it
    /// forwards, `times` times in all.
    pub fn cut_after_commits(&self, every: u32, times: u32) {
        self.state.cut_every.store(every.max(1), Ordering::SeqCst);
        self.state.cuts_left.store(times, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u32 {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

async fn wait_thawed(state: &State) {
    let mut rx = state.frozen.subscribe();
    let _ = rx.wait_for(|f| !*f).await;
}

async fn connection(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let st = state.clone();
    // Server to client: plain bytes.
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            wait_thawed(&st).await;
            if cw.write_all(&buf[..n]).await.is_err() {
                // The client side is gone (maybe cut): keep draining the
                // server so it can finish what it was sent.
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
        }
    });
    // Client to server: message by message.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut startup = true;
    let mut executed = false;
    'outer: loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some((len, commit)) = next_message(&pending, &mut startup, &mut executed) {
            wait_thawed(&state).await;
            let msg: Vec<u8> = pending.drain(..len).collect();
            if sw.write_all(&msg).await.is_err() {
                break 'outer;
            }
            if commit && should_cut(&state) {
                // The commit reached the server; the client never hears
                // back. The server side is closed politely so it still
                // runs what it got.
                let _ = sw.shutdown().await;
                down.abort();
                return;
            }
        }
    }
    let _ = sw.shutdown().await;
}

fn should_cut(state: &State) -> bool {
    let n = state.commit_points.fetch_add(1, Ordering::SeqCst) + 1;
    if !n.is_multiple_of(state.cut_every.load(Ordering::SeqCst)) {
        return false;
    }
    let took = state
        .cuts_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
        .is_ok();
    if took {
        state.cuts.fetch_add(1, Ordering::SeqCst);
    }
    took
}

/// The length of the first complete message in `buf`, and whether it is a
/// commit point.
fn next_message(buf: &[u8], startup: &mut bool, executed: &mut bool) -> Option<(usize, bool)> {
    if *startup {
        if buf.len() < 8 {
            return None;
        }
        let len = u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
        if buf.len() < len {
            return None;
        }
        let code = u32::from_be_bytes(buf[4..8].try_into().unwrap());
        // SSLRequest and GSSENCRequest are followed by another untyped
        // message; the startup message ends the untyped phase.
        if code != 80877103 && code != 80877104 {
            *startup = false;
        }
        return Some((len, false));
    }
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize + 1;
    if buf.len() < len {
        return None;
    }
    let commit = match buf[0] {
        b'Q' => String::from_utf8_lossy(&buf[5..len])
            .to_ascii_uppercase()
            .contains("COMMIT"),
        b'E' => {
            *executed = true;
            false
        }
        b'S' => std::mem::take(executed),
        _ => false,
    };
    Some((len, commit))
}
