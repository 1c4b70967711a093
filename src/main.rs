//! The `pubsubd` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use pubsubd::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    match pubsubd::cli::execute(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubsubd: {e}");
            ExitCode::FAILURE
        }
    }
}
