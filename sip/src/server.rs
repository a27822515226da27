//! The SIP side, on rsipstack (pinned `=0.7.14`: it releases often and its API moves): the
//! endpoint on UDP and TCP, who may call, INVITE → 100/180/200 with our SDP answer, and the
//! in-dialog requests (ACK, BYE, INFO, re-INVITE, OPTIONS) routed to their call by Call-ID.
//!
//! The stack answers on its own: 100 Trying, 200 to BYE, 200 + 487 to CANCEL, and drops a
//! datagram it cannot parse as SIP (it has no Via to answer to reliably).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{
    SipConnection, TcpListenerConnection, TransportLayer, udp::UdpConnection,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::call::{self, CallEvent, CallSetup};
use crate::conference::Conferences;
use crate::config::Config;
use crate::join::JoinClient;
use crate::metrics::Metrics;
use crate::prompt::Prompts;
use crate::rate::CallRate;
use crate::sdp::{self, OfferError};
use crate::{Error, Result};

/// Methods we answer, in `Allow`.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

/// A live call as the SIP side knows it.
#[derive(Debug)]
struct CallEntry {
    events: mpsc::UnboundedSender<CallEvent>,
    local: SocketAddr,
    session_id: u64,
    version: u64,
    last_answer: Vec<u8>,
}

