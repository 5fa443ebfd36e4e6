//! The `hfconnect` binary: hands the arguments to the library and exits with its code.

fn main() {
    let code = hfconnect::cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
