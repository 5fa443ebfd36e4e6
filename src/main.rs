//! The `hfconnect` binary: hands the arguments to the library and exits with its code.

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