type Calls = Arc<Mutex<HashMap<String, CallEntry>>>;

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Where the SIP endpoint listens (UDP and TCP).
    pub local: SocketAddr,
    token: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Stops the endpoint and every call task it started.
    pub async fn stop(self) {
        self.token.cancel();
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

struct Shared {
    config: Config,
    prompts: Arc<Prompts>,
    metrics: Metrics,
    join: JoinClient,
    layer: Arc<DialogLayer>,
    states: DialogStateSender,
    calls: Calls,
    rate: Mutex<CallRate>,
    contact_addr: SocketAddr,
    conferences: Arc<Conferences>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Binds the SIP endpoint and starts answering calls.
///
/// # Errors
/// When the address cannot be bound.
pub async fn start(config: Config, prompts: Arc<Prompts>, metrics: Metrics) -> Result<Gateway> {
    let token = CancellationToken::new();
    let transport = TransportLayer::new(token.clone());
    let external = config
        .public_address
        .map(|ip| SocketAddr::new(ip, config.listen.port()));
    let udp = UdpConnection::create_connection(config.listen, external, Some(token.child_token()))
        .await?;
    let local = udp.get_addr().get_socketaddr()?;
    transport.add_transport(udp.into());
    let tcp_addr = SocketAddr::new(config.listen.ip(), local.port());
    transport.add_transport(TcpListenerConnection::new(tcp_addr, external).await?.into());
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(token.clone())
        .with_transport_layer(transport)
        .with_user_agent("conclave-sip")
        .build();
    let incoming = endpoint.incoming_transactions()?;
    let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (states, states_rx) = layer.new_dialog_state_channel();
    let contact_ip = config.public_address.unwrap_or(local.ip());
    let conference_metrics = metrics.clone();
    let shared = Arc::new(Shared {
        join: JoinClient::new(&config)?,
        rate: Mutex::new(CallRate::new(config.calls_per_minute)),
        config,
        prompts,
        metrics,
        layer: layer.clone(),
        states,
        calls: Arc::new(Mutex::new(HashMap::new())),
        contact_addr: SocketAddr::new(contact_ip, local.port()),
        conferences: Conferences::new(conference_metrics),
    });
    tracing::info!(address = %local, "SIP endpoint listening (UDP and TCP)");
    let inner = endpoint.inner.clone();
    let tasks = vec![
        tokio::spawn(async move {
            if let Err(err) = inner.serve().await {
                tracing::error!(cause = %err, "the SIP endpoint stopped");
            }
        }),
        tokio::spawn(on_dialog_states(shared.clone(), states_rx)),
        tokio::spawn(accept_loop(shared, incoming)),
    ];
    Ok(Gateway {
        local,
        token,
        tasks,
    })
}

async fn accept_loop(shared: Arc<Shared>, mut incoming: TransactionReceiver) {
    while let Some(mut tx) = incoming.recv().await {
        // In-dialog requests (BYE, INFO, re-INVITE, ACK of our 200) go to their dialog.
        if let Some(Dialog::Invite(mut dialog)) = shared.layer.match_dialog(&tx) {
            tokio::spawn(async move {
                if let Err(err) = dialog.handle(&mut tx).await {
                    tracing::debug!(cause = %err, "in-dialog request failed");
                }
            });
            continue;
        }
        let result = match tx.original.method {
            Method::Invite => on_invite(&shared, tx).await,
            Method::Options => tx
                .reply_with(StatusCode::OK, vec![Header::Allow(ALLOW.into())], None)
                .await
                .map_err(Error::from),
            Method::Ack => Ok(()),
            _ => tx
                .reply(StatusCode::CallTransactionDoesNotExist)
                .await
                .map_err(Error::from),
        };
        if let Err(err) = result {
            tracing::warn!(cause = %err, "a SIP request could not be answered");
        }
    }
}

/// The address the request came from: the Via's `received`, which the stack sets to the
/// packet's source.
fn source_of(request: &Request) -> Option<IpAddr> {
    let via = request.via_header().ok()?;
    let (_, host) = SipConnection::parse_target_from_via(via).ok()?;
    host.host.to_string().trim_matches(['[', ']']).parse().ok()
}

async fn on_invite(shared: &Arc<Shared>, mut tx: Transaction) -> Result<()> {
    let metrics = &shared.metrics;
    let Some(source) = source_of(&tx.original) else {
        metrics
            .calls_refused
            .with_label_values(&["badRequest"])
            .inc();
        return Ok(tx.reply(StatusCode::BadRequest).await?);
    };
    if !shared.config.accepts(source) {
        metrics
            .calls_refused
            .with_label_values(&["forbidden"])
            .inc();
        tracing::info!("call refused: not from a trunk and the gateway is not open (--sip-open)");
        return Ok(tx.reply(StatusCode::Forbidden).await?);
    }
    if !shared.config.is_trunk(source) {
        let verdict = shared
            .rate
            .lock()
            .map(|mut rate| rate.take(source, std::time::Instant::now()))
            .unwrap_or(Ok(()));
        if let Err(wait) = verdict {
            metrics
                .calls_refused
                .with_label_values(&["rateLimited"])
                .inc();
            let retry = Header::RetryAfter(wait.as_secs().max(1).to_string().into());
            return Ok(tx
                .reply_with(StatusCode::ServiceUnavailable, vec![retry], None)
                .await?);
        }
    }
    let active = shared
        .calls
        .lock()
        .map(|calls| calls.len())
        .unwrap_or(usize::MAX);
    if active >= shared.config.max_calls as usize {
        metrics.calls_refused.with_label_values(&["busy"]).inc();
        return Ok(tx.reply(StatusCode::ServiceUnavailable).await?);
    }
    let negotiated = match sdp::negotiate(&tx.original.body) {
        Ok(negotiated) => negotiated,
        Err(err) => {
            let (reason, status) = match err {
                OfferError::Malformed(_) => ("badSdp", StatusCode::BadRequest),
                OfferError::NoCommonCodec(_) => ("noCommonCodec", StatusCode::NotAcceptableHere),
            };
            metrics.calls_refused.with_label_values(&[reason]).inc();
            tracing::info!(cause = %err, "call refused");
            return Ok(tx.reply(status).await?);
        }
    };
    let call_id = tx
        .original
        .call_id_header()
        .map_err(rsipstack::Error::from)?
        .value()
        .to_owned();
    let dialled = tx.original.uri.user().unwrap_or("").to_owned();
    let caller_id = tx
        .original
        .from_header()
        .ok()
        .and_then(|from| from.uri().ok())
        .and_then(|uri| uri.user().map(str::to_owned));
    // Our media address: the public one, else the one that routes to the caller.
    let media_ip = match shared.config.public_address {
        Some(ip) => ip,
        None if !shared.config.listen.ip().is_unspecified() => shared.config.listen.ip(),
        None => route_to(source).await.unwrap_or(shared.contact_addr.ip()),
    };
    let ports = shared.config.rtp_ports;
    let bind_ip = if shared.config.listen.ip().is_unspecified() {
        shared.config.listen.ip()
    } else {
        media_ip
    };
    let socket = match call::bind_rtp(bind_ip, ports.first, ports.last, rand::random()).await {
        Ok(socket) => socket,
        Err(err) => {
            metrics.calls_refused.with_label_values(&["busy"]).inc();
            tracing::warn!(cause = %err, "call refused: no RTP port (--sip-rtp-ports)");
            return Ok(tx.reply(StatusCode::ServiceUnavailable).await?);
        }
    };
    let local = SocketAddr::new(
        media_ip,
        socket
            .local_addr()
            .map_err(|source| Error::Io {
                what: "reading the RTP socket's port".into(),
                source,
            })?
            .port(),
    );
    let session_id: u64 = rand::random::<u32>().into();
    let answer = sdp::answer(&negotiated, local, session_id, 1);

    let contact = rsipstack::sip::Uri {
        scheme: Some(rsipstack::sip::Scheme::Sip),
        auth: None,
        host_with_port: shared.contact_addr.into(),
        params: vec![],
        headers: vec![],
    };
    // The stack drops what it cannot parse (no Call-ID, CSeq or From tag); a request it
    // parses but cannot make a dialog of (an INVITE without Contact) is ours to refuse.
    let dialog = match shared.layer.get_or_create_server_invite(
        &tx,
        shared.states.clone(),
        None,
        Some(contact),
    ) {
        Ok(dialog) => dialog,
        Err(err) => {
            metrics
                .calls_refused
                .with_label_values(&["badRequest"])
                .inc();
            tracing::info!(cause = %err, "call refused: not a valid INVITE");
            return Ok(tx.reply(StatusCode::BadRequest).await?);
        }
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    if let Ok(mut calls) = shared.calls.lock() {
        calls.insert(
            call_id.clone(),
            CallEntry {
                events: events_tx,
                local,
                session_id,
                version: 1,
                last_answer: answer.clone(),
            },
        );
    }
    metrics.calls_active.inc();
    let mut handler = dialog.clone();
    // Sends 100 Trying, then waits for the ACK or a CANCEL on the INVITE transaction.
    tokio::spawn(async move {
        if let Err(err) = handler.handle(&mut tx).await {
            tracing::debug!(cause = %err, "INVITE transaction ended with an error");
        }
    });
    let shared = shared.clone();
    let span = tracing::info_span!("call", call = %short(&call_id));
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            tracing::info!(codec = negotiated.codec.name(), "incoming call");
            let answered = answer_call(&shared, &dialog, answer).await;
            if answered {
                call::run(CallSetup {
                    dialog,
                    socket,
                    negotiated,
                    events,
                    dialled,
                    caller: source,
                    caller_id,
                    prompts: shared.prompts.clone(),
                    join: shared.join.clone(),
                    metrics: shared.metrics.clone(),
                    digit_timeout: Duration::from_secs(shared.config.digit_timeout_seconds),
                    conferences: Arc::clone(&shared.conferences),
                })
                .await;
            } else {
                shared.metrics.calls.with_label_values(&["abandoned"]).inc();
                tracing::info!("caller cancelled before the answer");
            }
            if let Ok(mut calls) = shared.calls.lock() {
                calls.remove(&call_id);
            }
            shared.metrics.calls_active.dec();
        },
        span,
    ));
    Ok(())
}

