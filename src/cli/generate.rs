//! `authprobe generate`: the man pages and the shell completions, written from the clap
//! definitions of [`Cli`] for packagers (the Debian package ships them: see Cargo.toml's
//! `[package.metadata.deb]`).
//!
//! Deliberately not a subcommand of [`Cli`]: it would show in the very man pages and completions
//! it writes (clap_complete lists hidden subcommands), and in `--help`. `main` hands over to it
//! when the first argument is `generate`; nothing else of the command line changes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use super::Cli;

#[derive(Parser)]
#[command(
    name = "authprobe generate",
    about = "Write authprobe's man pages or shell completions, made from its command-line definitions (for packagers)"
)]
struct Generate {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The man pages: authprobe.1 and authprobe-SUBCOMMAND.1 for each subcommand.
    Man {
        /// Directory to write them to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// The completion script of one shell: authprobe.bash, _authprobe (zsh) or authprobe.fish.
    Completions {
        shell: Shell,
        /// Directory to write it to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs `authprobe generate …` when `args` (the whole command line) starts with it: its exit
/// status; `None` for every other command line.
pub fn if_asked(args: &[OsString]) -> Option<ExitCode> {
    if args.get(1).is_none_or(|a| a != "generate") {
        return None;
    }
    let generate =
        Generate::parse_from(std::iter::once(OsString::from("authprobe generate")).chain(args[2..].iter().cloned()));
    let written = match generate.what {
        What::Man { out } => {
            std::fs::create_dir_all(&out).and_then(|()| clap_mangen::generate_to(Cli::command(), &out)).map(|()| out)
        }
        What::Completions { shell, out } => std::fs::create_dir_all(&out)
            .and_then(|()| clap_complete::generate_to(shell, &mut Cli::command(), "authprobe", &out)),
    };
    match written {
        Ok(path) => {
            println!("wrote {}", path.display());
            Some(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}
