//! `xlsync`: what `xl list -l` would lose, explained and repaired. See `xlsync --help`; the
//! command itself lives in `xs_adapter::cli`.

use std::io::IsTerminal;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A bug must still end as one line and status 2, never a stack trace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("xlsync: internal error: {}{at} (please report it with the command line)", what.replace('\n', " "));
        std::process::exit(i32::from(xs_adapter::cli::EXIT_ERROR));
    }));
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut env = xs_adapter::cli::Env {
        stdin: &mut input,
        stdout_is_tty: std::io::stdout().is_terminal(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let status = xs_adapter::cli::main(
        std::env::args_os(),
        &mut env,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(status)
}
