//! The admin socket: accepts connections, reads one JSON request line, hands
//! it to the node loop and writes back its one-line JSON answer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use types::admin::{AdminRequest, AdminResponse};

/// A request waiting for the node loop's answer.
pub type Pending = (AdminRequest, oneshot::Sender<AdminResponse>);

/// Binds the socket with mode 0600 (replacing a stale socket file).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("admin.socket: cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "admin.socket: {} is in use: another meshd is running with this socket",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("admin.socket: cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("admin.socket: cannot chmod {}: {e}", path.display()))?;
    Ok(l)
}

/// Serves connections until the process ends.
pub async fn serve(listener: UnixListener, to_node: mpsc::Sender<Pending>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let to_node = to_node.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(r).take(64 * 1024);
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let response = match serde_json::from_str::<AdminRequest>(line.trim()) {
                Ok(req) => {
                    let (tx, rx) = oneshot::channel();
                    if to_node.send((req, tx)).await.is_err() {
                        return;
                    }
                    rx.await.unwrap_or(AdminResponse::Error {
                        message: "meshd is shutting down".into(),
                    })
                }
                Err(e) => AdminResponse::Error {
                    message: format!("bad request: {e}"),
                },
            };
            if let Ok(mut text) = serde_json::to_string(&response) {
                text.push('\n');
                let _ = w.write_all(text.as_bytes()).await;
            }
        });
    }
}

/// Removes the socket file on drop (clean shutdown).
pub struct SocketGuard(pub PathBuf);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
