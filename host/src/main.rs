//! The `hostd` command line: parses arguments and calls the library.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use hostd::config::{Config, Quickstart};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hostd",
    version,
    about = "Deliver LangChain / LangGraph agent events through sandboxed per-tenant Wasm policies"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Run with a config file (hostd.toml).
    #[arg(long, conflicts_with_all = ["plugin", "out", "token", "policy_config"])]
    config: Option<PathBuf>,
    /// Quickstart: one tenant `default` whose policy is this component.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Address to listen on (overrides the config's server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Quickstart: write deliveries to this JSONL file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Quickstart: the bearer token clients must send. Without one, unauthenticated
    /// requests are accepted on a loopback listener only.
    #[arg(long, env = "HOSTD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Quickstart: the policy config as JSON.
    #[arg(long)]
    policy_config: Option<String>,
    /// Quickstart: the data directory (dead letters).
    #[arg(long, default_value = "hostd-data")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and load every policy, reporting each problem.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Policy authoring tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run a policy offline over a JSONL file of events; print one decision per line.
    Test {
        #[arg(long)]
        plugin: PathBuf,
        #[arg(long)]
        events: PathBuf,
        #[arg(long)]
        policy_config: Option<String>,
    },
}

fn main() -> ExitCode {
    hostd::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { config }) => {
            let problems = hostd::check(&config);
            if problems.is_empty() {
                println!("ok: {}", config.display());
                return ExitCode::SUCCESS;
            }
            for p in &problems {
                println!("error: {p}");
            }
            return ExitCode::FAILURE;
        }
        Some(Command::Policy(PolicyCommand::Test { plugin, events, policy_config })) => {
            hostd::policy_test::run(&plugin, &events, policy_config.as_deref(), &mut std::io::stdout().lock())
        }
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> hostd::Result<()> {
    let mut config = match (&args.config, &args.plugin) {
        (Some(path), _) => Config::load(path)?,
        (None, Some(plugin)) => Config::quickstart(Quickstart {
            plugin: plugin.clone(),
            listen: args.listen.unwrap_or_else(|| "127.0.0.1:8787".parse().expect("valid address")),
            out: args.out.clone(),
            token: args.token.clone(),
            policy_config: args.policy_config.as_deref().map(parse_policy_config).transpose()?,
            data_dir: args.data_dir.clone(),
        })?,
        (None, None) => anyhow::bail!("nothing to run: pass --plugin PATH (quickstart) or --config FILE; see --help"),
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(hostd::serve(config))
}

fn parse_policy_config(text: &str) -> hostd::Result<toml::Table> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--policy-config is not JSON: {e}"))?;
    let toml::Value::Table(table) =
        toml::Value::try_from(value).map_err(|e| anyhow::anyhow!("--policy-config: {e}"))?
    else {
        anyhow::bail!("--policy-config must be a JSON object");
    };
    Ok(table)
}
