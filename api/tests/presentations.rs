//! Presentations: uploads with the SFU's upload ticket become page images in the file store,
//! pages are served with the SFU's view ticket of the same meeting, and hostile files are
//! refused clearly within the limits. Real poppler (and LibreOffice when installed).

#![allow(clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use proto::ConferenceId;
use proto::presentation::{UploadClaims, ViewClaims};
use support::{Backend, Reply, TestApp};
use tower::ServiceExt;

/// A PDF with one page per colour, each page filled with it (960×540 points), written by hand
/// with a correct cross-reference table. `encrypt` adds a standard security handler whose
/// password nobody knows; `count` overrides the page tree's count.
fn pdf(colours: &[[f32; 3]], encrypt: bool, count: Option<u64>) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
    let kids: Vec<String> = (0..colours.len())
        .map(|i| format!("{} 0 R", 3 + 2 * i))
        .collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            count.unwrap_or(colours.len() as u64)
        )
        .into_bytes(),
    );
    for (i, [r, g, b]) in colours.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 960 540] /Contents {} 0 R >>",
                4 + 2 * i
            )
            .into_bytes(),
        );
        let content = format!("{r} {g} {b} rg 0 0 960 540 re f");
        objects.push(
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .into_bytes(),
        );
    }
    if encrypt {
        objects.push(
            format!(
                "<< /Filter /Standard /V 1 /R 2 /O <{}> /U <{}> /P -44 >>",
                "11".repeat(32),
                "22".repeat(32)
            )
            .into_bytes(),
        );
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend(object);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let encryption = if encrypt {
        format!(
            " /Encrypt {} 0 R /ID [<{id}> <{id}>]",
            objects.len(),
            id = "ab".repeat(16)
        )
    } else {
        String::new()
    };
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{encryption} >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

const RED: [f32; 3] = [1.0, 0.0, 0.0];
const GREEN: [f32; 3] = [0.0, 1.0, 0.0];
const BLUE: [f32; 3] = [0.0, 0.0, 1.0];

fn upload_ticket(app: &TestApp, conference: &str) -> String {
    let claims = UploadClaims::new(
        "account:ada",
        "Ada",
        &ConferenceId::from(conference),
        app.now().timestamp(),
    );
    app.state.tokens.sign_upload(&claims).unwrap()
}

fn view_ticket(app: &TestApp, conference: &str) -> String {
    let claims = ViewClaims::new(
        "guest:bob",
        &ConferenceId::from(conference),
        app.now().timestamp(),
    );
    app.state.tokens.sign_view(&claims).unwrap()
}

async fn upload(app: &TestApp, ticket: Option<&str>, filename: &str, body: Vec<u8>) -> Reply {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/presentations?filename={filename}"))
        .header("x-conclave-request", "1")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(ticket) = ticket {
        request = request.header(header::AUTHORIZATION, format!("Bearer {ticket}"));
    }
    app.send(request.body(Body::from(body)).unwrap()).await
}

/// A page's status, headers and bytes.
async fn page(
    app: &TestApp,
    ticket: Option<&str>,
    id: &str,
    n: u32,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri(format!("/api/v1/presentations/{id}/pages/{n}"));
    if let Some(ticket) = ticket {
        request = request.header(header::AUTHORIZATION, format!("Bearer {ticket}"));
    }
    let response = app
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG image");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

#[tokio::test]
async fn a_three_page_pdf_becomes_three_page_images_for_the_meeting() {
    let app = TestApp::new(Backend::Sqlite).await;
    let ticket = upload_ticket(&app, "conf-1");
    let reply = upload(
        &app,
        Some(&ticket),
        "Quarterly%20review.pdf",
        pdf(&[RED, GREEN, BLUE], false, None),
    )
    .await
    .expect(StatusCode::CREATED);
    let presentation = &reply.body["presentation"];
    assert_eq!(presentation["pages"], 3);
    assert_eq!(presentation["title"], "Quarterly review");
    assert_eq!(presentation["uploadedByName"], "Ada");
    let id = presentation["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "128 random bits");

    // The descriptor the SFU will verify names the same presentation.
    let descriptor = app
        .state
        .tokens
        .verify_descriptor(
            reply.body["descriptor"].as_str().unwrap(),
            app.now().timestamp(),
        )
        .unwrap();
    assert_eq!(descriptor.pid.as_str(), id);
    assert_eq!((descriptor.pages, descriptor.conf.as_str()), (3, "conf-1"));

    let viewer = view_ticket(&app, "conf-1");
    let mut images = Vec::new();
    for n in 1..=3 {
        let (status, headers, png) = page(&app, Some(&viewer), &id, n).await;
        assert_eq!(status, StatusCode::OK, "page {n}");
        assert_eq!(headers[header::CONTENT_TYPE], "image/png");
        assert!(
            headers[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .starts_with("private")
        );
        assert_eq!(png_size(&png), (1280, 720), "a 16:9 page at 1280 px");
        images.push(png);
    }
    assert!(
        images[0] != images[1] && images[1] != images[2],
        "three different pages"
    );
    assert_eq!(
        page(&app, Some(&viewer), &id, 4).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        page(&app, Some(&viewer), &id, 0).await.0,
        StatusCode::NOT_FOUND
    );

    // Stored under the contract's keys, with the original and meta.json.
    let meta = app
        .state
        .files
        .get(&format!("presentations/conf-1/{id}/meta.json"))
        .await
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert_eq!(meta["pages"], 3);
    let original = app
        .state
        .files
        .get(&format!("presentations/conf-1/{id}/original.pdf"))
        .await
        .unwrap();
    assert!(original.starts_with(b"%PDF-"));
}

#[tokio::test]
async fn pages_are_served_only_with_a_view_ticket_of_the_same_meeting() {
    let app = TestApp::new(Backend::Sqlite).await;
    let reply = upload(
        &app,
        Some(&upload_ticket(&app, "conf-1")),
        "a.pdf",
        pdf(&[RED], false, None),
    )
    .await
    .expect(StatusCode::CREATED);
    let id = reply.body["presentation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(page(&app, None, &id, 1).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        page(&app, Some(&upload_ticket(&app, "conf-1")), &id, 1)
            .await
            .0,
        StatusCode::FORBIDDEN,
        "an upload ticket is no view ticket"
    );
    assert_eq!(
        page(&app, Some(&view_ticket(&app, "conf-2")), &id, 1)
            .await
            .0,
        StatusCode::NOT_FOUND,
        "another meeting's ticket finds nothing"
    );
    assert_eq!(
        page(&app, Some(&view_ticket(&app, "conf-1")), "../../etc", 1)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        page(&app, Some(&view_ticket(&app, "conf-1")), &"0".repeat(32), 1)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // An expired view ticket.
    let old = ViewClaims::new(
        "guest:bob",
        &ConferenceId::from("conf-1"),
        app.now().timestamp() - 3600,
    );
    let old = app.state.tokens.sign_view(&old).unwrap();
    assert_eq!(
        page(&app, Some(&old), &id, 1).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        page(&app, Some(&view_ticket(&app, "conf-1")), &id, 1)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn uploads_need_the_sfus_upload_ticket() {
    let app = TestApp::new(Backend::Sqlite).await;
    let body = pdf(&[RED], false, None);
    let reply = upload(&app, None, "a.pdf", body.clone())
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "presentationTicket");
    let reply = upload(
        &app,
        Some(&view_ticket(&app, "conf-1")),
        "a.pdf",
        body.clone(),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "presentationTicket");
    let admin = app.admin().await;
    upload(&app, Some(&admin), "a.pdf", body)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let formats = app
        .call(Method::GET, "/api/v1/presentations/accepted", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(formats.body["maxPages"], 300);
    assert_eq!(formats.body["maxBytes"], 50_000_000);
}

#[tokio::test]
async fn hostile_and_unsuitable_files_are_refused_clearly() {
    let app = TestApp::with(Backend::Sqlite, |config| {
        config.presentations.max_bytes = 200_000;
        config.presentations.soffice = Some("off".into());
    })
    .await;
    let ticket = upload_ticket(&app, "conf-1");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str, &str)> = vec![
        (
            "slides.pdf",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xffThis program cannot be run in DOS mode".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedFormat",
            "a program",
        ),
        (
            "deck.pptx",
            b"PK\x03\x04\x14\x00\x06\x00rest of a zip".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedFormat",
            "PDF only on this server",
        ),
        (
            "locked.pdf",
            pdf(&[RED], true, None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "encrypted",
            "password",
        ),
        (
            "empty.pdf",
            pdf(&[], false, None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "noPages",
            "no pages",
        ),
        (
            "broken.pdf",
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\ngarbage garbage\n".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "brokenDocument",
            "damaged",
        ),
        (
            "lying.pdf",
            pdf(&[RED], false, Some(100_000_000)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "brokenDocument",
            "damaged",
        ),
        (
            "long.pdf",
            pdf(&[GREEN; 400], false, None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tooManyPages",
            "400 pages",
        ),
        (
            "huge.pdf",
            [b"%PDF-1.4\n".as_slice(), &vec![b' '; 300_000]].concat(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "tooLarge",
            "larger than",
        ),
    ];
    for (name, body, status, code, words) in cases {
        let started = std::time::Instant::now();
        let reply = upload(&app, Some(&ticket), name, body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.text);
        assert_eq!(reply.code(), code, "{name}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{name}: {message}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    // Nothing of the refused files was stored.
    let stored = app.state.files.list("presentations").await.unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}

/// A flat OpenDocument presentation of two slides (LibreOffice turns it into a real `.odp`).
const FLAT_DECK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.2" office:mimetype="application/vnd.oasis.opendocument.presentation">
 <office:body><office:presentation>
  <draw:page draw:name="one"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm"><draw:text-box><text:p>First slide</text:p></draw:text-box></draw:frame></draw:page>
  <draw:page draw:name="two"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm"><draw:text-box><text:p>Second slide</text:p></draw:text-box></draw:frame></draw:page>
 </office:presentation></office:body>
</office:document>
"#;

#[tokio::test]
async fn an_odp_presentation_is_converted_with_libreoffice() {
    // A missing converter fails the test loudly: the README's test command installs it.
    let soffice = api::presentation::convert::find_program("soffice")
        .expect("soffice is not installed: scripts/test.sh installs libreoffice-impress-nogui");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deck.fodp"), FLAT_DECK).unwrap();
    let made = std::process::Command::new(&soffice)
        .arg(format!(
            "-env:UserInstallation=file://{}/profile",
            dir.path().display()
        ))
        .args(["--headless", "--convert-to", "odp", "--outdir"])
        .arg(dir.path())
        .arg(dir.path().join("deck.fodp"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let odp = std::fs::read(dir.path().join("deck.odp")).unwrap();

    let app = TestApp::new(Backend::Sqlite).await;
    let formats = app
        .call(Method::GET, "/api/v1/presentations/accepted", None, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(formats.body["office"], true);
    let reply = upload(&app, Some(&upload_ticket(&app, "conf-1")), "deck.odp", odp)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(reply.body["presentation"]["pages"], 2);
    assert_eq!(reply.body["presentation"]["format"], "odp");
    let id = reply.body["presentation"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in [
        "original.odp",
        "document.pdf",
        "page-1.png",
        "page-2.png",
        "meta.json",
    ] {
        assert!(
            app.state
                .files
                .get(&format!("presentations/conf-1/{id}/{name}"))
                .await
                .is_ok(),
            "{name} stored"
        );
    }
    let (status, _, png) = page(&app, Some(&view_ticket(&app, "conf-1")), &id, 2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(png_size(&png).0, 1280, "a landscape slide 1280 px wide");
}
