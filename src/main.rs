//! The `hfconnect` binary: hands the arguments to the library and exits with its code.

// glibc's malloc serializes worker threads that free each other's memory; the
// benchmark profile showed it costing as much as the HTTP work (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // With transparent huge pages set to `always`, mimalloc's arenas are
    // backed by 2 MB pages: serve's 10 MB showed as 18 MB of resident memory,
    // in steps of 2 MB. A service this small gains nothing from them.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Unlocked handles: each write takes the lock briefly. Holding the locks for
    // the whole run would deadlock `serve`, whose log lines come from worker threads.
    let code = hfconnect::run_cli(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
