//! `wsexec-local`: the local development tool (API Gateway WebSocket emulator, `invoke`).

fn main() -> std::process::ExitCode {
    wsexec::local::cli::main()
}
