//! JSON Lines to a file, one line per delivery; a batch is one write.

use super::{Sink, SinkError};
use crate::delivery::Delivery;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub struct FileSink {
    route: String,
    file: Mutex<std::fs::File>,
}

impl FileSink {
    pub fn open(route: &str, path: &Path) -> crate::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("route `{route}`: cannot create {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("route `{route}`: cannot open {}: {e}", path.display()))?;
        Ok(FileSink { route: route.to_string(), file: Mutex::new(file) })
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: &[Delivery]) -> Result<(), SinkError> {
        let buf: String = batch.iter().map(Delivery::to_json_line).collect();
        self.file
            .lock()
            .expect("file sink lock")
            .write_all(buf.as_bytes())
            .map_err(|e| SinkError { route: self.route.clone(), message: format!("write failed: {e}") })
    }
}
