//! ICE over TCP on one port per pod: the fallback for networks that block UDP (RFC 6544
//! passive candidates, RFC 4571 framing).
//!
//! webrtc-rs 0.21 accepts ICE-TCP, but every peer connection binds a TCP listener of its own
//! (`PeerConnectionBuilder::with_tcp_addrs`): exposed as they are, a pod would need a TCP range as
//! wide as its UDP one. So each peer connection listens on an ephemeral loopback port, and this
//! module listens on the pod's one ICE-TCP port (`--sfu-ice-tcp-port`). It reads the first framed
//! STUN binding request of each connection, finds the peer connection by the USERNAME's first
//! half (the ufrag the SFU chose for it, `with_ice_credentials`), and splices the connection to
//! that peer connection's listener. The peer connections announce, beside each UDP host
//! candidate, a passive TCP candidate with the same address and the shared port, instead of
//! their own loopback one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::IntCounterVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};

/// Connections that have not sent their first STUN message yet, at most.
const PENDING: usize = 256;
/// How long a new connection has to send its first STUN message.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);
/// The largest first message accepted (a STUN binding request is about 100 bytes).
const LARGEST_FIRST: usize = 1500;
/// The STUN attribute USERNAME (RFC 8489).
const USERNAME: u16 = 0x0006;
/// The STUN magic cookie.
const MAGIC_COOKIE: u32 = 0x2112_A442;

/// The pod's ICE-TCP port and the peer connections behind it, by ufrag.
#[derive(Debug)]
pub struct IceTcpMux {
    port: u16,
    /// `conclave_sfu_ice_tcp_connections_total`.
    connections: IntCounterVec,
    /// By ufrag: the peer connection's own listener, once its candidate told it.
    routes: Mutex<HashMap<String, Option<SocketAddr>>>,
}

/// A peer connection reachable through the mux; removed from it when dropped.
#[derive(Debug)]
pub struct Route {
    mux: Arc<IceTcpMux>,
    ufrag: String,
}

impl Route {
    /// The ufrag that names the peer connection.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.mux.routes.lock().remove(&self.ufrag);
    }
}

