//! The `petrel` binary: parses the command line and reports errors as one line on stderr.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: fast, thread-local allocation suits one thread per shard.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Usage errors and --help/--version are handled (and exit) inside clap.
    let cli = petrel::cli::Cli::parse();
    match petrel::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e}");
            ExitCode::FAILURE
        }
    }
}
