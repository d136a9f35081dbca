mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<cli::Cancelled>().is_some() {
                return std::process::ExitCode::from(cli::EXIT_CANCELLED as u8);
            }
            std::process::ExitCode::FAILURE
        }
    }
}
