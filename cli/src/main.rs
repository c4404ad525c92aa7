//! The `bankconnect` command. Its commands are being built (issues 4–8); today it only reports
//! its version.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("bankconnect {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("bankconnect: no commands are available in this build yet; see README.md");
            ExitCode::from(2)
        }
    }
}
