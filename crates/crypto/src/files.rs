//! Armoured key and certificate files.
//!
//! Private keys are written with mode 0600 (created so, never widened) and
//! read back only from files that are not readable by group or others.
//! Every error names the file.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use proto::armor::{self, ArmorError};
use proto::cert::{CertError, Certificate};

/// An error about one file.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: FileErrorKind,
}

/// What is wrong with a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileErrorKind {
    /// It could not be read or written.
    Io(std::io::Error),
    /// It is not valid UTF-8 text.
    NotText,
    /// It is not the armoured object expected.
    Armor(ArmorError),
    /// The key has the wrong length.
    KeyLength(usize),
    /// A node public key file of the wrong length.
    PublicKeyLength(usize),
    /// The certificate inside is invalid.
    Certificate(CertError),
    /// A private key readable by group or others.
    InsecurePermissions(u32),
    /// Refusing to overwrite an existing file.
    Exists,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.kind {
            FileErrorKind::Io(e) => write!(f, "{p}: {e}"),
            FileErrorKind::NotText => {
                write!(f, "{p}: not a text file (expected an armoured meshd file)")
            }
            FileErrorKind::Armor(e) => write!(f, "{p}: {e}"),
            FileErrorKind::KeyLength(n) => {
                write!(f, "{p}: key is {n} bytes, expected 32 (file corrupted?)")
            }
            FileErrorKind::PublicKeyLength(n) => write!(
                f,
                "{p}: node public key is {n} bytes, expected 64 (static and advert key); regenerate it on the node with `meshctl key generate`"
            ),
            FileErrorKind::Certificate(e) => write!(f, "{p}: {e}"),
            FileErrorKind::InsecurePermissions(m) => write!(
                f,
                "{p}: private key has mode {m:o}, readable by others; fix with: chmod 600 {p}"
            ),
            FileErrorKind::Exists => {
                write!(f, "{p}: already exists; remove it or choose another path")
            }
        }
    }
}

impl std::error::Error for FileError {}

fn err(path: &Path, kind: FileErrorKind) -> FileError {
    FileError {
        path: path.to_path_buf(),
        kind,
    }
}

fn read_text(path: &Path) -> Result<String, FileError> {
    let bytes = fs::read(path).map_err(|e| err(path, FileErrorKind::Io(e)))?;
    String::from_utf8(bytes).map_err(|_| err(path, FileErrorKind::NotText))
}

/// Reads a certificate file (CA or node, by its label).
pub fn read_certificate(path: &Path) -> Result<Certificate, FileError> {
    let text = read_text(path)?;
    Certificate::from_armor(&text).map_err(|e| err(path, FileErrorKind::Certificate(e)))
}

/// Reads a 32-byte private key with `label`; refuses group/world-readable files.
pub fn read_private_key(path: &Path, label: &'static str) -> Result<[u8; 32], FileError> {
    let meta = fs::metadata(path).map_err(|e| err(path, FileErrorKind::Io(e)))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(path, FileErrorKind::InsecurePermissions(mode)));
    }
    read_key(path, label)
}

/// Reads a 32-byte key with `label` (no permission check: public keys).
pub fn read_key(path: &Path, label: &'static str) -> Result<[u8; 32], FileError> {
    let text = read_text(path)?;
    let bytes = armor::decode(label, &text).map_err(|e| err(path, FileErrorKind::Armor(e)))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| err(path, FileErrorKind::KeyLength(bytes.len())))
}

/// Reads a node's public key file (`meshctl key generate`): its X25519 static
/// key and its advert signing key, 64 bytes.
pub fn read_node_public_key(path: &Path) -> Result<([u8; 32], [u8; 32]), FileError> {
    let text = read_text(path)?;
    let bytes = armor::decode(proto::armor::LABEL_NODE_PUBLIC_KEY, &text)
        .map_err(|e| err(path, FileErrorKind::Armor(e)))?;
    if bytes.len() != 64 {
        return Err(err(path, FileErrorKind::PublicKeyLength(bytes.len())));
    }
    let mut x = [0u8; 32];
    let mut a = [0u8; 32];
    x.copy_from_slice(&bytes[..32]);
    a.copy_from_slice(&bytes[32..]);
    Ok((x, a))
}

/// Writes a private key, mode 0600, refusing to overwrite.
pub fn write_private_key(path: &Path, label: &str, key: &[u8; 32]) -> Result<(), FileError> {
    write_new(path, armor::encode(label, key).as_bytes(), 0o600)
}

/// Writes a public file (certificate, public key), mode 0644, refusing to overwrite.
pub fn write_public(path: &Path, text: &str) -> Result<(), FileError> {
    write_new(path, text.as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    // A missing directory is made: 0700 for a private key's, 0755 for a
    // public file's.
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt;
        let dir_mode = if mode & 0o044 != 0 { 0o755 } else { 0o700 };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)
            .map_err(|e| err(dir, FileErrorKind::Io(e)))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                err(path, FileErrorKind::Exists)
            } else {
                err(path, FileErrorKind::Io(e))
            }
        })?;
    f.write_all(bytes)
        .map_err(|e| err(path, FileErrorKind::Io(e)))?;
    f.sync_all().map_err(|e| err(path, FileErrorKind::Io(e)))
}
