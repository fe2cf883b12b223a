//! `hostd check` and `hostd policy test`, as a user runs them.

use hostd_e2e::*;
use std::path::Path;
use std::process::Command;

fn hostd(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(hostd_bin());
    cmd.args(args).current_dir(repo_root()).env_remove("HOSTD_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hostd");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn check(config: &str, envs: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostd.toml");
    std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
    let (ok, out, _) = hostd(&["check", "--config", path.to_str().unwrap()], envs);
    (ok, out)
}

/// Tenant `acme` running `policy`, its token in `token_env`, delivering to a file.
fn tenant(policy: impl AsRef<Path>, token_env: &str) -> String {
    let acme = Tenant::new("acme", policy).token_env(token_env).route("default", Route::file("{dir}/out.jsonl"));
    Config::new().tenant(acme).to_toml()
}

#[test]
fn check_accepts_a_good_config() {
    let (ok, out) = check(&tenant(plugin("redact_pii"), "T"), &[("T", "x")]);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn check_names_each_problem_on_one_line() {
    let good = plugin("redact_pii");
    // The misspelt key is the input under test: the builder's text, edited by hand.
    let misspelt = tenant(&good, "T").replace("policy =", "polcy =");
    assert!(misspelt.contains("polcy ="), "{misspelt}");
    let cases = [
        (misspelt, "unknown field `polcy`"),
        (tenant("/nonexistent/policy.wasm", "T"), "tenant `acme`: policy /nonexistent/policy.wasm: file not found"),
        (tenant(plugin("hostile_wrong_world"), "T"), "does not export `evaluate`"),
        (tenant(&good, "HOSTD_TEST_UNSET_VAR"), "tenant `acme`: token_env `HOSTD_TEST_UNSET_VAR` is not set"),
    ];
    for (config, want) in cases {
        let (ok, out) = check(&config, &[("T", "x")]);
        assert!(!ok, "should fail: {config}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "one line per problem: {out}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(want), "`{out}` should contain `{want}`");
    }
}

#[test]
fn check_rejects_a_policy_whose_configure_fails() {
    let acme = Tenant::new("acme", plugin("redact_pii"))
        .token_env("T")
        .policy_config(json!({"patterns": {"bad": "("}}))
        .route("default", Route::stdout());
    let (ok, out) = check(&Config::new().tenant(acme).to_toml(), &[("T", "x")]);
    assert!(!ok);
    assert!(out.contains("configure failed: policy_config.patterns.bad"), "{out}");
}

#[test]
fn policy_test_matches_the_golden_file() {
    let fixtures = repo_root().join("tests/fixtures/policy-test");
    let (ok, out, err) = hostd(
        &[
            "policy",
            "test",
            "--plugin",
            plugin("redact_pii").to_str().unwrap(),
            "--events",
            fixtures.join("events.jsonl").to_str().unwrap(),
            "--policy-config",
            r#"{"patterns": {"ticket": "TCK-\\d{4}"}}"#,
        ],
        &[],
    );
    assert!(ok, "{err}");
    let golden_path = fixtures.join("redact-pii.expected.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &out).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(out, golden, "hostd policy test output changed; if intended, rerun with UPDATE_GOLDEN=1");
}

#[test]
fn version_prints() {
    let (ok, out, _) = hostd(&["--version"], &[]);
    assert!(ok);
    assert!(out.starts_with("hostd "), "{out}");
}

#[test]
fn policy_test_names_a_payload_it_cannot_show_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let cases = [
        (r#"{"event":"a","run_id":"r","data":{"s":"\ud800"}}"#, "holds a lone surrogate escape"),
        (r#"{"event":"a","run_id":"r","data":{"n":1e400}}"#, "number out of range"),
        (
            r#"{"event":"a","run_id":"r","data":{"n":123456789012345678901234567890}}"#,
            "would read as 1.2345678901234568e+29",
        ),
    ];
    for (line, want) in cases {
        std::fs::write(&events, format!("{line}\n")).unwrap();
        let (ok, _, err) = hostd(
            &[
                "policy",
                "test",
                "--plugin",
                plugin("pass_through").to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
            ],
            &[],
        );
        assert!(!ok, "{line}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains(":1: delivery 0 (route `default`): the payload cannot be shown as it is: "), "{err}");
        assert!(err.contains(want), "`{err}` should contain `{want}`");
    }
    let deep = format!(r#"{{"event":"a","run_id":"r","data":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    std::fs::write(&events, format!("{deep}\n")).unwrap();
    let (ok, _, err) = hostd(
        &["policy", "test", "--plugin", plugin("pass_through").to_str().unwrap(), "--events", events.to_str().unwrap()],
        &[],
    );
    assert!(!ok && !err.contains("panicked") && err.contains(":1: arrays and objects nest 201 levels deep"), "{err}");
}

#[test]
fn check_names_a_bad_secret_key_without_printing_it() {
    let acme =
        Tenant::new("acme", plugin("redact_pii")).token_env("T").route("default", Route::file("{dir}/out.jsonl"));
    let config = Config::new().secret_key("K", "not-a-key-123").tenant(acme).to_toml();
    let (ok, out) = check(&config, &[("T", "x"), ("K", "not-a-key-123")]);
    assert!(!ok, "{out}");
    assert!(out.contains("server.secret_key_env `K`"), "{out}");
    assert!(!out.contains("not-a-key-123"), "the key text was printed: {out}");
    let (ok, out) = check(&config, &[("T", "x"), ("K", &"ab".repeat(32))]);
    assert!(ok, "{out}");
}
