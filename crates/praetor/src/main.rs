//! `praetor`: one binary that is a Consul-compatible agent and its CLI.

mod agent_cmd;
mod catalog_cmd;
mod cli;
mod client;
mod dns_reads;
mod event_cmd;
mod forwarded;
mod keyring_cmd;
mod kv_cmd;
mod lock_cmd;
mod maint_cmd;
mod members_cmd;
mod operator_cmd;
mod pool_cmd;
mod rtt_cmd;
mod serf_agent_cmd;
mod serf_cmd;
mod server_dns;
mod services_cmd;
mod snapshot_cmd;
mod version_cmd;
mod watch_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match cli::parse(args) {
        Ok(parsed) => parsed,
        Err(cli::ParseError::Clap(error)) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(cli::ParseError::UndefinedFlag(message)) => {
            eprintln!("{message}");
            eprintln!("Run 'praetor --help' for usage.");
            return ExitCode::from(1);
        }
    };
    let code = match parsed.command {
        cli::Command::Agent(flags) => agent_cmd::run(*flags),
        cli::Command::Kv(kv) => kv_cmd::run(kv),
        cli::Command::Version(args) => version_cmd::run(&args.format),
        cli::Command::Catalog(c) => catalog_cmd::run(c),
        cli::Command::Services(c) => services_cmd::run(c),
        cli::Command::Maint(c) => maint_cmd::run(c),
        cli::Command::Event(c) => event_cmd::run(c),
        cli::Command::Members(c) => members_cmd::run(c),
        cli::Command::Join(c) => pool_cmd::run_join(c),
        cli::Command::Leave(c) => pool_cmd::run_leave(c),
        cli::Command::ForceLeave(c) => pool_cmd::run_force_leave(c),
        cli::Command::Lock(c) => lock_cmd::run(c),
        cli::Command::Watch(c) => watch_cmd::run(c),
        cli::Command::Operator(c) => operator_cmd::run(c),
        cli::Command::Snapshot(c) => snapshot_cmd::run(c),
        cli::Command::Serf(c) => serf_cmd::run(c),
        cli::Command::Rtt(c) => rtt_cmd::run(c),
        cli::Command::Keygen(c) => keyring_cmd::keygen(c),
        cli::Command::Keyring(c) => keyring_cmd::run(c),
    };
    ExitCode::from(code)
}
