//! Link options for the Lambda binary that cargo's profiles cannot express.
//!
//! Identical code folding (`--icf=all`) merges functions whose machine code is the same (many
//! monomorphized generics are): 135 KB off the stripped release binary, measured. Only the
//! `wsexec` binary, only release builds, and only on x86_64 Linux with the GNU target, whose
//! default linker since Rust 1.90 is the bundled LLD (GNU ld has no `--icf`). Cross builds for
//! arm64 link with whatever linker they bring and are left alone.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") == "release" && env("TARGET") == "x86_64-unknown-linux-gnu" {
        println!("cargo::rustc-link-arg-bin=wsexec=-Wl,--icf=all");
    }
}
