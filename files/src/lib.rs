//! Conclave's file store: presentations and recordings, in a local folder (standalone, and a
//! single API replica with a volume) or in an S3-compatible bucket (a cluster: every API replica
//! and SFU pod sees the same files).
//!
//! [`Files`] is a thin layer over the `object_store` crate that speaks in `/`-separated keys
//! (`recordings/<id>/tracks/001-audio/000003.ogg`), answers [`Error::NotFound`] for a missing
//! key, and streams large files in parts. Keys are built by the code, never taken from a request
//! as they are: [`Files`] refuses keys with empty, `.` or `..` segments all the same.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

/// Environment variable holding the S3 access key ID (never a flag: it is a credential).
pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// Environment variable holding the S3 secret access key.
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// Parts of a streamed upload: 8 MiB, above S3's 5 MiB minimum.
const PART: usize = 8 * 1024 * 1024;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No file under the key.
    #[error("no file at {0}")]
    NotFound(String),
    /// A key the store cannot hold (empty, `.` or `..` segments, a leading `/`).
    #[error("invalid file key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why.
        reason: String,
    },
    /// The configuration names no usable store.
    #[error("{0}")]
    Config(String),
    /// The store failed (disk, network, credentials, bucket).
    #[error("file store: {0}")]
    Store(#[source] object_store::Error),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn store_error(key: &str, error: object_store::Error) -> Error {
    match error {
        object_store::Error::NotFound { .. } => Error::NotFound(key.to_owned()),
        other => Error::Store(other),
    }
}

/// One stored file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: DateTime<Utc>,
}

/// Where files go: flags and environment shared by `conclave api`, `conclave sfu` and
/// `conclave standalone`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilesArgs {
    /// Folder for presentations and recordings when no S3 bucket is set. Default: `files` in the
    /// data folder (standalone and the API), or `/var/lib/conclave/files` (an SFU pod).
    #[arg(long, env = "CONCLAVE_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// S3-compatible bucket for presentations and recordings (every API replica and SFU pod must
    /// use the same). Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "CONCLAVE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Endpoint of the S3 service, e.g. `https://minio.storage:9000`. Default: AWS for the region.
    #[arg(long, env = "CONCLAVE_S3_ENDPOINT", requires = "s3_bucket")]
    pub s3_endpoint: Option<String>,

    /// Region of the bucket.
    #[arg(long, env = "CONCLAVE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Allow a plain `http://` S3 endpoint (a store inside the cluster network).
    #[arg(long, env = "CONCLAVE_S3_ALLOW_HTTP", requires = "s3_bucket")]
    pub s3_allow_http: bool,

    /// Address buckets as `https://BUCKET.ENDPOINT` instead of `https://ENDPOINT/BUCKET`.
    #[arg(long, env = "CONCLAVE_S3_VIRTUAL_HOSTED", requires = "s3_bucket")]
    pub s3_virtual_hosted: bool,
}

/// The file store. Cheap to clone.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    /// For logs: `folder /x/y` or `s3 bucket b at e`.
    describe: Arc<str>,
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Files").field("store", &self.describe).finish()
    }
}

