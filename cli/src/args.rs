//! The command line, as in the contract (`cli.md`): global options and commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use bankconnect_cli::duration::{
    parse_duration, parse_http_path, parse_millis_duration, parse_positive_duration, parse_size,
};

/// BankConnect processing status: progress, session status, waiting on many sessions, webhooks,
/// and a local simulator.
#[derive(Debug, Parser)]
#[command(name = "bankconnect", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// API base URL (https://, or http:// to loopback only).
    #[arg(long, global = true, help_heading = "Global options", env = "BANKCONNECT_BASE_URL", default_value = bankconnect_core::PRODUCTION_BASE_URL)]
    pub(crate) base_url: String,
    /// API key (x-api-key). Prefer the environment variable: flags show up in process lists.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BANKCONNECT_API_KEY",
        hide_env_values = true
    )]
    pub(crate) api_key: Option<String>,
    /// Server hash (server-hash).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BANKCONNECT_SERVER_HASH",
        hide_env_values = true
    )]
    pub(crate) server_hash: Option<String>,
    /// HTTP driver: async (reqwest + tokio) or blocking (ureq, no tokio).
    #[arg(long, global = true, help_heading = "Global options", env = "BANKCONNECT_TRANSPORT", value_enum, default_value_t = Transport::Async)]
    pub(crate) transport: Transport,
    /// One JSON object per line on stdout.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) json: bool,
    /// Timeout of each HTTP request (with `--transport blocking`: of each phase of a request).
    #[arg(long, global = true, help_heading = "Global options", value_parser = parse_positive_duration, default_value = "30s")]
    pub(crate) request_timeout: Duration,
}

/// Which HTTP driver sends the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transport {
    /// reqwest on tokio.
    Async,
    /// ureq, on plain threads.
    Blocking,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One progress request (with retries of transient failures).
    Progress {
        /// The session.
        session_id: String,
    },
    /// One session-status request: the accounts' verdicts.
    Status {
        /// The session.
        session_id: String,
    },
    /// Track sessions until each ends (webhooks end them early, polling is the backup).
    Wait(WaitArgs),
    /// Webhook registration and intake.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Run the BankConnect simulator.
    Sim(SimArgs),
    /// The whole flow on the embedded simulator, with no credentials or network.
    Demo,
    /// The status service: sessions over HTTP, FinBox webhooks in, signed deliveries out, all
    /// in a durable store (see docs/serve.md).
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to listen (port 0 picks a free one).
    #[arg(long, env = "BANKCONNECT_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// The store: sqlite:PATH (created if missing) or postgres://USER@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "BANKCONNECT_STORE",
        default_value = "sqlite:bankconnect.db",
        hide_env_values = true
    )]
    pub(crate) store: String,
    /// Bearer token required on /v1/*; without one, serve listens on loopback only.
    #[arg(long, env = "BANKCONNECT_SERVE_TOKEN", hide_env_values = true)]
    pub(crate) api_token: Option<String>,
    /// A second bearer token that may only read (GET under /v1/*); needs --api-token.
    #[arg(long, env = "BANKCONNECT_READ_TOKEN", hide_env_values = true)]
    pub(crate) read_token: Option<String>,
    /// The path FinBox's webhooks are POSTed to.
    #[arg(long, default_value = "/webhooks/bankconnect", value_parser = parse_http_path)]
    pub(crate) webhook_path: String,
    /// A shared token webhooks must carry (query `?token=` or header `x-webhook-token`).
    #[arg(long, env = "BANKCONNECT_WEBHOOK_TOKEN", hide_env_values = true)]
    pub(crate) webhook_token: Option<String>,
    /// Standard Webhooks secret (whsec_…) incoming webhooks must be signed with; repeatable.
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// This service's public URL: at start, registers URL + webhook path with update_webhook.
    #[arg(long, env = "BANKCONNECT_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Where finished sessions are POSTed (http:// only to loopback).
    #[arg(long, env = "BANKCONNECT_DELIVER_TO")]
    pub(crate) deliver_to: Option<String>,
    /// A whsec_… key that signs deliveries (required with --deliver-to); repeat (or separate
    /// with commas) to rotate: each key signs every delivery.
    #[arg(
        long = "deliver-secret",
        env = "BANKCONNECT_DELIVER_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub(crate) deliver_secrets: Vec<String>,
    /// Delivery retry delays, comma-separated (the first attempt is after the first delay).
    #[arg(long, default_value = "0s,5s,5m,30m,2h,5h,10h,10h")]
    pub(crate) delivery_schedule: String,
    /// Least time between two polls of a session.
    #[arg(long, value_parser = parse_millis_duration, default_value = "2s")]
    pub(crate) interval: Duration,
    /// Most requests in flight to the API.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) concurrency: u32,
    /// Skip the session-status request after completion learnt by polling.
    #[arg(long)]
    pub(crate) no_accounts: bool,
    /// Give up on a session this long after it was added (downtime counts).
    #[arg(long, value_parser = parse_millis_duration, default_value = "24h")]
    pub(crate) max_wait: Duration,
    /// Poll PROCESSING_NOT_REQUESTED like processing for this long.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub(crate) not_requested_grace: Duration,
    /// How long a replica's hold on a session lasts unless renewed.
    #[arg(long, value_parser = parse_millis_duration, default_value = "30s")]
    pub(crate) lease: Duration,
    /// Most connections open at once; further clients wait until one closes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) max_connections: u32,
    /// Delete finished and cancelled sessions unchanged this long, with nothing left to
    /// deliver (and their history); `off` keeps everything.
    #[arg(long, env = "BANKCONNECT_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub(crate) retention: Retention,
    /// How often retention runs (and once at start).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub(crate) prune_interval: Duration,
    /// Log lines on stderr: text, or json (one object per line).
    #[arg(long, env = "BANKCONNECT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// `--retention`: a duration, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention(pub(crate) Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(Retention(None));
    }
    parse_duration(text).map(|d| Retention(Some(d)))
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Sessions to track.
    pub(crate) session_ids: Vec<String>,
    /// Read more session IDs from a file (one per line; `-` for stdin; `#` comments).
    #[arg(long, value_name = "FILE|-")]
    pub(crate) sessions_from: Option<String>,
    /// Least time between two polls of a session.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub(crate) interval: Duration,
    /// Give up on a session after this long (exit 4).
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub(crate) max_wait: Duration,
    /// Also receive webhooks on this address; a webhook for a tracked session ends its wait at once.
    #[arg(long, value_name = "ADDR")]
    pub(crate) webhook_listen: Option<SocketAddr>,
    /// The receiver's path.
    #[arg(long, default_value = "/", requires = "webhook_listen", value_parser = parse_http_path)]
    pub(crate) webhook_path: String,
    /// Standard Webhooks secret (whsec_…) incoming webhooks must be signed with; repeat for rotation.
    #[arg(long = "secret", requires = "webhook_listen")]
    pub(crate) secrets: Vec<String>,
    /// A shared token webhooks must carry (query `?token=` or header `x-webhook-token`).
    #[arg(
        long,
        env = "BANKCONNECT_WEBHOOK_TOKEN",
        hide_env_values = true,
        requires = "webhook_listen"
    )]
    pub(crate) webhook_token: Option<String>,
    /// Poll PROCESSING_NOT_REQUESTED like processing for this long.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub(crate) not_requested_grace: Duration,
    /// Skip the session-status request after completion learnt by polling.
    #[arg(long)]
    pub(crate) no_accounts: bool,
    /// Most requests in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub(crate) concurrency: u32,
    /// Consecutive transient failures retried per session before giving up (exit 6).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub(crate) retries: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Register the webhook URL.
    Set {
        /// Where FinBox should POST.
        url: String,
        /// 0: net-banking sessions only; 1: manual uploads too.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        mode: u8,
    },
    /// Run a webhook receiver and print each event.
    Listen(ListenArgs),
    /// Check and normalize one payload offline.
    Verify {
        /// Standard Webhooks secret (whsec_…); repeat for rotation. Without one, no signature is required.
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// A request header, `name: value` (repeatable), e.g. the webhook-* signature headers.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// The payload file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub(crate) addr: SocketAddr,
    /// The path webhooks are POSTed to.
    #[arg(long, default_value = "/", value_parser = parse_http_path)]
    pub(crate) path: String,
    /// Largest body accepted.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    pub(crate) max_body: usize,
    /// Standard Webhooks secret (whsec_…); repeat for rotation. Without one, nothing is verified.
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// A shared token webhooks must carry (query `?token=` or header `x-webhook-token`).
    #[arg(long, env = "BANKCONNECT_WEBHOOK_TOKEN", hide_env_values = true)]
    pub(crate) webhook_token: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = bankconnect_sim::BUILTIN_SESSIONS_HELP)]
