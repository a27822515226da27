//! The file store (`files` crate) against a real S3 implementation: moto in server mode.

use bytes::Bytes;
use files::{Error, Files, FilesArgs};
use system_tests::S3Server;

fn args(server: &S3Server, bucket: &str) -> FilesArgs {
    FilesArgs {
        files_dir: None,
        s3_bucket: Some(bucket.to_owned()),
        s3_endpoint: Some(server.endpoint.clone()),
        s3_region: "us-east-1".into(),
        s3_allow_http: true,
        s3_virtual_hosted: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_bucket_stores_lists_ranges_streams_and_deletes() {
    let server = S3Server::start("conclave-files");
    // A pod takes the credentials from its environment; moto takes any.
    let files = Files::s3_with_credentials(&args(&server, "conclave-files"), "test", "test-secret")
        .expect("s3 store");
    assert!(files.to_string().starts_with("s3 bucket conclave-files"), "{files}");
    files.check().await.expect("the bucket answers");

    files.put("recordings/r1/recording.json", Bytes::from_static(b"{\"id\":\"r1\"}")).await.expect("put");
    files.put("recordings/r1/tracks/001-audio/000000.ogg", Bytes::from_static(b"OggS0123456789")).await.expect("put");
    files.put("recordings/r2/recording.json", Bytes::from_static(b"{}")).await.expect("put");
    assert_eq!(
        files.get_range("recordings/r1/tracks/001-audio/000000.ogg", 4..8).await.expect("range"),
        "0123"
    );
    let listed: Vec<_> = files.list("recordings/r1").await.expect("list").into_iter().map(|e| e.key).collect();
    assert_eq!(listed, ["recordings/r1/recording.json", "recordings/r1/tracks/001-audio/000000.ogg"]);
    assert!(matches!(files.get("recordings/none").await, Err(Error::NotFound(_))));
    assert_eq!(files.size("recordings/none").await.expect("head"), None);

    // A file above the part size goes up in parts (S3 multipart upload) and comes back whole.
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("composed.webm");
    let content: Vec<u8> = (0..(17 * 1024 * 1024 + 321)).map(|i: usize| (i % 253) as u8).collect();
    std::fs::write(&source, &content).expect("write");
    files.put_file("recordings/r1/composed.webm", &source).await.expect("multipart upload");
    assert_eq!(files.size("recordings/r1/composed.webm").await.expect("head"), Some(content.len() as u64));
    let back = dir.path().join("back.webm");
    files.download("recordings/r1/composed.webm", &back).await.expect("download");
    assert!(std::fs::read(&back).expect("read") == content, "the round trip changed the file");

    assert_eq!(files.delete_prefix("recordings/r1").await.expect("delete"), 3);
    assert!(files.list("recordings/r1").await.expect("list").is_empty());
    assert_eq!(files.get("recordings/r2/recording.json").await.expect("untouched"), "{}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_reported_at_the_start() {
    let server = S3Server::start("conclave-present");
    let files = Files::s3_with_credentials(&args(&server, "conclave-absent"), "test", "test-secret")
        .expect("the configuration itself is fine");
    let error = files.check().await.expect_err("a bucket that does not exist");
    assert!(error.to_string().contains("does not answer"), "{error}");
}

#[test]
fn a_plain_http_endpoint_needs_to_be_allowed() {
    let args = FilesArgs {
        files_dir: None,
        s3_bucket: Some("b".into()),
        s3_endpoint: Some("http://minio.storage:9000".into()),
        s3_region: "us-east-1".into(),
        s3_allow_http: false,
        s3_virtual_hosted: false,
    };
    let error = Files::from_args(&args, std::path::Path::new("unused")).expect_err("plain http");
    assert!(error.to_string().contains("--s3-allow-http"), "{error}");
}
