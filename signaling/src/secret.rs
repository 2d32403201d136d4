//! The server's signing secret: read from the environment, or in dev mode generated once and kept
//! in the data dir so that `serve` and `mint` agree.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::Rng;

/// The least number of bytes a secret may have; HS256 wants at least the hash size.
pub const MIN_SECRET_BYTES: usize = 32;

/// File name of the generated dev secret inside the data dir.
pub const DEV_SECRET_FILE: &str = "signaling-secret";

/// A shared secret (for tokens or TURN). Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Shorter than [`MIN_SECRET_BYTES`].
    #[error("the secret is {0} bytes long; it must be at least {MIN_SECRET_BYTES} bytes")]
    TooShort(usize),
    /// Reading or writing the dev secret file failed.
    #[error("could not use the secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl Secret {
    /// A secret from configuration text (e.g. `HEARTH_SECRET`), used as its UTF-8 bytes.
    pub fn new(text: &str) -> Result<Secret, SecretError> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(text.len()));
        }
        Ok(Secret(text.as_bytes().to_vec()))
    }

    /// The bytes, for keyed hashes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A new random secret: 32 random bytes, base64url encoded (43 characters).
    pub fn generate() -> Secret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Secret(text.into_bytes())
    }

    /// Reads the dev secret from `dir`, or generates and writes one (mode 0600).
    /// Returns the secret, the file and whether it was generated just now.
    pub fn load_or_generate(dir: &Path) -> Result<(Secret, PathBuf, bool), SecretError> {
        let path = dir.join(DEV_SECRET_FILE);
        let file_err = |source| SecretError::File {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((Secret::new(&text)?, path, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(e)),
        }
        std::fs::create_dir_all(dir).map_err(file_err)?;
        let secret = Secret::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(file_err)?;
        file.write_all(secret.as_bytes()).map_err(file_err)?;
        file.write_all(b"\n").map_err(file_err)?;
        Ok((secret, path, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_debug_hides_bytes() {
        assert!(matches!(
            Secret::new("short"),
            Err(SecretError::TooShort(5))
        ));
        let s = Secret::new(&"k".repeat(40)).unwrap();
        assert!(!format!("{s:?}").contains("kkk"));
    }

    #[test]
    fn dev_secret_is_generated_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("hearth-secret-{}", uuid::Uuid::new_v4()));
        let (first, path, generated) = Secret::load_or_generate(&dir).unwrap();
        assert!(generated);
        let (second, _, generated_again) = Secret::load_or_generate(&dir).unwrap();
        assert!(!generated_again);
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