/// Rings, then answers with our SDP unless the caller cancelled meanwhile.
async fn answer_call(
    shared: &Shared,
    dialog: &rsipstack::dialog::invite_dialog::InviteDialog,
    answer: Vec<u8>,
) -> bool {
    if let Err(err) = dialog.ringing(None, None) {
        tracing::warn!(cause = %err, "180 Ringing failed");
    }
    if shared.config.answer_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.config.answer_delay_ms)).await;
    }
    if matches!(dialog.state(), DialogState::Terminated(..)) {
        return false;
    }
    let content_type = vec![Header::ContentType("application/sdp".into())];
    match dialog.accept(Some(content_type), Some(answer)) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(cause = %err, "answering failed");
            false
        }
    }
}

/// The local address the kernel would use to reach `peer`.
async fn route_to(peer: IpAddr) -> Option<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(any).await.ok()?;
    socket.connect(SocketAddr::new(peer, 9)).await.ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// A Call-ID shortened for logs: its part after `@` is often the caller's address.
fn short(call_id: &str) -> String {
    call_id
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect()
}

fn send(calls: &Calls, id: &DialogId, event: CallEvent) {
    if let Ok(calls) = calls.lock()
        && let Some(entry) = calls.get(&id.call_id)
    {
        let _ = entry.events.send(event);
    }
}

