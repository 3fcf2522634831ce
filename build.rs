//! Link options for the Lambda binary that cargo's profiles cannot express.
//!
//! Identical code folding (`--icf=all`) merges functions whose machine code is the same (many
//! monomorphized generics are): 135 KB off the stripped release binary, measured. Only the
//! `wsexec` binary, only release builds, and only on x86_64 Linux with the GNU target, whose
//! default linker since Rust 1.90 is the bundled LLD (GNU ld has no `--icf`). Cross builds for
//! arm64 link with whatever linker they bring and are left alone.
//!
//! The same LLD also takes a symbol ordering file: the functions the cold path executes
//! (init, `$connect`, a ping, an echo run, `get_execution`, `$disconnect`) are laid out side by
//! side, so those few hundred KiB of code fault in as a few contiguous pages instead of pulling
//! in (through the kernel's fault-around) most of the code segment. A stale file only loses the
//! effect: names it lists that no longer exist are ignored.
//!
//! `-no-pie` (issue 27): a position-independent executable carries read-only data with absolute
//! pointers (vtables, string tables) that the dynamic loader relocates at every start, dirtying
//! each page it touches; linked at a fixed address they need no relocation. Measured side by
//! side with the floor (15 rounds): peak RSS after the first `$connect` 8,248 → 7,996 KiB
//! (2.98x → 2.89x the floor's), init 2.05 → 1.86 ms, the binary 389 KB smaller. The code stays
//! position-independent; compiling it position-dependent too (`-C relocation-model=static`)
//! saved 842 KiB but needs every build to pass `--target` (else the flag reaches proc-macros,
//! which cannot link that way): BENCHMARKS.md.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={ORDER}");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") == "release" && env("TARGET") == "x86_64-unknown-linux-gnu" {
        println!("cargo::rustc-link-arg-bin=wsexec=-Wl,--icf=all");
        // A position-dependent executable: the linker resolves every absolute pointer in the
        // read-only data itself, so the loader has no relocations to apply and those pages stay
        // clean, shared with the page cache (see the module doc).
        println!("cargo::rustc-link-arg-bin=wsexec=-no-pie");
        let order = format!("{}/{ORDER}", env("CARGO_MANIFEST_DIR"));
        if std::path::Path::new(&order).exists() {
            println!("cargo::rustc-link-arg-bin=wsexec=-Wl,--symbol-ordering-file={order}");
            println!("cargo::rustc-link-arg-bin=wsexec=-Wl,--no-warn-symbol-ordering");
        }
    }
}

/// The functions a cold start runs, in the order the linker should lay them out
/// (`tools/rss-breakdown --write-order` writes it from a callgrind run).
const ORDER: &str = "link/cold-path.order";
