//! `fake-hf`: the fake Hugging Face server on its own, for manual trials,
//! fault drills from a shell and benchmarks. Stops on Ctrl-C.

use clap::Parser;
use hfconnect_integration_tests::fake_hf::{admin, FakeHf};

/// A fake Hugging Face server: TGI, the chat route, pipelines, the router,
/// whoami-v2 and the endpoint management API, with faults on demand.
#[derive(Debug, Parser)]
#[command(name = "fake-hf", after_help = admin::HELP)]
struct Args {
    /// Port on 127.0.0.1 (0 for any free one).
    #[arg(long, default_value_t = 8089)]
    port: u16,
    /// The token the server accepts (`Authorization: Bearer <token>`).
    #[arg(long, default_value = "hf_fake_token")]
    token: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = FakeHf::start_on(&args.token, args.port).await?;
    server.with_demo_endpoint(std::time::Duration::from_secs(3));
    #[allow(clippy::print_stdout)]
    {
        println!(
            "fake Hugging Face server on {} (token `{}`; management API at {}, with endpoint `local-tgi` of namespace `demo`; faults: {}/_fake/help)",
            server.url(),
            args.token,
            server.management_url(),
            server.url()
        );
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
