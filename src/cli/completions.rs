//! `esdb completions <shell>`: a completion script for the whole command line.

use clap::CommandFactory;

use crate::cli::common::CliError;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  esdb completions bash > ~/.local/share/bash-completion/completions/esdb
  esdb completions zsh > ~/.zfunc/_esdb
  esdb completions fish > ~/.config/fish/completions/esdb.fish")]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> Result<(), CliError> {
    let mut command = crate::config::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut command, "esdb", &mut out);
    Ok(())
}
