//! JSON Lines to a file, one line per delivery.

mod config;

pub use config::FileConfig;

use crate::record::Delivery;
use crate::sinks::{SendOutcome, Sink};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub struct FileSink {
    file: Mutex<std::fs::File>,
}

impl FileSink {
    /// Opens `path` for appending, creating it and its directories if missing.
    pub fn open(path: &Path) -> crate::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        Ok(FileSink { file: Mutex::new(file) })
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn send(&self, delivery: &Delivery) -> SendOutcome {
        let line = delivery.to_json_line();
        match self.file.lock().expect("file sink lock").write_all(line.as_bytes()) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => SendOutcome::retry(None, format!("write failed: {e}")),
        }
    }
}
