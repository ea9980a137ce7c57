//! Bounded-memory storage for uploaded bodies.
//!
//! Uploads are streamed: [`Digester`] keeps only the size, the SHA-256 and a bounded prefix
//! of what passes through it; [`Spool`] additionally writes the bytes to a file in a private
//! temporary directory (removed when the simulator stops) for payloads that must be served
//! back later (IoTaaP firmware downloads, OBS objects).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How many leading bytes of each upload are kept in memory for inspection.
pub const PREFIX_BYTES: usize = 4096;

/// Size, SHA-256 and a bounded prefix of a stream of chunks.
#[derive(Debug, Default, Clone)]
pub struct Digester {
    hasher: Sha256,
    size: u64,
    prefix: Vec<u8>,
}

/// What a finished [`Digester`] measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest256 {
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// The first [`PREFIX_BYTES`] bytes.
    pub prefix: Vec<u8>,
}

impl Digester {
    /// Feeds one chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        if self.prefix.len() < PREFIX_BYTES {
            let room = PREFIX_BYTES - self.prefix.len();
            self.prefix
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The measurements.
    pub fn finish(self) -> Digest256 {
        Digest256 {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
            prefix: self.prefix,
        }
    }
}

/// A private temporary directory for spooled payloads.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

/// A file being written into the spool.
#[derive(Debug)]
pub struct SpoolWriter {
    path: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    digester: Digester,
}

/// A completely written spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledFile {
    pub path: PathBuf,
    pub digest: Digest256,
}

impl Spool {
    /// Creates the directory under the system temporary directory.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("otaplane-sim-").tempdir()?,
            next: AtomicU64::new(0),
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new, unique file name in the directory (the file is not created).
    pub fn reserve(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("blob-{n:08}"))
    }

    /// Opens a new, uniquely named file.
    pub async fn create(&self) -> std::io::Result<SpoolWriter> {
        let path = self.reserve();
        let file = tokio::fs::File::create(&path).await?;
        Ok(SpoolWriter {
            path,
            file: tokio::io::BufWriter::with_capacity(256 * 1024, file),
            digester: Digester::default(),
        })
    }
}

impl SpoolWriter {
    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.digester.update(chunk);
        self.file.write_all(chunk).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.digester.size()
    }

    /// Flushes and closes the file.
    pub async fn finish(mut self) -> std::io::Result<SpooledFile> {
        self.file.flush().await?;
        Ok(SpooledFile {
            path: self.path,
            digest: self.digester.finish(),
        })
    }

    /// Deletes the partial file.
    pub async fn discard(self) {
        drop(self.file);
        tokio::fs::remove_file(&self.path).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digester_keeps_size_hash_and_bounded_prefix() {
        let mut digester = Digester::default();
        for _ in 0..3 {
            digester.update(&[b'a'; 3000]);
        }
        let digest = digester.finish();
        assert_eq!(digest.size, 9000);
        assert_eq!(digest.prefix.len(), PREFIX_BYTES);
        assert_eq!(digest.sha256, hex::encode(Sha256::digest([b'a'; 9000])));
    }

    #[tokio::test]
    async fn spool_writes_files_and_reports_their_digest() {
        let spool = Spool::new().unwrap();
        let mut writer = spool.create().await.unwrap();
        writer.write(b"hello ").await.unwrap();
        writer.write(b"firmware").await.unwrap();
        let file = writer.finish().await.unwrap();
        assert_eq!(
            tokio::fs::read(&file.path).await.unwrap(),
            b"hello firmware"
        );
        assert_eq!(file.digest.size, 14);
    }
}
