//! The `xlsync` command: argument handling, input gathering, and output.
//!
//! The binary is a thin wrapper around [`main`]; everything here takes its environment (the
//! arguments, standard input, whether standard output is a terminal, `NO_COLOR`) as values,
//! so that it can be driven from tests.
//!
//! Exit status: [`EXIT_OK`] (consistent, or output printed), [`EXIT_HALF_BAKED`] (`check`
//! found half-baked states), [`EXIT_ERROR`] (one line on standard error, naming the thing and
//! the fix).

pub mod args;
pub mod demo;
pub mod dot;
pub mod error;
pub mod inputs;
pub mod par;
pub mod report;

use args::{Cli, ColorChoice, Command, Format, Output, Selection, Sources};
use clap::Parser;
pub use error::CliError;
use inputs::OpenedSources;
use merge_core::config::print::join_xl_list;
use merge_core::reconcile::{xl_list_entry, Policy};
use report::{Paint, Reconciled};
use std::ffi::OsString;
use std::io::{Read, Write};

pub const EXIT_OK: u8 = 0;
pub const EXIT_HALF_BAKED: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

/// What the command's surroundings are.
pub struct Env<'a> {
    pub stdin: &'a mut dyn Read,
    /// Standard output is a terminal (colours on `--color auto`).
    pub stdout_is_tty: bool,
    /// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub no_color: bool,
}

/// What a command printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
    pub status: u8,
}

impl Printed {
    fn ok(stdout: String) -> Printed {
        Printed { stdout, stderr: String::new(), status: EXIT_OK }
    }
}

/// Runs the command and writes its output; returns the exit status. Errors become one line
/// `xlsync: …` on `stderr` and status 2.
pub fn main(
    args: impl IntoIterator<Item = OsString>,
    env: &mut Env<'_>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let printed = match run(args, env) {
        Ok(p) => p,
        Err(e) => Printed { stdout: String::new(), stderr: format!("xlsync: {e}\n"), status: EXIT_ERROR },
    };
    // A closed pipe (`xlsync explain | head`) is not an error worth reporting.
    let _ = stdout.write_all(printed.stdout.as_bytes()).and_then(|_| stdout.flush());
    let _ = stderr.write_all(printed.stderr.as_bytes()).and_then(|_| stderr.flush());
    printed.status
}

/// Parses the arguments and runs the command, returning what it would print.
pub fn run(args: impl IntoIterator<Item = OsString>, env: &mut Env<'_>) -> Result<Printed, CliError> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let status = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            return Ok(if e.use_stderr() {
                Printed { stdout: String::new(), stderr: text, status }
            } else {
                Printed { stdout: text, stderr: String::new(), status }
            });
        }
    };
    let command = cli.command.unwrap_or(Command::Demo {
        output: Output { format: Format::Text, color: ColorChoice::Auto },
        policy: args::PolicyArg::NoLoss,
    });
    let (printed, results) = match command {
        Command::Demo { output, policy } => {
            let policy = policy.policy();
            let results = report::reconcile_all(demo::sources(policy)?.load(&Selection { domids: vec![], all: true })?);
            let mut text = explanation(&results, policy, output, env);
            if output.format == Format::Text {
                let p = paint(output.color, env);
                text = format!(
                    "{}\n{}\n\n{text}",
                    p.bold(&format!(
                        "xlsync demo: the bundled example host ({}), {} guests",
                        demo::DEMO_DIR,
                        results.len()
                    )),
                    p.dim("Each device is classified; a real host: xlsync explain --all (see xlsync --help)."),
                );
            }
            (Printed::ok(text), results)
        }
        Command::Retrieve { select, sources, bare } => {
            // Each domain is printed, and dropped, on the thread that reconciled it: retrieve
            // keeps only what it prints, so a thread's next domain reuses the memory its last
            // one freed.
            let (_, retrieved) = load_then(&select, &sources, env, |r: Reconciled| Retrieved::of(&r, bare))?;
            (retrieve(retrieved, bare), Vec::new())
        }
        Command::Explain { select, sources, output } => {
            let (policy, results) = load(&select, &sources, env)?;
            (Printed::ok(explanation(&results, policy, output, env)), results)
        }
        Command::Check { select, sources } => {
            let (_, results) = load(&select, &sources, env)?;
            let half_baked = results.iter().any(|r| r.outcome.is_half_baked());
            let paint = paint(ColorChoice::Auto, env);
            let printed = Printed {
                stdout: report::plan_text(&results, paint),
                stderr: String::new(),
                status: if half_baked { EXIT_HALF_BAKED } else { EXIT_OK },
            };
            (printed, results)
        }
        Command::Plan { select, sources, dot } => {
            let (_, results) = load(&select, &sources, env)?;
            let text =
                if dot { dot::to_dot(&results) } else { report::plan_text(&results, paint(ColorChoice::Auto, env)) };
            (Printed::ok(text), results)
        }
    };
    par::drop_in_background(results);
    Ok(printed)
}

