//! The `authprobe` command line's entry point: arguments, logging, the runtime, exit codes. Each
//! subcommand lives in a module of [`cli`]; everything else lives in the library.

mod cli;

use std::process::ExitCode;

use authprobe::logging;
use clap::Parser as _;

use cli::{Cli, Failure, LogFormat, EXIT_CONFIG};

fn main() -> ExitCode {
    authprobe::memory::limit_arenas();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = cli::generate::if_asked(&args) {
        return code;
    }
    let mut cli = Cli::parse_from(&args);
    if cli.command.is_none() {
        // No subcommand means `run` with its defaults; global flags given still apply.
        cli = Cli::parse_from(args.into_iter().chain(["run".into()]));
    }
    let command = cli.command.expect("a command was chosen above");
    let format = match cli.log_format {
        LogFormat::Logfmt => logging::Format::Logfmt,
        LogFormat::Json => logging::Format::Json,
    };
    logging::init(&cli.log_level, format);
    authprobe::panics::install();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(command)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Config(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
