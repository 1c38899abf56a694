//! The `petrel` binary: parses the command line and reports errors as one line on stderr.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: fast, thread-local allocation suits one thread per shard.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Heap profiling (`--features dhat-heap`): every allocation with its call stack, written to
/// dhat-heap.json when the profiler drops at the end of `main`.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
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
