//! Compile-check of a UAS sketch against rsipstack 0.7.14 (no behaviour claimed).
use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::{udp::UdpConnection, TcpListenerConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn answer_for(offer: &[u8]) -> Option<Vec<u8>> {
    use sdp::description::common::{Address, Attribute, ConnectionInformation};
    use sdp::description::media::{MediaDescription, MediaName, RangedPort};
    use sdp::description::session::{Origin, TimeDescription, Timing};
    let offer = String::from_utf8(offer.to_vec()).ok()?;
    let sd = sdp::SessionDescription::try_from(offer).ok()?;
    let audio = sd.media_descriptions.iter().find(|m| m.media_name.media == "audio")?;
    let codecs = audio.codecs(); // from a=rtpmap only
    let c = sd.connection_information.as_ref().or(audio.connection_information.as_ref())?;
    eprintln!("offer: formats={:?} rtpmap={:?} remote={}:{}", audio.media_name.formats,
        codecs.values().map(|c| format!("{}={}/{}", c.payload_type, c.name, c.clock_rate)).collect::<Vec<_>>(),
        c.address.as_ref()?.address, audio.media_name.port.value);
    let te = codecs.values().find(|c| c.name.eq_ignore_ascii_case("telephone-event")).map(|c| c.payload_type);
    let mut formats = vec!["0".to_string()];
    let mut attrs = vec![Attribute::new("rtpmap".into(), Some("0 PCMU/8000".into()))];
    if let Some(pt) = te {
        formats.push(pt.to_string());
        attrs.push(Attribute::new("rtpmap".into(), Some(format!("{pt} telephone-event/8000"))));
        attrs.push(Attribute::new("fmtp".into(), Some(format!("{pt} 0-15"))));
    }
    attrs.push(Attribute::new("ptime".into(), Some("20".into())));
    attrs.push(Attribute::new("sendrecv".into(), None));
    let answer = sdp::SessionDescription {
        version: 0,
        origin: Origin { username: "conclave".into(), session_id: 1, session_version: 1,
            network_type: "IN".into(), address_type: "IP4".into(), unicast_address: "127.0.0.1".into() },
        session_name: "conclave".into(),
        connection_information: Some(ConnectionInformation { network_type: "IN".into(),
            address_type: "IP4".into(), address: Some(Address { address: "127.0.0.1".into(), ttl: None, range: None }) }),
        time_descriptions: vec![TimeDescription { timing: Timing { start_time: 0, stop_time: 0 }, repeat_times: vec![] }],
        media_descriptions: vec![MediaDescription {
            media_name: MediaName { media: "audio".into(), port: RangedPort { value: 40000, range: None },
                protos: vec!["RTP".into(), "AVP".into()], formats },
            attributes: attrs, ..Default::default() }],
        ..Default::default()
    };
    Some(answer.marshal().into_bytes())
}

async fn serve(layer: Arc<DialogLayer>, mut incoming: TransactionReceiver,
               states: rsipstack::dialog::dialog::DialogStateSender, contact: rsipstack::sip::Uri) {
    while let Some(mut tx) = incoming.recv().await {
        // In-dialog requests (BYE, INFO, re-INVITE, in-dialog OPTIONS, ACK w/o tx) go to the dialog.
        if let Some(Dialog::Invite(mut d)) = layer.match_dialog(&tx) {
            tokio::spawn(async move { let _ = d.handle(&mut tx).await; });
            continue;
        }
        match tx.original.method {
            Method::Invite => {
                let dialog: InviteDialog = match layer.get_or_create_server_invite(
                    &tx, states.clone(), None, Some(contact.clone())) {
                    Ok(d) => d,
                    Err(_) => { let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await; continue; }
                };
                let body = tx.original.body.clone();
                let d2 = dialog.clone();
                let user = tx.original.uri.user().map(|u| u.to_string()).unwrap_or_default();
                // handle() sends 100 Trying, then waits for ACK/CANCEL on this tx.
                let mut d3 = dialog.clone();
                tokio::spawn(async move { let _ = d3.handle(&mut tx).await; });
                tokio::spawn(async move {
                    let _ = d2.ringing(None, None);                 // 180
                    if user == "slow" { tokio::time::sleep(std::time::Duration::from_secs(3)).await; }
                    if matches!(d2.state(), DialogState::Terminated(..)) { eprintln!("cancelled before answer"); return; }
                    match answer_for(&body) {
                        Some(sdp) => {
                            let h = vec![Header::ContentType("application/sdp".into())];
                            let _ = d2.accept(Some(h), Some(sdp)); // 200 OK + SDP
                            if user == "byeme" {
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                                eprintln!("server bye: {:?}", d2.bye().await);
                            }
                        }
                        None => { let _ = d2.reject(Some(StatusCode::NotAcceptableHere), None); }
                    }
                });
            }
            Method::Options => {
                let allow = Header::Allow("INVITE, ACK, CANCEL, BYE, OPTIONS, INFO".into());
                let _ = tx.reply_with(StatusCode::OK, vec![allow], None).await;
            }
            Method::Ack => {}
            _ => { let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await; }
        }
    }
}

async fn on_states(layer: Arc<DialogLayer>, mut rx: DialogStateReceiver) {
    while let Some(st) = rx.recv().await {
        match st {
            DialogState::Confirmed(id, _resp) => { eprintln!("confirmed {id}"); /* ACK received: start media */ }
            DialogState::Info(_id, req, handle) => {
                // application/dtmf-relay "Signal=5\r\nDuration=160" or application/dtmf "5"
                let body = String::from_utf8_lossy(&req.body).to_string(); eprintln!("INFO body: {body:?}");
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Updated(_id, req, handle) => {
                // re-INVITE or UPDATE: answer with our (unchanged or updated) SDP
                eprintln!("updated {}", req.method); if req.method == Method::Invite {
                    let h = vec![Header::ContentType("application/sdp".into())];
                    let _ = handle.respond(StatusCode::OK, Some(h), answer_for(&req.body)).await;
                } else {
                    let _ = handle.reply(StatusCode::OK).await;
                }
            }
            DialogState::Options(_id, _req, handle) => { let _ = handle.reply(StatusCode::OK).await; }
            DialogState::Terminated(id, reason) => { eprintln!("terminated {id} {reason:?}"); layer.remove_dialog(&id); /* stop media */ }
            _ => {}
        }
    }
}

async fn hang_up(layer: &DialogLayer, id: &rsipstack::dialog::DialogId) {
    if let Some(Dialog::Invite(d)) = layer.get_dialog(id) {
        let _ = d.bye().await; // sends BYE in-dialog; Terminated state follows
    }
}

#[tokio::main]
async fn main() -> rsipstack::Result<()> {
    let token = CancellationToken::new();
    let tl = TransportLayer::new(token.clone());
    let addr: std::net::SocketAddr = "127.0.0.1:5098".parse().unwrap();
    tl.add_transport(UdpConnection::create_connection(addr, None, Some(token.child_token())).await?.into());
    tl.add_transport(TcpListenerConnection::new(addr, None).await?.into());
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(token.clone())
        .with_transport_layer(tl)
        .with_user_agent("conclave-sip")
        .build();
    let incoming = endpoint.incoming_transactions()?;
    let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let (states_tx, states_rx) = layer.new_dialog_state_channel();
    let first = endpoint.get_addrs().first().cloned().expect("addr");
    let contact = rsipstack::sip::Uri {
        scheme: Some(rsipstack::sip::Scheme::Sip), auth: None,
        host_with_port: first.addr, params: vec![], headers: vec![],
    };
    let inner = endpoint.inner.clone();
    tokio::spawn(async move { let _ = inner.serve().await; });
    tokio::spawn(on_states(layer.clone(), states_rx));
    let _ = hang_up;
    serve(layer, incoming, states_tx, contact).await;
    Ok(())
}

#[allow(dead_code)]
fn rtp_roundtrip() -> Result<(), shared::error::Error> {
    use shared::marshal::{Marshal, Unmarshal};
    let p = rtp::Packet {
        header: rtp::Header { version: 2, payload_type: 0, sequence_number: 1, timestamp: 160, ssrc: 7, ..Default::default() },
        payload: bytes::Bytes::from_static(&[0xff; 160]),
    };
    let wire = p.marshal()?;                       // BytesMut
    let back = rtp::Packet::unmarshal(&mut &wire[..])?;
    assert_eq!(back.header.timestamp, 160);
    Ok(())
}
