//! The `hostd` command line: parses arguments and calls the library.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use hostd::admin::manage_cli as manage;
use hostd::config::{Config, Quickstart};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: glibc malloc took ~15 % of an ingest profile, much of it arena-lock waits.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The dead-letter queue of a running hostd (through its admin API).
    Dlq {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print the admin API's OpenAPI 3.1 document (what `GET /admin/v1/openapi.json` serves).
    Openapi,
    /// Tenants of a running hostd: create, list, show, update, delete.
    Tenant {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: manage::TenantCommand,
    },
    /// Routes of a tenant: add, list, show, update, remove.
    Route {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: manage::RouteCommand,
    },
    /// Tokens of a tenant: create, list, revoke.
    Token {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: manage::TokenCommand,
    },
    /// Signing secrets of a webhook route: rotate, list.
    Secret {
        #[command(flatten)]
        endpoint: EndpointArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        command: manage::SecretCommand,
    },
}

#[derive(Args)]
struct OutputArgs {
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
struct EndpointArgs {
    /// The running hostd.
    #[arg(long, global = true, env = "HOSTD_URL", default_value = "http://127.0.0.1:8787")]
    url: String,
    /// The admin token, or a tenant's token (which sees only that tenant's entries).
    #[arg(long, global = true, env = "HOSTD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct SelectionArgs {
    /// Entry ids.
    ids: Vec<i64>,
    /// Every entry matching the filters instead of ids.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
}

/// Which DLQ entries: every set filter must match.
#[derive(Args)]
struct FilterArgs {
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    route: Option<String>,
    /// Dead-lettered within this long, like `1h`.
    #[arg(long)]
    since: Option<String>,
}

impl SelectionArgs {
    fn into_selection(self) -> hostd::admin::cli::Selection {
        let mut selection = self.filter.into_selection();
        selection.ids = self.ids;
        selection.all = self.all;
        selection
    }
}

impl FilterArgs {
    fn into_selection(self) -> hostd::admin::cli::Selection {
        hostd::admin::cli::Selection { tenant: self.tenant, route: self.route, since: self.since, ..Default::default() }
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One JSON line per entry.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many entries (default: all, fetched page by page).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One entry in full.
    Show { id: i64 },
    /// Send entries again, as they were or through the tenant's current policy.
    Replay {
        #[command(flatten)]
        selection: SelectionArgs,
        /// Re-run the tenant's current policy on the original event (the fix when the policy was wrong).
        #[arg(long, conflicts_with = "as_is", required_unless_present = "as_is")]
        through_policy: bool,
        /// Resend the last payload unchanged.
        #[arg(long)]
        as_is: bool,
    },
    /// Delete entries.
    Purge {
        #[command(flatten)]
        selection: SelectionArgs,
    },
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
    /// The live policies of a running hostd: one JSON line per tenant (or just TENANT).
    Status {
        tenant: Option<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Swap TENANT's policy in a running hostd for FILE (checked first; refused with the
    /// reason if it fails, the old version keeps serving). Needs the admin token.
    Push {
        tenant: String,
        file: PathBuf,
        /// The JSON handed to `configure` (default: the tenant's current config).
        #[arg(long)]
        policy_config: Option<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Make TENANT's previous policy version active again. Needs the admin token.
    Rollback {
        tenant: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
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
        Some(Command::Policy(command)) => policy(command),
        Some(Command::Dlq { endpoint, command }) => dlq(endpoint, command),
        Some(Command::Tenant { endpoint, output, command }) => {
            manage(endpoint, |ep, out| Box::pin(manage::tenant(ep, output.json, command, out)))
        }
        Some(Command::Route { endpoint, output, command }) => {
            manage(endpoint, |ep, out| Box::pin(manage::route(ep, output.json, command, out)))
        }
        Some(Command::Token { endpoint, output, command }) => {
            manage(endpoint, |ep, out| Box::pin(manage::token(ep, output.json, command, out)))
        }
        Some(Command::Secret { endpoint, output, command }) => {
            manage(endpoint, |ep, out| Box::pin(manage::secret(ep, output.json, command, out)))
        }
        Some(Command::Openapi) => {
            print!("{}", hostd::admin::openapi::document_json());
            Ok(())
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
    runtime.block_on(hostd::server::serve_with(config, args.config.clone()))
}

impl EndpointArgs {
    fn endpoint(self) -> hostd::Result<hostd::admin::cli::Endpoint> {
        let token = self.token.ok_or_else(|| {
            anyhow::anyhow!("no token: pass --token or set HOSTD_ADMIN_TOKEN (the admin token or a tenant's)")
        })?;
        Ok(hostd::admin::cli::Endpoint { url: self.url, token })
    }
}

fn policy(command: PolicyCommand) -> hostd::Result<()> {
    use hostd::admin::cli;
    if let PolicyCommand::Test { plugin, events, policy_config } = command {
        return hostd::policy::fixtures::run(&plugin, &events, policy_config.as_deref(), &mut std::io::stdout().lock());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(async {
        match command {
            PolicyCommand::Status { tenant, endpoint } => {
                cli::policy_status(&endpoint.endpoint()?, tenant.as_deref(), &mut out).await
            }
            PolicyCommand::Push { tenant, file, policy_config, endpoint } => {
                cli::policy_push(&endpoint.endpoint()?, &tenant, &file, policy_config.as_deref(), &mut out).await
            }
            PolicyCommand::Rollback { tenant, endpoint } => {
                cli::policy_rollback(&endpoint.endpoint()?, &tenant, &mut out).await
            }
            PolicyCommand::Test { .. } => Ok(()), // ran above, offline
        }
    })
}

fn dlq(endpoint: EndpointArgs, command: DlqCommand) -> hostd::Result<()> {
    use hostd::admin::cli;
    let ep = endpoint.endpoint()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(async {
        match command {
            DlqCommand::List { filter, limit } => cli::list(&ep, &filter.into_selection(), limit, &mut out).await,
            DlqCommand::Show { id } => cli::show(&ep, id, &mut out).await,
            DlqCommand::Replay { selection, through_policy, .. } => {
                cli::replay(&ep, &selection.into_selection(), through_policy, &mut out).await
            }
            DlqCommand::Purge { selection } => cli::purge(&ep, &selection.into_selection(), &mut out).await,
        }
    })
}

type Managed<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = hostd::Result<()>> + 'a>>;

/// Runs one management command against the daemon's API.
fn manage(
    endpoint: EndpointArgs,
    run: impl for<'a> FnOnce(&'a hostd::admin::cli::Endpoint, &'a mut dyn std::io::Write) -> Managed<'a>,
) -> hostd::Result<()> {
    let ep = endpoint.endpoint()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(run(&ep, &mut out))
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