impl fmt::Display for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Files {
    /// Files in a local folder, created when missing.
    pub fn local(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(Error::Store)?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            describe: format!("folder {}", dir.display()).into(),
        })
    }

    /// Files in an S3-compatible bucket. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and `AWS_SESSION_TOKEN` when set).
    pub fn s3(args: &FilesArgs) -> Result<Self> {
        Self::s3_from(args, None)
    }

    /// Files in an S3-compatible bucket with the credentials given here instead of the
    /// environment's (an embedding program that holds them otherwise; tests).
    pub fn s3_with_credentials(args: &FilesArgs, access_key_id: &str, secret_access_key: &str) -> Result<Self> {
        Self::s3_from(args, Some((access_key_id, secret_access_key)))
    }

    fn s3_from(args: &FilesArgs, credentials: Option<(&str, &str)>) -> Result<Self> {
        let Some(bucket) = args.s3_bucket.as_deref().filter(|bucket| !bucket.is_empty()) else {
            return Err(Error::Config("--s3-bucket is empty".into()));
        };
        // reqwest is built without a bundled TLS provider; the project's one is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&args.s3_region)
            .with_allow_http(args.s3_allow_http)
            .with_virtual_hosted_style_request(args.s3_virtual_hosted);
        if let Some((access_key_id, secret_access_key)) = credentials {
            builder = builder
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key);
        }
        if let Some(endpoint) = &args.s3_endpoint {
            if endpoint.starts_with("http://") && !args.s3_allow_http {
                return Err(Error::Config(format!(
                    "the S3 endpoint {endpoint} is plain http: add --s3-allow-http \
                     (CONCLAVE_S3_ALLOW_HTTP=true) to use it anyway"
                )));
            }
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|error| {
            Error::Config(format!("S3 bucket {bucket}: {error}"))
        })?;
        let at = args.s3_endpoint.as_deref().unwrap_or("AWS");
        Ok(Self {
            store: Arc::new(store),
            describe: format!("s3 bucket {bucket} at {at}").into(),
        })
    }

    /// The store the flags ask for: the S3 bucket when one is set, else `--files-dir`, else
    /// `default_dir`.
    pub fn from_args(args: &FilesArgs, default_dir: &Path) -> Result<Self> {
        if args.s3_bucket.is_some() {
            Self::s3(args)
        } else {
            Self::local(args.files_dir.as_deref().unwrap_or(default_dir))
        }
    }

    /// Checks that the store answers (the bucket exists and the credentials work): lists one
    /// key. For start-up, so a wrong bucket fails at once and not at the first upload.
    pub async fn check(&self) -> Result<()> {
        let mut listing = self.store.list(None);
        listing
            .try_next()
            .await
            .map_err(|error| Error::Config(format!("file store ({self}) does not answer: {error}")))?;
        Ok(())
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = parse(key)?;
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|error| store_error(key, error))?;
        Ok(())
    }

    /// Stores the local file at `path` under `key`, in parts (a recording of hours never sits
    /// in memory whole).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let location = parse(key)?;
        let io = |source| Error::Io { path: path.to_owned(), source };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        if size <= PART as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await.map_err(io)?;
            return self.put(key, Bytes::from(bytes)).await;
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|error| store_error(key, error))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buffer = vec![0; 1024 * 1024];
        loop {
            let read = match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(source) => {
                    let _ = writer.abort().await;
                    return Err(io(source));
                }
            };
            if let Err(error) = writer.wait_for_capacity(4).await {
                return Err(store_error(key, error));
            }
            writer.write(&buffer[..read]);
        }
        writer.finish().await.map_err(|error| store_error(key, error))?;
        Ok(())
    }

    /// The whole file under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = parse(key)?;
        let result = self.store.get(&path).await.map_err(|error| store_error(key, error))?;
        result.bytes().await.map_err(|error| store_error(key, error))
    }

    /// Bytes `range` of the file under `key` (HTTP range requests).
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = parse(key)?;
        self.store
            .get_range(&path, range)
            .await
            .map_err(|error| store_error(key, error))
    }

    /// Copies the file under `key` to the local file `path` (created or replaced), without
    /// holding it in memory whole.
    pub async fn download(&self, key: &str, path: &Path) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let location = parse(key)?;
        let io = |source| Error::Io { path: path.to_owned(), source };
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|error| store_error(key, error))?;
        let mut stream = result.into_stream();
        let mut file = tokio::fs::File::create(path).await.map_err(io)?;
        while let Some(chunk) = stream.try_next().await.map_err(|error| store_error(key, error))? {
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(())
    }

    /// The size of the file under `key`, `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = parse(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(Error::Store(error)),
        }
    }

    /// When the file under `key` was last written, `None` when there is none.
    pub async fn modified(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        let path = parse(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(Error::Store(error)),
        }
    }

    /// Every file whose key starts with the folder `prefix` (`recordings/<id>`), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let path = parse(prefix)?;
        let mut entries: Vec<Entry> = self
            .store
            .list(Some(&path))
            .map_ok(|meta| Entry {
                key: meta.location.to_string(),
                size: meta.size,
                modified: meta.last_modified,
            })
            .try_collect()
            .await
            .map_err(|error| store_error(prefix, error))?;
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// Deletes the file under `key`; a missing file is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = parse(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(Error::Store(error)),
        }
    }

    /// Deletes every file under the folder `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let entries = self.list(prefix).await?;
        for entry in &entries {
            self.delete(&entry.key).await?;
        }
        Ok(entries.len())
    }
}

/// A key as the store holds it; refuses what could escape its folder or name nothing.
fn parse(key: &str) -> Result<Key> {
    let invalid = |reason: &str| Error::InvalidKey { key: key.to_owned(), reason: reason.to_owned() };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.starts_with('/') || key.ends_with('/') {
        return Err(invalid("leading or trailing /"));
    }
    if key.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(invalid("empty, . or .. segment"));
    }
    Key::parse(key).map_err(|error| invalid(&error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_the_folder_are_refused() {
        for key in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/", ".."] {
            assert!(
                matches!(parse(key), Err(Error::InvalidKey { .. })),
                "{key:?} was accepted"
            );
        }
        assert_eq!(parse("recordings/x/tracks/001-audio/000001.ogg").expect("key").as_ref(),
            "recordings/x/tracks/001-audio/000001.ogg");
    }

    #[tokio::test]
    async fn a_local_folder_stores_lists_ranges_and_deletes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::local(dir.path()).expect("local");
        files.put("a/1.txt", Bytes::from_static(b"hello world")).await.expect("put");
        files.put("a/2.txt", Bytes::from_static(b"two")).await.expect("put");
        files.put("b/3.txt", Bytes::from_static(b"three")).await.expect("put");
        assert!(dir.path().join("a/1.txt").is_file(), "files are plain files in the folder");
        assert_eq!(files.get_range("a/1.txt", 6..11).await.expect("range"), "world");
        assert_eq!(files.size("a/2.txt").await.expect("size"), Some(3));
        assert_eq!(files.size("a/none").await.expect("size"), None);
        assert!(matches!(files.get("a/none").await, Err(Error::NotFound(_))));
        let listed: Vec<_> = files.list("a").await.expect("list").into_iter().map(|e| e.key).collect();
        assert_eq!(listed, ["a/1.txt", "a/2.txt"]);
        assert_eq!(files.delete_prefix("a").await.expect("delete"), 2);
        assert!(files.list("a").await.expect("list").is_empty());
        assert_eq!(files.get("b/3.txt").await.expect("get"), "three");
        files.delete("b/none").await.expect("deleting nothing is fine");
    }

    #[tokio::test]
    async fn a_large_file_is_uploaded_in_parts_and_downloaded_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::local(&dir.path().join("store")).expect("local");
        let source = dir.path().join("big.bin");
        let content: Vec<u8> = (0..(PART * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&source, &content).expect("write");
        files.put_file("r/big.bin", &source).await.expect("put_file");
        assert_eq!(files.size("r/big.bin").await.expect("size"), Some(content.len() as u64));
        let back = dir.path().join("back.bin");
        files.download("r/big.bin", &back).await.expect("download");
        assert!(std::fs::read(&back).expect("read") == content, "the round trip changed the file");
    }
}
