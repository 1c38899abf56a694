//! The `petrel` binary: parses the command line and reports errors as one line on stderr.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc (2.x, see Cargo.toml): fast, thread-local allocation suits one thread per shard.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Heap profiling (`--features dhat-heap`): every allocation with its call stack, written to
/// dhat-heap.json when the profiler drops: at the end of `main`, or `PETREL_DHAT_AFTER` seconds
/// after the start (the heap of a running server: idle sessions, not their login peak).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = {
        let profiler = dhat::Profiler::new_heap();
        let after = std::env::var("PETREL_DHAT_AFTER").ok();
        match after.and_then(|s| s.parse().ok()) {
            Some(secs) => {
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(secs));
                    drop(profiler);
                });
                None
            }
            None => Some(profiler),
        }
    };
    // Before the first large allocation: a huge page faulted now would stay (`[shards] huge_pages`
    // turns them back on when the server starts). Logging is not set up yet, hence stderr.
    if let Err(e) = petrel::heap::huge_pages(false) {
        eprintln!("petrel: could not turn off transparent huge pages: {e}");
    }
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
