//! Dead letters: events (or deliveries) that could not be delivered, with the reason.
//! For now an append-only JSONL file under the data directory.

use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why something was dead-lettered, and what it was.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    pub at_ms: u64,
    pub tenant: &'a str,
    pub idempotency_key: &'a str,
    /// Short and stable: `deadline`, `memory`, `trap`, `unknown_route`, `sink`, ...
    pub reason: &'a str,
    /// The full error, naming tenant, policy version and cause.
    pub error: String,
    pub policy_version: Option<&'a str>,
    pub route: Option<&'a str>,
    /// How long the failed policy call ran, in microseconds.
    pub policy_elapsed_us: Option<u64>,
    /// The original event as it was received.
    pub event: &'a RawValue,
}

pub struct DeadLetterFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl DeadLetterFile {
    pub fn open(path: &Path) -> crate::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open dead-letter file {}: {e}", path.display()))?;
        Ok(DeadLetterFile { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record. A failure here is logged loudly: there is nowhere further
    /// to put the event.
    pub fn write(&self, letter: &DeadLetter<'_>) {
        let mut line = serde_json::to_string(letter).expect("a dead letter always serializes");
        line.push('\n');
        let result = self.file.lock().expect("dead-letter lock").write_all(line.as_bytes());
        match result {
            Ok(()) => tracing::warn!(
                tenant = letter.tenant,
                idempotency_key = letter.idempotency_key,
                reason = letter.reason,
                "dead-lettered: {}",
                letter.error
            ),
            Err(e) => tracing::error!(
                tenant = letter.tenant,
                idempotency_key = letter.idempotency_key,
                "cannot write dead letter to {}: {e}; the event is lost: {}",
                self.path.display(),
                letter.error
            ),
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
