//! `switchboard`: thin entry point; everything lives in the library.

#[tokio::main]
async fn main() {
    if let Err(error) = switchboard::cli::main().await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