impl IceTcpMux {
    /// Listens on `addr` and serves connections until the mux is dropped (needs a tokio
    /// runtime).
    ///
    /// # Errors
    /// [`Error::Listen`] when the port cannot be bound.
    pub fn spawn(addr: SocketAddr, connections: IntCounterVec) -> Result<Arc<Self>> {
        let listen = |source| Error::Listen { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let listener = TcpListener::from_std(listener).map_err(listen)?;
        let port = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr, source })?
            .port();
        let mux = Arc::new(Self {
            port,
            connections,
            routes: Mutex::new(HashMap::new()),
        });
        info!(%addr, port, "ICE-TCP listening");
        let serving = Arc::downgrade(&mux);
        tokio::spawn(async move {
            let pending = Arc::new(Semaphore::new(PENDING));
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(cause = %err, "ICE-TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(mux) = serving.upgrade() else { break };
                let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                    mux.connections.with_label_values(&["refused"]).inc();
                    debug!("ICE-TCP: too many connections before their first message; dropped");
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(why) = mux.relay(stream, permit).await {
                        debug!(%why, peer_port = peer.port(), "ICE-TCP connection ended");
                    }
                });
            }
        });
        Ok(mux)
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A route for the peer connection to be built with `ufrag` (see [`ice_credentials`]).
    pub fn route(self: &Arc<Self>, ufrag: &str) -> Route {
        self.routes.lock().insert(ufrag.to_owned(), None);
        Route {
            mux: Arc::clone(self),
            ufrag: ufrag.to_owned(),
        }
    }

    /// The peer connection of `ufrag` listens at `addr` (learnt from its own passive TCP
    /// candidate); ignored once its route is gone.
    pub fn listening_at(&self, ufrag: &str, addr: SocketAddr) {
        if let Some(slot) = self.routes.lock().get_mut(ufrag) {
            *slot = Some(addr);
        }
    }

    /// Peer connections with a route now.
    pub fn routes(&self) -> usize {
        self.routes.lock().len()
    }

    async fn relay(
        &self,
        mut client: TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> std::result::Result<(), String> {
        let refused = |why: String| {
            self.connections.with_label_values(&["refused"]).inc();
            why
        };
        let first = tokio::time::timeout(FIRST_MESSAGE, read_frame(&mut client))
            .await
            .map_err(|_| refused("no STUN message in time".to_owned()))?
            .map_err(refused)?;
        let ufrag = ufrag_of(&first[2..]).ok_or_else(|| {
            refused("the first message is no STUN request with a USERNAME".into())
        })?;
        let target = self
            .routes
            .lock()
            .get(ufrag)
            .copied()
            .flatten()
            .ok_or_else(|| refused("no peer connection listens for that ufrag".into()))?;
        let mut upstream = TcpStream::connect(target)
            .await
            .map_err(|e| refused(format!("the peer connection's listener refused: {e}")))?;
        self.connections.with_label_values(&["relayed"]).inc();
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        upstream
            .write_all(&first)
            .await
            .map_err(|e| e.to_string())?;
        drop(permit);
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Reads one RFC 4571 frame (a 2-byte length, then the message); returns it with its length.
async fn read_frame(stream: &mut TcpStream) -> std::result::Result<Vec<u8>, String> {
    let mut length = [0u8; 2];
    stream
        .read_exact(&mut length)
        .await
        .map_err(|e| e.to_string())?;
    let len = usize::from(u16::from_be_bytes(length));
    if !(20..=LARGEST_FIRST).contains(&len) {
        return Err(format!("a first message of {len} bytes"));
    }
    let mut frame = vec![0u8; 2 + len];
    frame[..2].copy_from_slice(&length);
    stream
        .read_exact(&mut frame[2..])
        .await
        .map_err(|e| e.to_string())?;
    Ok(frame)
}

/// Fresh ICE credentials (ufrag and password) for a peer connection that one of the pod's shared
/// ports reaches: the muxes find the connection by this ufrag.
pub fn ice_credentials() -> (String, String) {
    use rand::distr::{Alphanumeric, SampleString};
    let mut rng = rand::rng();
    (
        Alphanumeric.sample_string(&mut rng, 16),
        Alphanumeric.sample_string(&mut rng, 32),
    )
}

/// The recipient's ufrag of a STUN binding request: the part of its USERNAME before `:`.
pub fn ufrag_of(message: &[u8]) -> Option<&str> {
    let header = message.get(..20)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    // A binding request (method 1, class request) with the magic cookie.
    if kind != 0x0001 || cookie != MAGIC_COOKIE {
        return None;
    }
    let mut attributes = message.get(20..20 + length)?;
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let value = attributes.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = 4 + len.div_ceil(4) * 4;
        attributes = attributes.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with `attributes` (type, value) in order.
    fn request(attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attributes {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut message = Vec::new();
        message.extend_from_slice(&1u16.to_be_bytes());
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        message.extend_from_slice(&[7u8; 12]);
        message.extend_from_slice(&body);
        message
    }

    #[test]
    fn the_recipients_ufrag_is_read_from_the_username() {
        let message = request(&[
            (0x0024, &[0, 0, 0, 1]),
            (USERNAME, b"sfuUfrag:client"),
            (0x0008, &[0; 20]),
        ]);
        assert_eq!(ufrag_of(&message), Some("sfuUfrag"));
        // An odd-length attribute before it is padded.
        let message = request(&[(0x8022, b"abc"), (USERNAME, b"x:y")]);
        assert_eq!(ufrag_of(&message), Some("x"));
    }

    #[test]
    fn anything_but_a_binding_request_with_a_username_is_refused() {
        assert_eq!(ufrag_of(&request(&[(0x0024, &[0, 0, 0, 1])])), None);
        let mut response = request(&[(USERNAME, b"a:b")]);
        response[0] = 0x01; // 0x0101: a success response
        assert_eq!(ufrag_of(&response), None);
        let mut no_cookie = request(&[(USERNAME, b"a:b")]);
        no_cookie[4] = 0;
        assert_eq!(ufrag_of(&no_cookie), None);
        assert_eq!(ufrag_of(b"GET / HTTP/1.1\r\n\r\n"), None);
        let mut truncated = request(&[(USERNAME, b"abcdef:ghi")]);
        truncated.truncate(26);
        assert_eq!(ufrag_of(&truncated), None);
        assert_eq!(ufrag_of(&request(&[(USERNAME, b":b")])), None);
    }
}
