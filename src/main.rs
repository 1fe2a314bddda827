//! The `halley` binary: parse flags, raise the descriptor limit, install the
//! signal pipe, bind, announce the address on stdout, and run the loop.

use std::io::Write;
use std::process::ExitCode;

use halley::config::{parse_args, Command, HELP};
use halley::signals::SignalPipe;
use halley::Server;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Before the config is built: the default --max-connections derives from it.
    halley::fd_limit::raise();
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("halley: {e}");
            return ExitCode::from(2);
        }
    };
    match run(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halley: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: halley::Config) -> std::io::Result<()> {
    let server = Server::bind(config)?.with_signals(SignalPipe::install()?)?;
    // Scripts and tests that bind port 0 read the real address from this line.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr())?;
    stdout.flush()?;
    server.run()
}