fn load(select: &Selection, sources: &Sources, env: &mut Env<'_>) -> Result<(Policy, Vec<Reconciled>), CliError> {
    load_then(select, sources, env, |r| r)
}

/// [`load`], with `then` made of each domain right after its reconcile, on the same thread,
/// while the domain is still in the core's cache; each domain is reconciled as soon as its
/// inputs are read ([`OpenedSources::load_each`]).
fn load_then<T: Send>(
    select: &Selection,
    sources: &Sources,
    env: &mut Env<'_>,
    then: impl Fn(Reconciled) -> T + Sync,
) -> Result<(Policy, Vec<T>), CliError> {
    let stdin_users = [&sources.xenstore, &sources.json, &sources.hypervisor]
        .iter()
        .filter(|p| p.as_ref().is_some_and(|p| p.as_os_str() == "-"))
        .count();
    if stdin_users > 1 {
        return Err(CliError::new(
            "standard input (-) was given for more than one input",
            "read at most one of --xenstore, --json, --hypervisor from -",
        ));
    }
    let opened = OpenedSources::from_sources(sources, select, env.stdin)?;
    let policy = opened.policy;
    let loaded = opened.load_each(select, |host, policy, inputs| then(report::reconcile_one(host, policy, inputs)))?;
    // A host's nodes are freed while its domains are printed (usually not at all: the process
    // exits first), not by whichever loading thread drops the last domain.
    par::drop_in_background(loaded.snapshot);
    Ok((policy, loaded.domains))
}

fn paint(choice: ColorChoice, env: &Env<'_>) -> Paint {
    Paint {
        on: match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_is_tty && !env.no_color,
        },
    }
}

fn explanation(results: &[Reconciled], policy: Policy, output: Output, env: &Env<'_>) -> String {
    match output.format {
        Format::Json => report::explain_json(results, policy),
        Format::Text => report::explain_text(results, policy, paint(output.color, env)),
    }
}

/// What `retrieve` prints of one domain.
struct Retrieved {
    /// Its element of `xl list -l`'s array (with `--bare`, its configuration), if it has one.
    stdout: Option<String>,
    /// What libxl would log for it, and (under no-loss) why it has no configuration.
    stderr: String,
}

impl Retrieved {
    fn of(r: &Reconciled, bare: bool) -> Retrieved {
        let stdout =
            if bare { r.outcome.config.as_ref().ok().map(|c| c.to_libxl_json()) } else { xl_list_entry(&r.outcome) };
        let mut stderr = String::new();
        for line in r.outcome.stderr_lines() {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        if r.outcome.policy == Policy::NoLoss {
            if let Err(e) = &r.outcome.config {
                stderr.push_str(&format!("xlsync: domain {}: {e}\n", r.inputs.domid));
            }
        }
        Retrieved { stdout, stderr }
    }
}

/// `retrieve`: `xl list -l`'s array (or the bare configs) on stdout; what libxl would log, and
/// why a domain has no configuration, on stderr.
fn retrieve(domains: Vec<Retrieved>, bare: bool) -> Printed {
    let stderr = domains.iter().map(|d| d.stderr.as_str()).collect();
    let printed = domains.into_iter().filter_map(|d| d.stdout);
    let stdout = if bare { printed.collect() } else { join_xl_list(&printed.collect::<Vec<_>>()) };
    Printed { stdout, stderr, status: EXIT_OK }
}
