//! `dcvsm`: the Session Manager client command line, compatible command for command and option for
//! option with the original CLI, talking to the broker over the public REST API only (no Switchboard
//! crate is linked, so it works against any Session Manager broker).
//!
//! - [`cli`]: the commands and options (clap).
//! - [`config`]: flags > environment > `dcvsmcli.conf`, and where the file is looked up.
//! - [`auth`]: the access token (client credentials), cached on disk until shortly before expiry.
//! - [`client`]: HTTPS calls to the broker (CA bundle, `--no-verify-ssl`, error texts).
//! - [`commands`]: each command's request and table form.
//! - [`output`]: JSON and table printing.
//! - [`error`]: the error type and the original's exit codes.

pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;

use std::ffi::OsString;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, OutputFormat};

/// Exit code of a command line that cannot be parsed (unknown command or option, missing option).
pub const EXIT_USAGE: u8 = 2;

/// The exit code for a clap error: help and version are successes, a bad value is 252 as in the
/// original, anything else a usage error.
fn clap_exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8 => 252,
        _ => EXIT_USAGE,
    }
}

/// Runs dcvsm with `args` in the process environment; prints results and errors; returns the exit code.
pub async fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return clap_exit_code(error.kind());
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let exe = std::env::current_exe().ok();
    match execute(cli, &env, exe.as_deref()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dcvsm: {error}");
            error.exit_code()
        }
    }
}

async fn execute(cli: Cli, env: &dyn Fn(&str) -> Option<String>, exe: Option<&std::path::Path>) -> error::Result<u8> {
    let settings = config::resolve(&cli.global, env, exe)?;
    if settings.debug {
        match &settings.conf_file {
            Some(path) => eprintln!("dcvsm: configuration file {}", path.display()),
            None => eprintln!("dcvsm: no configuration file"),
        }
    }
    let broker = client::Broker::new(&settings, auth::cache_dir(env))?;
    let outcome = commands::run(&broker, cli.command).await?;
    let text = match (&outcome.plain, settings.output_format) {
        (Some(plain), _) => plain.clone(),
        (None, OutputFormat::Table) => outcome.table.clone(),
        (None, OutputFormat::Json) => outcome.json.clone(),
    };
    print!("{text}");
    Ok(outcome.exit_code)
}
