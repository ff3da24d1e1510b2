//! `switchboard`: thin entry point; everything lives in the library.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = switchboard::cli::Cli::parse();
    if let Err(error) = switchboard::cli::run(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
