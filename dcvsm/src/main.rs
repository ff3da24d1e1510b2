//! The `dcvsm` binary: parses the command line and runs it (see the library).

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dcvsm: cannot start: {error}");
            return std::process::ExitCode::from(255);
        }
    };
    std::process::ExitCode::from(runtime.block_on(switchboard_dcvsm::run(std::env::args_os())))
}
