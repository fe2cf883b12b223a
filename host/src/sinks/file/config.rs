//! `type = "file"`: the path, and what `hostd check` asks of it.

use super::FileSink;
use crate::sinks::{Sink, SinkContext, TransportConfig};
use anyhow::{anyhow, bail};
use serde::Deserialize;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Created (with its directories) at startup if missing; appended to.
    pub path: PathBuf,
}

#[async_trait::async_trait]
impl TransportConfig for FileConfig {
    fn build(&self, _ctx: &SinkContext) -> crate::Result<Arc<dyn Sink>> {
        Ok(Arc::new(FileSink::open(&self.path)?))
    }

    /// The path is not a directory, and the file (or the nearest directory above it
    /// that exists, where startup would create the rest) is writable. Creates nothing.
    async fn check(&self, _ctx: &SinkContext) -> crate::Result<()> {
        let path = &self.path;
        if path.is_dir() {
            bail!("path {} is a directory", path.display());
        }
        for (depth, at) in path.ancestors().enumerate() {
            let probe = if at.as_os_str().is_empty() { Path::new(".") } else { at };
            let meta = match std::fs::metadata(probe) {
                Ok(meta) => meta,
                // Missing, or below a file: the first that exists says which.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => continue,
                Err(e) => bail!("path {}: {}: {e}", path.display(), probe.display()),
            };
            let writable = rustix::fs::access(probe, rustix::fs::Access::WRITE_OK).map_err(std::io::Error::from);
            return match (depth, writable) {
                (0, Ok(())) => Ok(()),
                (0, Err(e)) => Err(anyhow!("path {} is not writable: {e}", path.display())),
                (_, _) if !meta.is_dir() => {
                    Err(anyhow!("path {}: {} is not a directory", path.display(), probe.display()))
                }
                (_, Ok(())) => Ok(()),
                (_, Err(e)) => {
                    Err(anyhow!("path {}: directory {} is not writable: {e}", path.display(), probe.display()))
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TenantId;

    async fn check(path: PathBuf) -> Result<(), String> {
        let ctx = SinkContext::new(TenantId::from("acme"), "default", Default::default());
        FileConfig { path }.check(&ctx).await.map_err(|e| format!("{e:#}"))
    }

    #[tokio::test]
    async fn checks_the_path_without_creating_it() {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path().join("out.jsonl")).await.unwrap();
        let deep = dir.path().join("a/b/out.jsonl");
        check(deep.clone()).await.unwrap();
        assert!(!dir.path().join("a").exists(), "check creates nothing");
        let e = check(dir.path().to_path_buf()).await.unwrap_err();
        assert_eq!(e, format!("path {} is a directory", dir.path().display()));
        std::fs::write(dir.path().join("plain"), "").unwrap();
        let e = check(dir.path().join("plain/out.jsonl")).await.unwrap_err();
        assert!(e.ends_with("plain is not a directory"), "{e}");
        check(dir.path().join("plain")).await.unwrap();
    }

    #[tokio::test]
    async fn a_read_only_directory_is_not_writable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        let result = check(locked.join("out.jsonl")).await;
        let root = std::fs::write(locked.join("probe"), "").is_ok();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        if root {
            return; // root writes anywhere: nothing to refuse
        }
        let e = result.unwrap_err();
        assert!(e.contains(&format!("directory {} is not writable: ", locked.display())), "{e}");
    }
}
