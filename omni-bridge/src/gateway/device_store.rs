//! The bridge's device identity on disk: an Ed25519 seed, and the device token issued for it.
//!
//! The seed file holds 64 hex characters and is created with mode 0600 on first use (never
//! overwritten). The token the gateway issues in `hello-ok.auth.deviceToken` is stored beside
//! it as `<seed path>.token` (0600) and offered on later connects when no shared token is
//! configured, or once after the shared token was refused (as the reference client does).

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use shared_protocol::Secret;
use shared_protocol::device::DeviceIdentity;
use tokio::io::AsyncWriteExt;

use crate::error::ConnectError;

/// File mode of the seed and the token.
const PRIVATE_FILE_MODE: u32 = 0o600;

/// A loaded device identity and its stored token.
#[derive(Debug)]
pub struct DeviceStore {
    token_path: PathBuf,
    identity: DeviceIdentity,
    token: Mutex<Option<Secret>>,
}

impl DeviceStore {
    /// Loads the identity at `path`, creating it first when the file does not exist.
    ///
    /// # Errors
    /// [`ConnectError::Device`] when the file cannot be created, read or parsed.
    pub async fn open(path: &Path) -> Result<Self, ConnectError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            ConnectError::Device(format!("{what} {}: {e}", path.display()))
        };
        let identity = match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed)
                    .map_err(|e| err("cannot parse seed in", &e))?;
                DeviceIdentity::from_seed(seed).map_err(|e| err("invalid seed in", &e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = DeviceIdentity::generate().map_err(|e| err("cannot create", &e))?;
                let text = format!("{}\n", hex::encode(identity.seed().expose()));
                write_private(path, &text, true)
                    .await
                    .map_err(|e| err("cannot write", &e))?;
                tracing::info!(path = %path.display(), device_id = %identity.device_id(), "created device identity");
                identity
            }
            Err(e) => return Err(err("cannot read", &e)),
        };
        let mut token_path = path.as_os_str().to_owned();
        token_path.push(".token");
        let token_path = PathBuf::from(token_path);
        let token = match tokio::fs::read_to_string(&token_path).await {
            Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim().to_string())),
            _ => None,
        };
        Ok(Self {
            token_path,
            identity,
            token: Mutex::new(token),
        })
    }

    /// The key pair.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The stored device token, if any.
    pub fn device_token(&self) -> Option<Secret> {
        self.token.lock().clone()
    }

    /// Stores a newly issued token (no-op when unchanged).
    ///
    /// # Errors
    /// [`ConnectError::Device`] when the file cannot be written.
    pub async fn store_token(&self, token: &Secret) -> Result<(), ConnectError> {
        if self.token.lock().as_ref() == Some(token) {
            return Ok(());
        }
        write_private(&self.token_path, token.expose(), false)
            .await
            .map_err(|e| {
                ConnectError::Device(format!("cannot write {}: {e}", self.token_path.display()))
            })?;
        *self.token.lock() = Some(token.clone());
        Ok(())
    }

    /// Forgets a token the gateway refused.
    pub async fn forget_token(&self) {
        if self.token.lock().take().is_some() {
            let _ = tokio::fs::remove_file(&self.token_path).await;
        }
    }
}

async fn write_private(path: &Path, text: &str, create_new: bool) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).mode(PRIVATE_FILE_MODE);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    let mut file = options.open(path).await?;
    file.write_all(text.as_bytes()).await?;
    file.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn created_once_with_0600_and_token_persisted() {
        let dir = std::env::temp_dir().join(format!("omni-bridge-dev-{}", uuid::Uuid::new_v4()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let path = dir.join("device.key");
        let a = DeviceStore::open(&path).await.unwrap();
        let mode = tokio::fs::metadata(&path)
            .await
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(a.device_token(), None);
        a.store_token(&Secret::new("dev-tok".into())).await.unwrap();
        let b = DeviceStore::open(&path).await.unwrap();
        assert_eq!(a.identity().device_id(), b.identity().device_id());
        assert_eq!(b.device_token(), Some(Secret::new("dev-tok".into())));
        let mode = tokio::fs::metadata(&a.token_path)
            .await
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        b.forget_token().await;
        assert_eq!(DeviceStore::open(&path).await.unwrap().device_token(), None);
        tokio::fs::write(&path, "not hex").await.unwrap();
        assert!(matches!(
            DeviceStore::open(&path).await,
            Err(ConnectError::Device(_))
        ));
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
