//! The control plane: tenants, routes, tokens and signing secrets changed at runtime
//! through the admin API. Every change is checked, built (a tenant's policy compiled,
//! a route's sink constructed) and only then committed to the store in one transaction
//! with its audit entry, and only then made live — so a refused change leaves both the
//! store and the running daemon as they were.
//!
//! Tenants from the config file are declared there: the API shows them but refuses to
//! change them (409 naming the file). Tenants created through the API live in the store
//! and are loaded at startup after the file's; an id in both refuses to start.

mod routes;
mod secrets;
mod tenants;
mod tokens;

pub use routes::RouteView;
pub use secrets::{generate_signing_secret, SecretView};
pub use tenants::{TenantView, MAX_COMPONENT_BYTES};
pub use tokens::{CreatedToken, TokenView};

use super::spec::SpecError;
use super::TenantRegistry;
use crate::delivery::Deliverer;
use crate::egress::Egress;
use crate::policy::PolicyEngine;
use crate::store::control::{RouteRecord, SecretRecord, TenantRecord, TokenRecord};
use crate::store::{Store, StoreError, StoreErrorKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why a change was refused; each names the field or resource.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A field of the body (400).
    #[error("{0}")]
    Invalid(#[from] SpecError),
    /// No such tenant, route, token or policy (404).
    #[error("{0}")]
    NotFound(String),
    /// Exists already, is declared in the config file, or has pending deliveries (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// `If-Match` names another revision (412).
    #[error("{0}")]
    Precondition(String),
    /// Well-formed but not buildable: the policy does not load, the sink cannot be built (422).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        match e.kind {
            StoreErrorKind::NotFound => ControlError::NotFound(e.message),
            StoreErrorKind::Conflict => ControlError::Conflict { code: "conflict", message: e.message },
            StoreErrorKind::PreconditionFailed => ControlError::Precondition(e.message),
            _ => ControlError::Store(e),
        }
    }
}

fn conflict(code: &'static str, message: String) -> ControlError {
    ControlError::Conflict { code, message }
}

/// Who made a change, for the audit log: `admin`, or `token:<id>`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// What the control plane knows of the resources it manages (the store's rows, kept in
/// memory for reads; written only after the store committed).
#[derive(Default)]
struct Mirror {
    tenants: BTreeMap<String, TenantRecord>,
    routes: BTreeMap<(String, String), RouteRecord>,
    tokens: BTreeMap<String, TokenRecord>,
    secrets: BTreeMap<(String, String), Vec<SecretRecord>>,
}

/// The handles a change needs.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    registry: Arc<TenantRegistry>,
    deliverer: Arc<Deliverer>,
    engine: PolicyEngine,
    egress: Egress,
    /// Where uploaded components are written for the policy loader (`data_dir/policies`).
    policies_dir: PathBuf,
    /// The config file and the tenants it declares (read-only over the API).
    config_file: std::sync::OnceLock<PathBuf>,
    file_tenants: BTreeSet<String>,
    mirror: Mutex<Mirror>,
    /// One change at a time: each reads the current revision, builds, and commits.
    changing: tokio::sync::Mutex<()>,
}

/// The parts of the daemon the control plane drives.
pub struct ControlHandles {
    pub store: Arc<dyn Store>,
    pub registry: Arc<TenantRegistry>,
    pub deliverer: Arc<Deliverer>,
    pub engine: PolicyEngine,
    pub egress: Egress,
    pub policies_dir: PathBuf,
    pub file_tenants: BTreeSet<String>,
}

impl ControlPlane {
    pub fn new(h: ControlHandles) -> Self {
        ControlPlane {
            store: h.store,
            registry: h.registry,
            deliverer: h.deliverer,
            engine: h.engine,
            egress: h.egress,
            policies_dir: h.policies_dir,
            config_file: std::sync::OnceLock::new(),
            file_tenants: h.file_tenants,
            mirror: Mutex::new(Mirror::default()),
            changing: tokio::sync::Mutex::new(()),
        }
    }

    fn provisioner(&self) -> crate::tenants::provision::Provisioner<'_> {
        crate::tenants::provision::Provisioner {
            engine: &self.engine,
            egress: &self.egress,
            deliverer: &self.deliverer,
            spool: &self.store,
        }
    }

    /// Names the config file in refusals to change its tenants.
    pub fn set_config_file(&self, path: PathBuf) {
        let _ = self.config_file.set(path);
    }

    /// True for a tenant the config file declares.
    pub fn is_file_tenant(&self, id: &str) -> bool {
        self.file_tenants.contains(id)
    }

    /// 409 for a tenant the config file declares: change it there.
    fn refuse_file_tenant(&self, id: &str) -> Result<(), ControlError> {
        if !self.is_file_tenant(id) {
            return Ok(());
        }
        let file = match self.config_file.get() {
            Some(p) => p.display().to_string(),
            None => "the command line (--plugin)".into(),
        };
        Err(conflict(
            "declared_in_config",
            format!(
                "tenant `{id}` is declared in {file}; change it there (and SIGHUP or restart), not through the API"
            ),
        ))
    }

    /// The revision `If-Match` names must be the current one.
    fn check_revision(what: &str, current: u64, if_match: Option<u64>) -> Result<(), ControlError> {
        match if_match {
            Some(r) if r != current => {
                Err(ControlError::Precondition(format!("{what} is at revision {current}, not {r} (If-Match)")))
            }
            _ => Ok(()),
        }
    }
}
