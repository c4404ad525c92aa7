//! Lays out the `bankconnect` binary's hot code together (see `link/symbol-order.txt`).
//!
//! The one binary carries the service, the simulator and both drivers: 9.8 MB of code, of which a
//! `wait` runs under 1 MB. Spread through the file, those functions made the kernel map (by
//! fault-around, 64 KiB at a time) 4.6 MB of it into every `wait`. Listed first for the linker,
//! 1.2 MB of code is resident. The list is made by `cargo xtask layout`; names it holds
//! that a build no longer has are skipped, so a stale list costs memory, never a build.
#![forbid(unsafe_code)]

use std::process::Command;

const ORDER_FILE: &str = "link/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=BANKCONNECT_LINK_ORDER");
    if std::env::var("BANKCONNECT_LINK_ORDER").as_deref() == Ok("0") || !linked_by_rust_lld() {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let file = std::path::Path::new(&dir).join(ORDER_FILE);
    if file.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=bankconnect=-Wl,--symbol-ordering-file={}",
            file.display()
        );
        println!("cargo:rustc-link-arg-bin=bankconnect=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the final link is rustc's own `rust-lld` (the default for x86_64-unknown-linux-gnu
/// since Rust 1.90), the one linker known here to take `--symbol-ordering-file`: no other target,
/// no configured linker and no linker flags of the user's own.
fn linked_by_rust_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || std::env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|flag| {
        flag.contains("linker") || flag.contains("link-self-contained") || flag.contains("fuse-ld")
    }) {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(release) = text.lines().find_map(|line| line.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    matches!(
        (parts.next().flatten(), parts.next().flatten()),
        (Some(1), Some(minor)) if minor >= 90
    )
}
