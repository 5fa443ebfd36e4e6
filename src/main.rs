//! The `hfconnect` binary: hands the arguments to the library and exits with its code.

// glibc's malloc serializes worker threads that free each other's memory; the
// benchmark profile showed it costing as much as the HTTP work (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Unlocked handles: each write takes the lock briefly. Holding the locks for
    // the whole run would deadlock `serve`, whose log lines come from worker threads.
    let code = hfconnect::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
