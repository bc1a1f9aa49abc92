//! `rt-server`: the realtime target server. Parses flags and runs the library's server.

use anyhow::Context as _;
use clap::Parser;
use server::cli::ServeArgs;

/// Realtime target server: every SSE and WebSocket pattern, instrumented at /metrics.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli.serve.to_config()?;
    let grace = cli.serve.shutdown_grace();
    server::serve_until(config, cli.serve.listen, server::shutdown_signal(), grace)
        .await
        .context("target server failed")
}
