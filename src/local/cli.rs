//! The `wsexec-local` command line (`serve`, `invoke`): flags, and the config, store and
//! runtime each command builds before handing over to the library.

use super::{DEFAULT_PORT, IDLE_TIMEOUT, MAX_CONNECTION_AGE, ServeOptions, invoke, run};
use crate::config::{Config, ConfigError};
use crate::context::Mode;
use crate::dispatch::memory::MemoryInvoker;
use crate::manager::Manager;
use crate::notify::memory::MemoryNotifier;
use crate::store::dynamo::{DynamoSettings, DynamoStore};
use crate::store::embedded::EmbeddedStore;
use crate::store::{StorageError, Store};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The embedded store's directory when `--data-dir` is not given (relative to the cwd).
pub const DEFAULT_DATA_DIR: &str = ".wsexec";

/// Local development tool for wsexec: an API Gateway WebSocket emulator, and event invocation.
#[derive(Debug, Parser)]
#[command(name = "wsexec-local", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the function behind an emulated API Gateway WebSocket API on 127.0.0.1.
    Serve(ServeArgs),
    /// Run event files (e.g. `events/*.json`) through the function and print the results.
    Invoke(InvokeArgs),
}

/// Where the function keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// redb on disk in `--data-dir`; state survives restarts.
    Embedded,
    /// DynamoDB: `TABLE_NAME`, `AWS_REGION`, credentials and `AWS_ENDPOINT_URL_DYNAMODB`.
    Dynamodb,
}

/// Flags both commands share.
#[derive(Clone, Debug, Args)]
pub struct FunctionArgs {
    /// Where state lives.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// The embedded store's directory.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Also accept `?user_id=` on `$connect` (development only; the id is still validated).
    #[arg(long)]
    pub dev_auth: bool,
}

/// `serve`'s flags.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub function: FunctionArgs,
    /// The port on 127.0.0.1 (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Close connections idle this long, in seconds (API Gateway: 600).
    #[arg(long, default_value_t = IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Close every connection after this long, in seconds (API Gateway: 7200).
    #[arg(long, default_value_t = MAX_CONNECTION_AGE.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connection_secs: u64,
    /// Also accept WebSockets from pages of this origin (`https://app.example:8443`, or `null`);
    /// repeatable. Loopback origins (`http://localhost:5173`) are always accepted.
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = super::access::parse_origin)]
    pub allow_origins: Vec<String>,
}

/// `invoke`'s flags.
#[derive(Clone, Debug, Args)]
pub struct InvokeArgs {
    #[command(flatten)]
    pub function: FunctionArgs,
    /// Event files, run in order.
    #[arg(required = true)]
    pub events: Vec<PathBuf>,
}

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot open the store in {dir} (is another wsexec-local using it?): {source}")]
    Embedded { dir: String, source: StorageError },
    #[error("cannot build the DynamoDB store: {0}")]
    Dynamo(StorageError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The function's configuration from the environment, as Lambda's would be, plus the flags.
pub fn config(args: &FunctionArgs) -> Result<Config, CliError> {
    let mut config = Config::from_env()?;
    config.dev_auth = args.dev_auth;
    Ok(config)
}

/// The store `args` select.
pub fn open_store(args: &FunctionArgs, config: &Config) -> Result<Arc<dyn Store>, CliError> {
    match args.store {
        StoreKind::Embedded => EmbeddedStore::open(&args.data_dir)
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|source| CliError::Embedded {
                dir: args.data_dir.display().to_string(),
                source,
            }),
        StoreKind::Dynamodb => {
            let table = config.require_table()?;
            DynamoStore::from_env(table, DynamoSettings::default())
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(CliError::Dynamo)
        }
    }
}

/// `serve`: binds, prints `wsexec-local listening on ws://127.0.0.1:PORT`, serves until
/// Ctrl-C or SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let mut config = config(&args.function)?;
    config.mode = Mode::Local;
    let store = open_store(&args.function, &config)?;
    // Loopback only: the emulator checks no signatures and `--dev-auth` trusts the client.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let addr = listener.local_addr()?;
    let mut opts = ServeOptions::new(config, store);
    opts.agents_from_env = true;
    opts.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    opts.max_connection_age = Duration::from_secs(args.max_connection_secs);
    opts.allowed_origins = args.allow_origins;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "wsexec-local listening on ws://{addr}")?;
    stdout.flush()?;
    run(listener, opts, stop_signal()).await?;
    Ok(())
}

/// `invoke`: returns whether every event ran without error.
pub async fn invoke(args: InvokeArgs) -> Result<bool, CliError> {
    let config = config(&args.function)?;
    let store = open_store(&args.function, &config)?;
    let notifier = Arc::new(MemoryNotifier::new());
    let invoker = Arc::new(MemoryInvoker::new());
    let mgr = Manager::new(config, store, notifier.clone())
        .with_invoker(invoker.clone())
        .with_env_agents(|k| std::env::var(k).ok())?;
    let mut stdout = std::io::stdout().lock();
    Ok(invoke::invoke_files(&mgr, &notifier, &invoker, &args.events, &mut stdout).await?)
}

/// Resolves on Ctrl-C, or SIGTERM where there is one.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The function's own logs and metrics, on stderr (stdout carries `serve`'s address line and
/// `invoke`'s output): the JSON lines and EMF documents a deployed function writes, filtered
/// the same way (`RUST_LOG`, else `info`), so the README's log fields and queries apply as is.
fn init_logs() {
    let filter = crate::telemetry::log_filter(|k| std::env::var(k).ok());
    let _ = tracing::subscriber::set_global_default(crate::telemetry::subscriber(
        &filter,
        std::io::stderr,
    ));
}

/// The binary's `main`: parse, run the command, map the outcome to an exit code
/// (0 success, 1 an event failed, 2 the command could not run).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsexec-local: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await.map(|()| true),
            Command::Invoke(args) => invoke(args).await,
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("wsexec-local: {e}");
            ExitCode::from(2)
        }
    }
}
