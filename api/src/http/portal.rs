//! The web portal: the built single-page application (`web/dist`) served at `/`.
//!
//! Files are served as they are; any other path that is not a file (`/join/123456789`,
//! `/conferences/…`) gets `index.html`, whose script routes in the browser. Hashed build assets
//! (`/assets/…`) are cached for a year, `index.html` never, so a new build is picked up at the
//! next page load. A missing build answers 503 with what to run, instead of an empty page.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// What the portal's pages may load: only our own origin, plus websockets to SFU pods
/// (signaling may live on another host in a cluster) and local media blobs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
     connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The portal's routes: a fallback for whatever the API (and, standalone, the SFU) did not match.
pub fn router(dir: &Path) -> Router {
    let dir = dir.to_path_buf();
    Router::new()
        .fallback(move |request: Request<Body>| serve(dir.clone(), request))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
        ))
}

async fn serve(dir: PathBuf, request: Request<Body>) -> Response {
    let index = dir.join("index.html");
    if !index.is_file() {
        return not_built(&dir);
    }
    let is_asset = request.uri().path().starts_with("/assets/");
    let files = ServeDir::new(&dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(&index));
    let mut response = match files.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(infallible) => match infallible {},
    };
    let cache = if is_asset && response.status() == StatusCode::OK {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

fn not_built(dir: &Path) -> Response {
    tracing::warn!(dir = %dir.display(), "the web portal is not built");
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Conclave: portal not built</title>\
         <h1>The web portal is not built</h1>\
         <p>No <code>index.html</code> in <code>{}</code>. Build it with \
         <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> (or start Conclave with \
         <code>scripts/run.sh</code>, which does both), or point <code>--portal-dir</code> / \
         <code>CONCLAVE_PORTAL_DIR</code> at a built portal. The API under <code>/api/v1</code> \
         works without it.</p>",
        html_escape(&dir.display().to_string())
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(body)).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(dir: &Path, path: &str) -> Response {
        router(dir)
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn unknown_paths_get_the_index_and_assets_are_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("index.html"), "<!doctype html>portal").expect("write");
        std::fs::create_dir(dir.path().join("assets")).expect("mkdir");
        std::fs::write(dir.path().join("assets/app-1a2b.js"), "export {}").expect("write");

        let page = get(dir.path(), "/join/123456789").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("default-src 'self'")
        );
        assert_eq!(text(page).await, "<!doctype html>portal");

        let asset = get(dir.path(), "/assets/app-1a2b.js").await;
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(
            asset.headers()[header::CACHE_CONTROL]
                .to_str()
                .expect("ascii")
                .contains("immutable")
        );
        assert_eq!(text(asset).await, "export {}");
    }

    #[tokio::test]
    async fn a_missing_build_says_how_to_build_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let page = get(&dir.path().join("dist<x>"), "/").await;
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = text(page).await;
        assert!(body.contains("npm ci &amp;&amp; npm run build"), "{body}");
        assert!(body.contains("dist&lt;x&gt;"), "{body}");
    }
}
