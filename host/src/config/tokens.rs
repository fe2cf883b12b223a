//! The config's bearer tokens, read and checked together: every tenant's, the admin
//! token and the metrics token. Each must be sendable (not empty, no whitespace or
//! control characters, ASCII) and all must differ, so a copy-paste slip never lets one
//! tenant post as another or a tenant act as the admin. Errors name the key and the
//! tenants, never a token.

use super::{Config, TenantConfig};
use std::collections::HashMap;

/// Tokens shorter than this are accepted with a warning (`openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_BYTES: usize = 16;

/// Every token a config names, checked.
#[derive(Debug, Default)]
pub struct Secrets {
    /// The index and token of each tenant that has one.
    pub tenants: Vec<(usize, String)>,
    /// `server.admin_token_env`.
    pub admin: Option<String>,
    /// `server.metrics_token_env`.
    pub metrics: Option<String>,
    /// Weak tokens: accepted, worth a log line.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads every token from the environment and files and checks them; `Err` holds
    /// one line per problem.
    pub fn read_secrets(&self) -> Result<Secrets, Vec<String>> {
        self.read_secrets_from(|var| std::env::var(var).ok())
    }

    /// [`Config::read_secrets`], with `env` standing in for the environment for the
    /// admin and metrics tokens.
    pub fn read_secrets_from(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secrets, Vec<String>> {
        let mut problems = Vec::new();
        let mut secrets = Secrets::default();
        for (index, tc) in self.tenants.iter().enumerate() {
            match tc.read_token() {
                Ok(Some(token)) => match check_token(&tc.token_source(), &token) {
                    Ok(warning) => {
                        secrets.warnings.extend(warning);
                        secrets.tenants.push((index, token));
                    }
                    Err(e) => problems.push(e),
                },
                Ok(None) => {}
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        let (server, warnings) = (&self.server, &mut secrets.warnings);
        secrets.admin = env_token("admin_token_env", &server.admin_token_env, &env, &mut problems, warnings);
        secrets.metrics = env_token("metrics_token_env", &server.metrics_token_env, &env, &mut problems, warnings);
        problems.extend(self.same_tokens(&secrets));
        match problems.is_empty() {
            true => Ok(secrets),
            false => Err(problems),
        }
    }

    /// One line per pair of roles that share a token.
    fn same_tokens(&self, secrets: &Secrets) -> Vec<String> {
        let mut problems = Vec::new();
        let mut owner: HashMap<&str, usize> = HashMap::with_capacity(secrets.tenants.len());
        for (index, token) in &secrets.tenants {
            if let Some(first) = owner.insert(token.as_str(), *index) {
                problems.push(format!(
                    "tenants `{}` and `{}` have the same token; each tenant needs its own (the token decides the tenant)",
                    self.tenants[first].id, self.tenants[*index].id
                ));
            }
        }
        let tenant_of = |token: &Option<String>| token.as_deref().and_then(|t| owner.get(t)).copied();
        if let Some(i) = tenant_of(&secrets.admin) {
            problems.push(format!(
                "tenant `{}`: its token is the admin token (server.admin_token_env); give the admin API its own",
                self.tenants[i].id
            ));
        }
        if let Some(i) = tenant_of(&secrets.metrics) {
            problems.push(format!(
                "tenant `{}`: its token is the metrics token (server.metrics_token_env); give /metrics its own",
                self.tenants[i].id
            ));
        }
        if secrets.admin.is_some() && secrets.admin == secrets.metrics {
            problems.push(
                "server.metrics_token_env: the metrics token is the admin token; a scraper must not hold the admin token"
                    .to_string(),
            );
        }
        problems
    }
}

/// The token in the env var `server.{key}` names, if it names one.
fn env_token(
    key: &str,
    var: &Option<String>,
    env: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let var = var.as_ref()?;
    let what = format!("server.{key}: `{var}`");
    let Some(token) = env(var) else {
        problems.push(format!("{what} is not set"));
        return None;
    };
    match check_token(&what, &token) {
        Ok(warning) => {
            warnings.extend(warning);
            Some(token)
        }
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

impl TenantConfig {
    /// Where the tenant's token comes from, for messages.
    pub fn token_source(&self) -> String {
        match (&self.token_env, &self.token_file) {
            (Some(var), _) => format!("tenant `{}`: token_env `{var}`", self.id),
            (None, Some(path)) => format!("tenant `{}`: token_file {}", self.id, path.display()),
            (None, None) => format!("tenant `{}`: --token (or HOSTD_TOKEN)", self.id),
        }
    }
}

/// `Err` when `token` cannot work as a bearer token; `Ok(Some(warning))` when it is short.
/// `what` names its source ("tenant `acme`: token_env `ACME_TOKEN`").
pub fn check_token(what: &str, token: &str) -> Result<Option<String>, String> {
    if token.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        let kind = match c {
            c if c.is_whitespace() => "whitespace",
            c if c.is_control() => "a control character",
            _ => "a non-ASCII character",
        };
        return Err(format!(
            "{what}: the token contains {kind}; a bearer token is visible ASCII only (try `openssl rand -hex 32`)"
        ));
    }
    if token.len() < MIN_TOKEN_BYTES {
        return Ok(Some(format!(
            "{what}: the token is only {} bytes; use at least {MIN_TOKEN_BYTES} random ones (`openssl rand -hex 32`)",
            token.len()
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Tenants `a`, `b`, `c` whose tokens are in files `a`, `b`, `c` of `dir`, and the
    /// admin and metrics tokens in `ADMIN` / `METRICS`.
    fn config(dir: &Path, tokens: [&str; 3]) -> Config {
        let mut text = "[server]\nadmin_token_env = \"ADMIN\"\nmetrics_token_env = \"METRICS\"\n".to_string();
        for (id, token) in ["a", "b", "c"].into_iter().zip(tokens) {
            let path = dir.join(id);
            std::fs::write(&path, token).unwrap();
            text.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\ntoken_file = \"{}\"\npolicy = \"p.wasm\"\n\
                 [tenants.routes.default]\ntype = \"stdout\"\n",
                path.display()
            ));
        }
        let c: Config = toml::from_str(&text).unwrap();
        c.validate_shape().unwrap();
        c
    }

    const TENANTS: [&str; 3] = ["a-token-0123456789abcdef", "b-token-0123456789abcdef", "c-token-0123456789abcdef"];

    fn env<'a>(admin: &'a str, metrics: &'a str) -> impl Fn(&str) -> Option<String> + 'a {
        move |var| match var {
            "ADMIN" => Some(admin.to_string()),
            "METRICS" => Some(metrics.to_string()),
            _ => None,
        }
    }

    #[test]
    fn distinct_tokens_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = config(dir.path(), TENANTS)
            .read_secrets_from(env("admin-0123456789abcdef", "metrics-0123456789ab"))
            .unwrap();
        assert_eq!(s.tenants.len(), 3);
        assert_eq!(s.tenants[1], (1, TENANTS[1].to_string()));
        assert_eq!(s.admin.as_deref(), Some("admin-0123456789abcdef"));
        assert_eq!(s.metrics.as_deref(), Some("metrics-0123456789ab"));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn empty_tokens_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), [TENANTS[0], "", TENANTS[2]]);
        let e = c.read_secrets_from(env("", "")).unwrap_err();
        let file_b = dir.path().join("b");
        assert!(e.contains(&format!("tenant `b`: token_file {} is empty", file_b.display())), "{e:?}");
        assert!(e.contains(&"server.admin_token_env: `ADMIN` is empty".to_string()), "{e:?}");
        assert!(e.contains(&"server.metrics_token_env: `METRICS` is empty".to_string()), "{e:?}");
        let e = c.read_secrets_from(|_| None).unwrap_err();
        assert!(e.contains(&"server.admin_token_env: `ADMIN` is not set".to_string()), "{e:?}");
    }

    #[test]
    fn shared_tokens_name_both_holders_and_never_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let shared = "shared-0123456789abcdef";
        let c = config(dir.path(), [shared, TENANTS[1], shared]);
        let e = c.read_secrets_from(env(TENANTS[1], "metrics-0123456789ab")).unwrap_err();
        assert!(e.iter().any(|l| l.starts_with("tenants `a` and `c` have the same token")), "{e:?}");
        assert!(e.iter().any(|l| l.starts_with("tenant `b`: its token is the admin token")), "{e:?}");
        assert!(e.iter().all(|l| !l.contains(shared) && !l.contains(TENANTS[1])), "{e:?}");

        let c = config(dir.path(), TENANTS);
        let e = c.read_secrets_from(env("admin-0123456789abcdef", "admin-0123456789abcdef")).unwrap_err();
        assert!(e[0].contains("the metrics token is the admin token"), "{e:?}");
        let e = c.read_secrets_from(env("admin-0123456789abcdef", TENANTS[0])).unwrap_err();
        assert!(e[0].starts_with("tenant `a`: its token is the metrics token"), "{e:?}");
    }

    #[test]
    fn unsendable_and_short_tokens() {
        assert!(check_token("x", " lead").unwrap_err().contains("whitespace"));
        assert!(check_token("x", "a\tb").unwrap_err().contains("whitespace"));
        assert!(check_token("x", "a\u{1}b").unwrap_err().contains("control"));
        assert!(check_token("x", "jeton-é").unwrap_err().contains("non-ASCII"));
        let w = check_token("tenant `a`: --token (or HOSTD_TOKEN)", "tiny").unwrap().unwrap();
        assert!(w.contains("only 4 bytes") && !w.contains("tiny"), "{w}");
        assert_eq!(check_token("x", "0123456789abcdef"), Ok(None));
        let dir = tempfile::tempdir().unwrap();
        let s = config(dir.path(), ["short-a", TENANTS[1], TENANTS[2]])
            .read_secrets_from(env("admin-0123456789abcdef", "metrics-0123456789ab"))
            .unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].starts_with("tenant `a`: token_file"), "{:?}", s.warnings);
    }
}