async fn on_dialog_states(shared: Arc<Shared>, mut states: DialogStateReceiver) {
    while let Some(state) = states.recv().await {
        match state {
            DialogState::Confirmed(id, _) => send(&shared.calls, &id, CallEvent::Confirmed),
            DialogState::Info(id, request, handle) => {
                let content_type = request.headers.iter().find_map(|h| match h {
                    Header::ContentType(ct) => Some(ct.value().to_owned()),
                    _ => None,
                });
                match crate::dtmf::digit_of_info(content_type.as_deref(), &request.body) {
                    Some(digit) => {
                        send(&shared.calls, &id, CallEvent::InfoDigit(digit));
                        let _ = handle.reply(StatusCode::OK).await;
                    }
                    None => {
                        let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                    }
                }
            }
            DialogState::Updated(id, request, handle) => {
                if request.method != Method::Invite {
                    let _ = handle.reply(StatusCode::OK).await;
                    continue;
                }
                let (status, body) = reanswer(&shared.calls, &id, &request.body);
                let headers = body
                    .is_some()
                    .then(|| vec![Header::ContentType("application/sdp".into())]);
                let _ = handle.respond(status, headers, body).await;
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Terminated(id, reason) => {
                send(&shared.calls, &id, CallEvent::Ended(format!("{reason:?}")));
                shared.layer.remove_dialog(&id);
            }
            _ => {}
        }
    }
}

/// Answers a re-INVITE: a new offer (hold, unhold, another address) is negotiated and the
/// call told; an offerless one gets our last answer again.
fn reanswer(calls: &Calls, id: &DialogId, offer: &[u8]) -> (StatusCode, Option<Vec<u8>>) {
    let Ok(mut calls) = calls.lock() else {
        return (StatusCode::ServerInternalError, None);
    };
    let Some(entry) = calls.get_mut(&id.call_id) else {
        return (StatusCode::CallTransactionDoesNotExist, None);
    };
    if offer.iter().all(u8::is_ascii_whitespace) {
        return (StatusCode::OK, Some(entry.last_answer.clone()));
    }
    match sdp::negotiate(offer) {
        Ok(negotiated) => {
            entry.version += 1;
            let answer = sdp::answer(&negotiated, entry.local, entry.session_id, entry.version);
            entry.last_answer = answer.clone();
            let _ = entry.events.send(CallEvent::Renegotiated(negotiated));
            (StatusCode::OK, Some(answer))
        }
        Err(OfferError::Malformed(_)) => (StatusCode::BadRequest, None),
        Err(OfferError::NoCommonCodec(_)) => (StatusCode::NotAcceptableHere, None),
    }
}
