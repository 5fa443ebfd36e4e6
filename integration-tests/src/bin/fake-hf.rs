//! `fake-hf --port N [--token T]`: the fake Hugging Face server on its own, for
//! manual trials and benchmarks. Stops on Ctrl-C.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let value = hfconnect_integration_tests::flag_value;
    let port: u16 = value("--port").and_then(|p| p.parse().ok()).unwrap_or(8089);
    let token = value("--token").unwrap_or_else(|| "hf_fake_token".to_string());
    let server = hfconnect_integration_tests::fake_hf::FakeHf::start_on(&token, port).await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "fake Hugging Face server on {} (token `{token}`; management API at {})",
            server.url(),
            server.management_url()
        );
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
