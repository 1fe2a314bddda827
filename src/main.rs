//! The `halley` binary: parse flags, raise the descriptor limit, and either
//! serve (install the signal pipe, bind, announce the address on stdout, run
//! the loop) or, with `--workers` above 1, supervise that many serving copies
//! of this binary (`supervisor`), each of which comes back here as a worker.

use std::io::Write;
use std::process::ExitCode;

use halley::config::{parse_args, Command, HELP};
use halley::signals::SignalPipe;
use halley::supervisor;
use halley::Server;

fn main() -> ExitCode {
    // Before the config is built: the default --max-connections derives from
    // it. Every worker raises its own, since the limit is per process.
    halley::fd_limit::raise();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = match parse_args(args.iter().cloned()) {
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
    let env = std::env::var(supervisor::WORKER_ENV).ok();
    let worker = match supervisor::worker_number(env.as_deref(), config.workers) {
        Ok(worker) => worker,
        Err(e) => {
            eprintln!("halley: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(match (worker, config.workers) {
        (_, 1) => None,
        (Some(k), _) => Some(format!("w{k}")),
        (None, _) => Some("sup".into()),
    });
    let outcome = match worker {
        None if config.workers > 1 => match supervisor::run(&config, &args) {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        None => run(*config),
        Some(k) => {
            config.worker = k;
            config.worker_restarts = std::env::var(supervisor::RESTARTS_ENV)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            run(*config)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halley: {e}");
            ExitCode::FAILURE
        }
    }
}

/// env_logger at `info` unless `RUST_LOG` says otherwise; with `--workers`,
/// every line names the process that wrote it (`w3`, or `sup` for the
/// supervisor), since they all share one stderr.
fn init_logging(tag: Option<String>) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(tag) = tag {
        builder.format(move |buf, record| {
            writeln!(
                buf,
                "[{} {:<5} {tag} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

fn run(config: halley::Config) -> std::io::Result<()> {
    let server = Server::bind(config)?.with_signals(SignalPipe::install()?)?;
    // Scripts and tests that bind port 0 read the real address from this
    // line; so does the supervisor, from each worker.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {}", server.local_addr())?;
    stdout.flush()?;
    server.run()
}
