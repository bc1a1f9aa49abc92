//! `loadgen`: logging and the runtime; the command line is [`loadgen::cli`], the commands
//! [`loadgen::commands`] (exit codes: 0 pass, 1 failed, 2 usage, 3 target).

use std::process::ExitCode;

use clap::Parser as _;
use loadgen::cli::{Cli, dispatch};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(dispatch(cli.command)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
