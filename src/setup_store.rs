//! The credentials file the one-click setup writes: the app id, private key and webhook secret
//! GitHub's manifest conversion returned, so that the next `serve` starts without them in the
//! environment. The file is created with mode 0600 (only its owner reads it) and replaced
//! atomically; its contents never reach a log.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{split_webhook_secrets, AppCredentials};

/// What setup saves.
pub struct SavedCredentials {
    pub app_id: u64,
    pub slug: String,
    pub html_url: String,
    pub private_key: SecretString,
    pub webhook_secret: SecretString,
}

impl SavedCredentials {
    pub fn to_app_credentials(&self) -> AppCredentials {
        AppCredentials {
            app_id: self.app_id,
            private_key: self.private_key.clone(),
            webhook_secrets: split_webhook_secrets(&self.webhook_secret),
        }
    }
}

/// The file's shape. Plain strings only for the moment of (de)serialising.
#[derive(Serialize, Deserialize)]
struct FileShape {
    app_id: u64,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    html_url: String,
    private_key: String,
    webhook_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsFileError {
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the credentials file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The parse error's text is left out: serde quotes the input it choked on.
    #[error(
        "the credentials file {path} is not valid (expected app_id, private_key, webhook_secret)"
    )]
    Invalid { path: PathBuf },
}

/// `backspace-credentials.json` beside the SQLite file of `database_url`, or in the working
/// directory for Postgres.
pub fn default_credentials_path(database_url: &str) -> PathBuf {
    const NAME: &str = "backspace-credentials.json";
    let Some(rest) = database_url.strip_prefix("sqlite:") else {
        return PathBuf::from(NAME);
    };
    let rest = rest.trim_start_matches("//");
    let file = rest.split('?').next().unwrap_or_default();
    if file.is_empty() || file.contains(":memory:") {
        return PathBuf::from(NAME);
    }
    match Path::new(file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(NAME),
        _ => PathBuf::from(NAME),
    }
}

/// Writes the file with mode 0600, through a temporary file renamed over it.
pub fn save_credentials(path: &Path, creds: &SavedCredentials) -> Result<(), CredentialsFileError> {
    let werr = |source| CredentialsFileError::Write {
        path: path.to_owned(),
        source,
    };
    let shape = FileShape {
        app_id: creds.app_id,
        slug: creds.slug.clone(),
        html_url: creds.html_url.clone(),
        private_key: creds.private_key.expose_secret().to_owned(),
        webhook_secret: creds.webhook_secret.expose_secret().to_owned(),
    };
    let text = serde_json::to_vec_pretty(&shape).map_err(|e| werr(std::io::Error::other(e)))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(werr)?;
    file.write_all(&text).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(werr)?;
    Ok(())
}

/// The saved credentials, `Ok(None)` when there is no file. For `serve` when the environment
/// holds none.
pub fn load_saved_credentials(path: &Path) -> Result<Option<AppCredentials>, CredentialsFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsFileError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the credentials file can be read by others than its owner; chmod 600 it");
            }
        }
    }
    let shape: FileShape =
        serde_json::from_slice(&text).map_err(|_| CredentialsFileError::Invalid {
            path: path.to_owned(),
        })?;
    let creds = SavedCredentials {
        app_id: shape.app_id,
        slug: shape.slug,
        html_url: shape.html_url,
        private_key: SecretString::from(shape.private_key),
        webhook_secret: SecretString::from(shape.webhook_secret),
    }
    .to_app_credentials();
    if creds.webhook_secrets.is_empty() {
        return Err(CredentialsFileError::Invalid {
            path: path.to_owned(),
        });
    }
    Ok(Some(creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_path_is_beside_the_sqlite_file() {
        assert_eq!(
            default_credentials_path("sqlite:///data/backspace.db"),
            PathBuf::from("/data/backspace-credentials.json")
        );
        assert_eq!(
            default_credentials_path("sqlite://backspace.db"),
            PathBuf::from("backspace-credentials.json")
        );
        assert_eq!(
            default_credentials_path("sqlite://dir/b.db?mode=rwc"),
            PathBuf::from("dir/backspace-credentials.json")
        );
        assert_eq!(
            default_credentials_path("postgres://u@h/db"),
            PathBuf::from("backspace-credentials.json")
        );
    }

    #[test]
    fn saved_credentials_load_back_and_only_the_owner_can_read_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/creds.json");
        assert!(load_saved_credentials(&path).unwrap().is_none());
        save_credentials(
            &path,
            &SavedCredentials {
                app_id: 9,
                slug: "s".into(),
                html_url: "h".into(),
                private_key: SecretString::from("PEM"),
                webhook_secret: SecretString::from("whs"),
            },
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = load_saved_credentials(&path).unwrap().unwrap();
        assert_eq!(back.app_id, 9);
        assert_eq!(back.private_key.expose_secret(), "PEM");
        assert_eq!(back.webhook_secrets[0].expose_secret(), "whs");
    }

    #[test]
    fn a_broken_file_is_an_error_that_quotes_nothing_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{\"app_id\": 1, \"private_key\": \"SECRETPEM\"").unwrap();
        let e = load_saved_credentials(&path).unwrap_err().to_string();
        assert!(!e.contains("SECRETPEM"), "{e}");
    }
}
