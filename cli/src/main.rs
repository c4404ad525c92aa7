//! The `bankconnect` command: the SDK's front door for operators, scripts and CI. See `cli.md`
//! for the contract (flags, exit codes, JSON shapes).
#![forbid(unsafe_code)]

mod args;
mod commands;
mod context;
mod driver;
mod failure;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, WebhookCommand};
use crate::failure::{exit, Failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = u8::try_from(err.exit_code()).unwrap_or(exit::USAGE);
            if code != exit::OK && std::env::args().any(|a| a == "--json") {
                output::json_line(
                    &serde_json::json!({"error": {"kind": "usage", "code": null, "status": null, "message": usage_message(&err)}}),
                );
            } else if err.kind() == clap::error::ErrorKind::DisplayHelp {
                // Render help again from the command that leaves out the globals a command ignores.
                let args: Vec<String> = std::env::args().collect();
                match args::help_without_ignored_globals(&args) {
                    Some(help) => {
                        use std::io::Write;
                        let _ = writeln!(std::io::stdout().lock(), "{}", help.trim_end());
                    }
                    None => {
                        let _ = err.print();
                    }
                }
            } else {
                let _ = err.print();
            }
            return ExitCode::from(code);
        }
    };
    init_tracing(match &cli.command {
        Command::Serve(args) => Some(args.log_format),
        _ => None,
    });
    let json = cli.global.json;
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            output::failure(&failure, json);
            ExitCode::from(failure.code)
        }
    }
}

/// clap's error as one sentence, keeping what it names (e.g. the missing `<SESSION_ID>`) and
/// dropping the usage and help hints.
fn usage_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .map(|line| line.trim_start_matches("error: "))
        .collect();
    if parts.is_empty() {
        err.kind().to_string()
    } else {
        parts.join(" ")
    }
}

/// Logs to stderr as `RUST_LOG` says: by default warnings only, and for `serve` also the
/// service's operator lines (info), as text or JSON. Colour only on a terminal. Nothing logged
/// holds a secret.
fn init_tracing(serve: Option<args::LogFormat>) {
    use std::io::IsTerminal;
    let default = if serve.is_some() {
        "warn,bankconnect_service=info,bankconnect=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match serve {
        Some(args::LogFormat::Json) => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
}

fn run(cli: &Cli) -> Result<u8, Failure> {
    let global = &cli.global;
    match &cli.command {
        Command::Progress { session_id } => commands::api::progress(global, session_id),
        Command::Status { session_id } => commands::api::status(global, session_id),
        Command::Wait(args) => commands::wait::run(global, args),
        Command::Webhook(WebhookCommand::Set { url, mode }) => {
            commands::api::webhook_set(global, url, *mode)
        }
        Command::Webhook(WebhookCommand::Listen(args)) => {
            commands::webhook::listen(args, global.json)
        }
        Command::Webhook(WebhookCommand::Verify {
            secrets,
            headers,
            file,
        }) => commands::webhook::verify(secrets, headers, file, global.json),
        Command::Sim(args) => commands::sim::run(global, args),
        Command::Demo => commands::demo::run(global),
        Command::Serve(args) => commands::serve::run(global, args),
    }
}