pub(crate) struct SimArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) addr: SocketAddr,
    /// A scenario file (JSON); without one, the built-in sessions.
    #[arg(long)]
    pub(crate) scenario: Option<PathBuf>,
}

/// Global options a command ignores, by the command's path: its help leaves them out.
///
/// They stay accepted (globals can come before the command name, and scripts pass one set of
/// options to every call), only unadvertised.
const IGNORED_GLOBALS: &[(&[&str], &[&str])] = &[
    (
        &["sim"],
        &["base_url", "transport", "request_timeout", "json"],
    ),
    (
        &["demo"],
        &[
            "base_url",
            "api_key",
            "server_hash",
            "transport",
            "request_timeout",
        ],
    ),
    (&["serve"], &["transport"]),
    (
        &["webhook", "listen"],
        &[
            "base_url",
            "api_key",
            "server_hash",
            "transport",
            "request_timeout",
        ],
    ),
    (
        &["webhook", "verify"],
        &[
            "base_url",
            "api_key",
            "server_hash",
            "transport",
            "request_timeout",
        ],
    ),
];

/// The help of the command `args` ask help for, without the global options it ignores; `None`
/// when it is not one of those (clap's own help is right then).
///
/// Only for rendering: a propagated global can be hidden only after `build()`, and matches of
/// a command changed that way would lose the globals' defaults.
pub(crate) fn help_without_ignored_globals(args: &[String]) -> Option<String> {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    // The command path: the words naming subcommands, in order (`help` names the rest).
    let mut path: Vec<String> = Vec::new();
    let mut current = &command;
    for arg in args.iter().skip(1) {
        if arg == "help" && path.is_empty() {
            continue;
        }
        if let Some(sub) = current.find_subcommand(arg) {
            path.push(sub.get_name().to_owned());
            current = sub;
        }
    }
    let (_, ignored) = IGNORED_GLOBALS
        .iter()
        .find(|(ignoring, _)| ignoring.iter().eq(path.iter()))?;
    let mut target = &mut command;
    for name in &path {
        target = target.find_subcommand_mut(name)?;
    }
    let mut shown = std::mem::take(target);
    for id in *ignored {
        shown = shown.mut_arg(*id, |arg| arg.hide(true));
    }
    let long = !args.iter().any(|arg| arg == "-h");
    let help = if long {
        shown.render_long_help()
    } else {
        shown.render_help()
    };
    Some(help.to_string())
}
