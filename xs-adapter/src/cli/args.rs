//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use merge_core::hypervisor::Scheduler;
use merge_core::reconcile::Policy;
use std::path::PathBuf;

/// What `xl list -l` would lose, explained and repaired.
///
/// xlsync merges libxl's two replicas of a Xen domain's configuration, the JSON userdata file
/// and xenstore. Without a command it runs on a bundled example host and explains it.
#[derive(Debug, Parser)]
#[command(name = "xlsync", version, about, long_about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

const EXAMPLES: &str = "\
Examples:
  xlsync                                     explain the bundled example host
  xlsync retrieve 7                          the merged config of domain 7 (live host)
  xlsync retrieve --all --policy libxl-4.17  exactly what `xl list -l` prints
  xlsync explain --xenstore dump.txt --json guest.libxl-json 7
  xlsync check --all                         exit 1 when half-baked states exist
  xlsync plan --all --dot | dot -Tsvg > plan.svg

Exit status: 0 ok (consistent), 1 half-baked states found (check), 2 error.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the merged configuration in libxl's format (`xl list -l`'s array by default)
    Retrieve {
        #[command(flatten)]
        select: Selection,
        #[command(flatten)]
        sources: Sources,
        /// Print each configuration as libxl stores it in its userdata file, without the
        /// `[{"domid": N, "config": …}]` wrapper
        #[arg(long)]
        bare: bool,
    },
    /// Explain every decision: devices with class, action and evidence; fields with provenance
    Explain {
        #[command(flatten)]
        select: Selection,
        #[command(flatten)]
        sources: Sources,
        #[command(flatten)]
        output: Output,
    },
    /// Print the repair plan; exit 0 when consistent, 1 when half-baked states exist, 2 on error
    Check {
        #[command(flatten)]
        select: Selection,
        #[command(flatten)]
        sources: Sources,
    },
    /// Print the repair plan, or with --dot the plan and the decision graph as Graphviz DOT
    Plan {
        #[command(flatten)]
        select: Selection,
        #[command(flatten)]
        sources: Sources,
        /// Print Graphviz DOT (`dot -Tsvg`) instead of text
        #[arg(long)]
        dot: bool,
    },
    /// Explain the bundled example host (what `xlsync` alone does)
    Demo {
        #[command(flatten)]
        output: Output,
        /// Reconcile the example under this policy
        #[arg(long, value_enum, default_value_t = PolicyArg::NoLoss)]
        policy: PolicyArg,
    },
}

/// Which domains.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    /// Domain ids. Without any (or with --all): every guest in the snapshot, by domid
    #[arg(value_name = "DOMID")]
    pub domids: Vec<u32>,
    /// Every guest domain (`/local/domain/<D>`, D ≠ 0), ordered by domid as xl orders them
    #[arg(long, conflicts_with = "domids")]
    pub all: bool,
}

/// Where the replicas and the hypervisor inputs come from.
#[derive(Debug, Args, Clone)]
pub struct Sources {
    /// no-loss (never lose a live device, classify, plan) or libxl-4.17 (exactly `xl list -l`)
    #[arg(long, value_enum, default_value_t = PolicyArg::NoLoss)]
    pub policy: PolicyArg,
    /// Read the live xenstored (the default without --xenstore): XENSTORED_PATH,
    /// XENSTORED_RUNDIR, /var/run/xenstored/socket or /dev/xen/xenbus, as libxenstore does
    #[arg(long, conflicts_with = "xenstore")]
    pub live: bool,
    /// A xenstore dump: `xenstore-ls` (-f, -fp, tree, -p) output or a `path=value` scenario;
    /// `-` reads standard input
    #[arg(long, value_name = "DUMP")]
    pub xenstore: Option<PathBuf>,
    /// Repair what mail and pastebins do to a dump (quote marks, line numbers, wraps) and say
    /// so, instead of rejecting it
    #[arg(long, requires = "xenstore")]
    pub lenient: bool,
    /// libxl's userdata directory: `userdata-d.<domid>.<uuid>.libxl-json`, read under libxl's
    /// userdata lock [default: /var/lib/xen]
    #[arg(long, value_name = "DIR", conflicts_with = "json")]
    pub userdata_dir: Option<PathBuf>,
    /// One domain's libxl JSON (a userdata file, or `xl list -l` output holding that domain)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// What only the hypervisor knows (uuid, type, scheduler weight/cap, cpupool), in the
    /// oracle's domains.txt format: one line per domain of `key=value` tokens. Without it these
    /// come from xenstore (`/local/domain/<D>/vm`, `/libxl/<D>/type`) or defaults, and the
    /// explanation says which
    #[arg(long, value_name = "FILE")]
    pub hypervisor: Option<PathBuf>,
    /// The scheduler of cpupool 0 [default: credit2, Xen 4.17's default]
    #[arg(long, value_enum, value_name = "NAME")]
    pub scheduler: Option<SchedulerArg>,
    /// Read userdata files without libxl's lock (for a copy nobody writes to, or a read-only
    /// directory)
    #[arg(long)]
    pub no_lock: bool,
    /// How long to wait for libxl to release a userdata lock
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub lock_timeout: f64,
}

/// How to print an explanation.
#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// text (a table per domain) or json (for machines)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Colours: auto (on a terminal, unless NO_COLOR is set), always or never
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    #[value(name = "no-loss")]
    NoLoss,
    #[value(name = "libxl-4.17")]
    Libxl417,
}

impl PolicyArg {
    pub fn policy(self) -> Policy {
        match self {
            PolicyArg::NoLoss => Policy::NoLoss,
            PolicyArg::Libxl417 => Policy::Libxl417,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchedulerArg {
    Credit,
    Credit2,
    Rtds,
    Null,
    Arinc653,
}

impl SchedulerArg {
    pub fn scheduler(self) -> Scheduler {
        match self {
            SchedulerArg::Credit => Scheduler::Credit,
            SchedulerArg::Credit2 => Scheduler::Credit2,
            SchedulerArg::Rtds => Scheduler::Rtds,
            SchedulerArg::Null => Scheduler::Null,
            SchedulerArg::Arinc653 => Scheduler::Arinc653,
        }
    }
}
