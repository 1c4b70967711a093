//! The `pubsubd` binary: parse the command line, then hand over to the library.

use std::process::ExitCode;

use clap::Parser;
use pubsubd::admin::{self, AdminCommand};
use pubsubd::cli::{Cli, Command};
use pubsubd::config::{Config, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = cli.command.common().clone();
    let quiet = !matches!(cli.command, Command::Run(_) | Command::Migrate(_));
    pubsubd::telemetry::init(common.log_format.unwrap_or(LogFormat::Human), quiet);
    let (file, over) = (common.config.as_deref(), common.overrides());
    let result = match cli.command {
        Command::Run(_) => match Config::load(file, over) {
            Ok(cfg) => pubsubd::app::run(cfg).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Command::Migrate(_) => match Config::database_only(file, over) {
            Ok(db) => pubsubd::app::migrate(&db).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Command::Node { args, action } => admin::run(args, AdminCommand::Node(action)).await,
        Command::Subscriptions { args, action } => {
            admin::run(args, AdminCommand::Subscriptions(action)).await
        }
        Command::Affiliations { args, action } => {
            admin::run(args, AdminCommand::Affiliations(action)).await
        }
        Command::Stats(args) => admin::run(args, AdminCommand::Stats).await,
        Command::Publish(args) => match Config::for_admin(file, over) {
            Ok(cfg) => pubsubd::offline::publish(cfg, args).await,
            Err(e) => Err(e.to_string()),
        },
        Command::Feed(args) => match Config::for_admin(file, over) {
            Ok(cfg) => pubsubd::offline::feed(cfg, args.action).await,
            Err(e) => Err(e.to_string()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("pubsubd: {e}");
    ExitCode::FAILURE
}
