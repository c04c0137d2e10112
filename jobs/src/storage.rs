//! Where the log pipeline keeps its data, chosen by one URL
//! (`RTMAS_STORE_URL`): `s3://bucket/prefix` for S3 or any S3-compatible
//! server (MinIO, moto), `file:///path` for a local folder.
//!
//! S3 settings come from the usual `AWS_*` variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for servers
//! other than AWS). Requests use path-style addressing, which every
//! S3-compatible server understands, and plain HTTP is allowed when the
//! endpoint is an `http://` URL.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

/// An open object store and the prefix under which RTMAS keeps its objects.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Where under it RTMAS's objects go, e.g. `rtmas/` (may be empty).
    pub prefix: Path,
    /// The URL it was opened from, for messages.
    pub url: String,
}

impl Storage {
    /// The path of `name` under the prefix, e.g. `logs/date=2026-01-02/…`.
    pub fn path(&self, name: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }
}

/// Why a store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not a URL, or of a kind RTMAS does not store to.
    #[error(
        "unsupported store URL `{url}`: {reason} (expected s3://bucket/prefix or file:///path)"
    )]
    Url {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The local folder cannot be created.
    #[error("cannot create the store folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// object_store refused the settings.
    #[error("cannot open the store at {url}: {source}")]
    Open {
        /// The URL.
        url: String,
        /// Why.
        source: object_store::Error,
    },
}

/// Opens the store at `url`, with S3 settings from the `AWS_*` variables.
///
/// Fails on a URL of another kind, an uncreatable local folder, or S3
/// settings object_store refuses.
pub fn open(url: &str) -> Result<Storage, StorageError> {
    let aws: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    open_with(url, &aws)
}

/// Opens the store at `url` with explicit S3 settings, named as object_store
/// names them (`aws_endpoint`, `aws_region`, `aws_access_key_id`, …).
///
/// Fails as [`open`] does.
pub fn open_with(url: &str, s3: &[(String, String)]) -> Result<Storage, StorageError> {
    let bad = |reason: String| StorageError::Url {
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|err| bad(err.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let folder = parsed
                .to_file_path()
                .map_err(|()| bad("not a local path".to_owned()))?;
            std::fs::create_dir_all(&folder).map_err(|source| StorageError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
            let store =
                LocalFileSystem::new_with_prefix(&folder).map_err(|source| StorageError::Open {
                    url: url.to_owned(),
                    source,
                })?;
            Ok(Storage {
                store: Arc::new(store),
                prefix: Path::default(),
                url: url.to_owned(),
            })
        }
        "s3" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("no bucket".to_owned()));
            }
            let mut options: Vec<(String, String)> = Vec::new();
            for (name, value) in s3 {
                options.push((name.clone(), value.clone()));
                // `AWS_ALLOW_HTTP` and the like name client settings that
                // object_store spells without the prefix.
                if let Some(bare) = name.strip_prefix("aws_") {
                    options.push((bare.to_owned(), value.clone()));
                }
            }
            let plain_http = s3.iter().any(|(name, value)| {
                matches!(name.as_str(), "aws_endpoint" | "aws_endpoint_url")
                    && value.starts_with("http://")
            });
            if plain_http {
                options.push(("allow_http".to_owned(), "true".to_owned()));
            }
            options.push((
                "aws_virtual_hosted_style_request".to_owned(),
                "false".to_owned(),
            ));
            let (store, prefix) =
                object_store::parse_url_opts(&parsed, options).map_err(|source| {
                    StorageError::Open {
                        url: url.to_owned(),
                        source,
                    }
                })?;
            Ok(Storage {
                store: Arc::from(store),
                prefix,
                url: url.to_owned(),
            })
        }
        other => Err(bad(format!("`{other}` is not a store RTMAS writes to"))),
    }
}
