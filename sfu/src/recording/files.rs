//! Where recordings go until the shared `files` crate (local folder or S3) is wired in: a local
//! folder with the same `put` the crate offers, so the recorder does not change when it is.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The key is not a relative `/`-separated path.
    #[error("invalid file key {0:?}")]
    Key(String),
    /// Writing failed.
    #[error("writing {key} failed")]
    Io {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A file store in a local folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// A store in `dir` (created when missing).
    ///
    /// # Errors
    /// The folder cannot be created.
    pub fn local(dir: &Path) -> Result<Files, FilesError> {
        std::fs::create_dir_all(dir).map_err(|source| FilesError::Io {
            key: dir.display().to_string(),
            source,
        })?;
        Ok(Files {
            root: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, FilesError> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(FilesError::Key(key.to_owned()));
        }
        Ok(self.root.join(relative))
    }

    /// Stores `bytes` under `key`, replacing what was there; readers never see half a file.
    ///
    /// # Errors
    /// A bad key or a failed write.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), FilesError> {
        let path = self.path(key)?;
        let io = |source| FilesError::Io {
            key: key.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let partial = path.with_extension(format!(
            "{}.partial",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
        ));
        tokio::fs::write(&partial, &bytes).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)?;
        Ok(())
    }
}
