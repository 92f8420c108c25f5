//! Gathers the engine's inputs from wherever the user points: the xenstore snapshot (live daemon
//! or dump), the JSON replicas (userdata directory or one file) and the hypervisor-only values
//! (a `domains.txt` file, or what xenstore says, or defaults). Every value that did not come
//! from a real source is recorded as an [`InputNote`] with `defaulted = true`, so the
//! explanation can say so.

use super::args::{Selection, Sources};
use super::error::{io_reason, CliError};
use crate::dump::{self, ReadOptions};
use crate::live::{self, Client, Endpoint, Scope, SnapshotOptions};
use crate::userdata::{JsonRead, LockOptions, Locking, UserdataDir, UserdataError, DEFAULT_DIR};
use merge_core::config::{self, ConfigError, Document, DomainConfig};
use merge_core::hypervisor::{GuestType, HostInfo, HypervisorDomain, Scheduler};
use merge_core::reconcile::{JsonReplica, Policy};
use merge_core::xenstore::{Path, Tree};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// Where one input value of a domain came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputNote {
    /// Which input: `uuid`, `type`, `scheduler`, `sched_params`, `userdata`, `qemu_cpus`.
    pub input: &'static str,
    pub value: String,
    /// The file, xenstore path or rule it came from.
    pub source: String,
    /// No source said it: a default was used.
    pub defaulted: bool,
}

impl InputNote {
    fn from(input: &'static str, value: impl Into<String>, source: impl Into<String>) -> InputNote {
        InputNote { input, value: value.into(), source: source.into(), defaulted: false }
    }

    fn defaulted(input: &'static str, value: impl Into<String>, why: impl Into<String>) -> InputNote {
        InputNote { input, value: value.into(), source: why.into(), defaulted: true }
    }
}

/// The inputs of one reconcile.
#[derive(Debug, Clone)]
pub struct DomainInputs {
    pub domid: u32,
    /// The snapshot this domain is reconciled against (a cheap clone of the host's when one
    /// snapshot covers every domain).
    pub tree: Tree,
    pub json: JsonReplica,
    pub notes: Vec<InputNote>,
}

/// Everything the engine needs for the selected domains: each domain's inputs, or what was
/// made of them as they were read ([`OpenedSources::load_each`]).
#[derive(Debug, Clone)]
pub struct LoadedHost<D = DomainInputs> {
    pub policy: Policy,
    pub host: HostInfo,
    pub domains: Vec<D>,
    /// Domains of `--all` found destroyed once their userdata lock was held: not listed, as
    /// `xl list -l` does.
    pub vanished: Vec<u32>,
    /// The host's snapshot, which every domain's tree shares (`None` when each domain was read
    /// on its own). It is held here so that the caller decides when and where its nodes are
    /// freed: otherwise the last domain to be dropped frees them all, on a loading thread.
    pub snapshot: Option<Tree>,
}

/// The text and provenance of a `domains.txt`.
pub struct HypervisorText {
    pub text: String,
    pub origin: String,
}

/// Where the JSON replicas are.
pub enum JsonSource {
    /// One domain's JSON, given by the user; malformed content is an error.
    File { origin: String, bytes: Vec<u8> },
    /// libxl's userdata directory.
    Dir { dir: UserdataDir, locking: Locking },
    /// In-memory userdata files by domid (the bundled demo).
    Embedded { origin: String, files: Vec<(u32, Vec<u8>)> },
}

/// The xenstore side, already read.
pub enum Snapshot {
    Tree { tree: Tree, origin: String },
    Live { client: Box<Client> },
}

/// Everything decided from the command line, before any reconcile.
pub struct OpenedSources {
    pub policy: Policy,
    pub scheduler: Option<Scheduler>,
    pub hypervisor: Option<HypervisorText>,
    pub snapshot: Snapshot,
    pub json: JsonSource,
    /// Userdata files read while the dump was (see [`ReadAhead`]).
    pub(super) read_ahead: Option<ReadAhead>,
}

/// The userdata files of the domains `--hypervisor` lists, read under their locks on a thread
/// of their own while the dump is read, each handed over as soon as it is read.
///
/// Why: libxl's lock protocol creates and removes a file per domain in one directory, and the
/// kernel serialises those on the directory's lock. Run on every core after the dump, the
/// threads spun on that lock; on one thread beside the dump parser, the work fills the time
/// the parser leaves idle (on the 1,000-guest bench host: system time 84 → 71 ms, wall time
/// 164 → 151 ms, means of 20 interleaved runs). The reads take longer than the parse, so the
/// domains already read are reconciled while the last ones are ([`ReadsSoFar::take`]).
///
/// What a domain gets is what reading it after the dump gives:
/// * only a dump gets a read-ahead: with a live daemon, libxl's check that the domain still
///   exists once its lock is held asks the daemon;
/// * a read is used only under the uuid the domain is staged with (both come from
///   `--hypervisor`);
/// * the read-ahead never waits: a lock someone holds is left to the read after the dump,
///   which waits as long as `--lock-timeout` says, and only for a domain that is listed;
/// * a failed read is dropped, and made again after the dump, so errors are the same;
/// * a domain read ahead but not listed (not in the dump, or not selected) is dropped unseen.
///   Like `xl list -l`, which lists the hypervisor's domains, xlsync took its lock and
///   released it.
pub(super) struct ReadAhead {
    reader: Option<std::thread::JoinHandle<()>>,
    /// The domain list, sent as soon as the reader has parsed it (nothing if it does not parse).
    parsed: Option<std::sync::mpsc::Receiver<HostInfo>>,
    reads: ReadsSoFar,
}

/// The reads made ahead so far, shared with the reader.
#[derive(Clone)]
struct ReadsSoFar(std::sync::Arc<(std::sync::Mutex<Progress>, std::sync::Condvar)>);

/// What the reader has done so far.
#[derive(Default)]
struct Progress {
    /// The domains it will read, once it has parsed the list.
    wanted: std::collections::HashSet<u32>,
    /// Each domain read, by domid, with the uuid it was read under; `None` for a read that
    /// failed.
    reads: std::collections::HashMap<u32, (String, Option<JsonRead>)>,
    /// It has read every domain it wanted (or the list did not parse).
    done: bool,
    /// How many threads wait for a read: the reader wakes them only then, since a wake-up is
    /// a system call and most reads are taken long after they are made.
    waiting: usize,
}

impl ReadAhead {
    /// Starts reading the files of the selected domains that `listed` names. The list is parsed
    /// on the reader's thread, off the dump's way, and handed to loading before the reads
    /// are done (loading parses it itself, and reports it, if it does not parse; then nothing
    /// is read ahead).
    fn of_listed(
        listed: &HypervisorText,
        scheduler: Option<Scheduler>,
        select: &Selection,
        dir: &UserdataDir,
        locking: Locking,
    ) -> ReadAhead {
        let (text, named, dir) = (listed.text.clone(), select.domids.clone(), dir.clone());
        let locking = match locking {
            Locking::Lock(options) => Locking::Lock(LockOptions { timeout: Duration::ZERO, ..options }),
            Locking::None => Locking::None,
        };
        let (send_parsed, parsed) = std::sync::mpsc::sync_channel(1);
        let reads = ReadsSoFar(std::sync::Arc::default());
        let shared = reads.clone();
        let reader = std::thread::spawn(move || {
            // However the reader ends, nobody waits for it after.
            let progress = DoneWhenDropped(shared);
            let Ok(host) = HostInfo::parse_domains_txt(&text, scheduler.unwrap_or(Scheduler::Credit2)) else {
                return;
            };
            let selected = |domid: u32| if named.is_empty() { domid != 0 } else { named.contains(&domid) };
            let wanted: Vec<(u32, String)> =
                host.domains.values().filter(|d| selected(d.domid)).map(|d| (d.domid, d.uuid.clone())).collect();
            // Known before the list is sent, so that no domain is waited for that is not read.
            progress.0.update(|p| p.wanted = wanted.iter().map(|(domid, _)| *domid).collect());
            // Loading may have stopped on the dump's error: nobody to send to.
            let _ = send_parsed.send(host);
            for (domid, uuid) in wanted {
                let read = dir.read_json_if_alive(domid, &uuid, locking, &mut || true).ok();
                progress.0.update(|p| {
                    p.reads.insert(domid, (uuid, read));
                });
            }
        });
        ReadAhead { reader: Some(reader), parsed: Some(parsed), reads }
    }

    /// The domain list as the reader parsed it, once it has (`None` if it does not parse).
    fn parsed_list(&mut self) -> Option<HostInfo> {
        self.parsed.take()?.recv().ok()
    }
}

impl ReadsSoFar {
    /// Changes what the reader has done, and wakes whoever waits for a read.
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        let (state, changed) = &*self.0;
        let mut progress = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut progress);
        let wake = progress.waiting > 0;
        drop(progress);
        if wake {
            changed.notify_all();
        }
    }

    /// The read of `domid` made ahead under `uuid`, once it is made; `None` if it was not
    /// made (not wanted, another uuid, or it failed), and it is made again by the caller.
    fn take(&self, domid: u32, uuid: &str) -> Option<JsonRead> {
        let (state, changed) = &*self.0;
        let mut progress = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some((read_under, read)) = progress.reads.remove(&domid) {
                return read.filter(|_| read_under == uuid);
            }
            if progress.done || !progress.wanted.contains(&domid) {
                return None;
            }
            progress.waiting += 1;
            progress = changed.wait(progress).unwrap_or_else(std::sync::PoisonError::into_inner);
            progress.waiting -= 1;
        }
    }
}

/// The reader's side of the reads, marked done, waking whoever waits for them, when it ends.
struct DoneWhenDropped(ReadsSoFar);

impl Drop for DoneWhenDropped {
    fn drop(&mut self) {
        self.0.update(|p| p.done = true);
    }
}

impl Drop for ReadAhead {
    /// An error elsewhere still waits for the reads, so that no lock file is left behind by a
    /// process exiting between creating and removing it.
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

const DUMP_FIX: &str =
    "give --xenstore the output of xenstore-ls -f or -fp, or a path=value scenario; --lenient repairs a pasted dump";
const JSON_FIX: &str = "give --json the domain's libxl userdata file (/var/lib/xen/userdata-d.<domid>.<uuid>.libxl-json) or `xl list -l` output";
const HYPERVISOR_FIX: &str = "give --hypervisor a domains.txt: one line per domain of key=value tokens, e.g. `domid=1 uuid=<uuid> type=pv weight=256 cap=0`";
const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

fn read_input(path: &std::path::Path, stdin: &mut dyn Read, fix: &str) -> Result<Vec<u8>, CliError> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        stdin
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::new(format!("cannot read standard input: {}", io_reason(&e)), fix))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| CliError::new(format!("cannot read {}: {}", path.display(), io_reason(&e)), fix))
}

fn origin_of(path: &std::path::Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads a dump into a tree, naming the file, line and column on failure.
pub fn read_dump(bytes: &[u8], origin: &str, lenient: bool) -> Result<Tree, CliError> {
    let opts = ReadOptions { lenient, ..ReadOptions::default() };
    dump::read(bytes, &opts).map(|s| s.tree).map_err(dump_error(origin))
}

/// A dump's error, naming the dump.
fn dump_error(origin: &str) -> impl Fn(dump::DumpError) -> CliError + '_ {
    move |e| CliError::new(format!("{origin}: {e}"), DUMP_FIX)
}

/// Reads a dump for `policy`. libxl 4.17's retrieve reads 4 in 10 nodes of a host, and a tree
/// of those gives the same outcome as the whole store (the law of merge-core's
/// `tests/libxl417_reads.rs`, which the live client's [`Scope::Libxl417`] relies on too), so
/// under that policy only those go into the tree: inserting is most of the cost of reading.
/// Two things bring back what was left out: the subtrees a damaged record points to, as the
/// live client fetches them; and everything, if a domain would otherwise lose all its nodes
/// (a dump without the home's own line), so that the domains found are the whole store's.
pub fn read_dump_for(bytes: &[u8], origin: &str, lenient: bool, policy: Policy) -> Result<Tree, CliError> {
    if policy != Policy::Libxl417 {
        return read_dump(bytes, origin, lenient);
    }
    let opts = ReadOptions { lenient, ..ReadOptions::default() };
    let kept = dump::read_kept(bytes, &opts, live::in_libxl417_scope).map_err(dump_error(origin))?;
    let (mut tree, left_out) = (kept.snapshot.tree, kept.left_out);
    let homes: std::collections::BTreeSet<u32> = guest_homes(&tree).collect();
    if homes_only_left_out(left_out.path_bytes(), &homes) {
        return read_dump(bytes, origin, lenient);
    }
    let mut brought_back = Vec::new();
    for pointer in merge_core::reconcile::libxl417::pointers_outside(&tree) {
        let Ok(root) = Path::new(&pointer) else { continue };
        let subtree = left_out.subtree(&root).map_err(dump_error(origin))?;
        brought_back.extend(subtree.iter().map(|(p, n)| (p.clone(), n.clone())));
    }
    if !brought_back.is_empty() {
        // Built again whole rather than changed node by node: the tree is a sorted array.
        tree = tree.iter().map(|(p, n)| (p.clone(), n.clone())).chain(brought_back).collect();
    }
    Ok(tree)
}

/// Whether some path lies under a domain's home (`/local/domain/<domid>`) that is not among
/// `homes`. Paths sorted as bytes keep a home's nodes together, so each home is looked up once.
fn homes_only_left_out<'a>(sorted: impl Iterator<Item = &'a [u8]>, homes: &std::collections::BTreeSet<u32>) -> bool {
    const HOMES: &[u8] = b"/local/domain/";
    let mut checked: &[u8] = b"";
    for path in sorted {
        if !checked.is_empty() && path.starts_with(checked) {
            continue;
        }
        let Some(rest) = path.strip_prefix(HOMES) else { continue };
        let name = rest.split(|&b| b == b'/').next().unwrap_or(b"");
        let Some(domid) = std::str::from_utf8(name).ok().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if !homes.contains(&domid) {
            return true;
        }
        // `/local/domain/<name>/`: what follows is this home's, until a path does not start so.
        checked = path.get(..HOMES.len() + name.len() + 1).filter(|p| p.ends_with(b"/")).unwrap_or(b"");
    }
    false
}

fn live_error(e: live::Error) -> CliError {
    let fix = "run on a Xen host with access to xenstored (usually as root), set XENSTORED_PATH to its socket, or give --xenstore DUMP";
    match e {
        live::Error::Connect { endpoint, source } => {
            CliError::new(format!("cannot connect to {endpoint}: {}", io_reason(&source)), fix)
        }
        other => CliError::new(other, fix),
    }
}

impl OpenedSources {
    /// Reads the command line's sources (files and the daemon connection). The userdata files
    /// are read per domain under their locks: while the dump is read, for the domains
    /// `--hypervisor` lists ([`ReadAhead`]), and when loading, for the others.
    pub fn from_sources(
        sources: &Sources,
        select: &Selection,
        stdin: &mut dyn Read,
    ) -> Result<OpenedSources, CliError> {
        let hypervisor = match &sources.hypervisor {
            Some(p) => {
                let bytes = read_input(p, stdin, HYPERVISOR_FIX)?;
                let text = String::from_utf8(bytes)
                    .map_err(|e| CliError::new(format!("{}: not UTF-8 text ({e})", origin_of(p)), HYPERVISOR_FIX))?;
                Some(HypervisorText { text, origin: origin_of(p) })
            }
            None => None,
        };
        // Decided before the dump is read, so that the userdata files can be read meanwhile;
        // an error here is still reported after the dump's, as the later input.
        let json = match (&sources.json, &sources.userdata_dir) {
            (Some(p), _) => {
                read_input(p, stdin, JSON_FIX).map(|bytes| JsonSource::File { origin: origin_of(p), bytes })
            }
            (None, _) => userdata_dir(sources).map(|(dir, locking)| JsonSource::Dir { dir, locking }),
        };
        let scheduler = sources.scheduler.map(|s| s.scheduler());
        let read_ahead = match (&sources.xenstore, &json, &hypervisor) {
            (Some(_), Ok(JsonSource::Dir { dir, locking }), Some(listed)) => {
                Some(ReadAhead::of_listed(listed, scheduler, select, dir, *locking))
            }
            _ => None,
        };
        let snapshot = match &sources.xenstore {
            Some(p) => {
                let bytes = read_input(p, stdin, DUMP_FIX)?;
                let origin = origin_of(p);
                Snapshot::Tree {
                    tree: read_dump_for(&bytes, &origin, sources.lenient, sources.policy.policy())?,
                    origin,
                }
            }
            None => Snapshot::Live { client: Box::new(Client::connect(Endpoint::from_env()).map_err(live_error)?) },
        };
        Ok(OpenedSources { policy: sources.policy.policy(), scheduler, hypervisor, snapshot, json: json?, read_ahead })
    }

    /// Resolves the domains and reads every input.
    pub fn load(self, select: &Selection) -> Result<LoadedHost, CliError> {
        self.load_each(select, |_, _, inputs| inputs)
    }

    /// [`OpenedSources::load`], with `each` domain's inputs turned into what the caller makes of
    /// them (with the host and the policy) as soon as they are read, on the thread that read
    /// them: a host's domains are reconciled while the last userdata files are read ahead.
    pub fn load_each<D: Send>(
        mut self,
        select: &Selection,
        each: impl Fn(&HostInfo, Policy, DomainInputs) -> D + Sync,
    ) -> Result<LoadedHost<D>, CliError> {
        let scheduler = self.scheduler.unwrap_or(Scheduler::Credit2);
        // The list the reads ahead parsed is the one given, with the same scheduler.
        let parsed_ahead = self.read_ahead.as_mut().and_then(ReadAhead::parsed_list);
        let host_file = match (&self.hypervisor, parsed_ahead) {
            (Some(_), Some(host)) => Some(host),
            (Some(h), None) => Some(
                HostInfo::parse_domains_txt(&h.text, scheduler)
                    .map_err(|e| CliError::new(format!("{}: {e}", h.origin), HYPERVISOR_FIX))?,
            ),
            (None, _) => None,
        };
        let json_file_domain = matches!(self.json, JsonSource::File { .. });
        if json_file_domain && select.domids.len() > 1 {
            return Err(CliError::new(
                format!("--json holds one domain's configuration, but {} domains were named", select.domids.len()),
                "name one DOMID with --json, or use --userdata-dir for several",
            ));
        }
        let policy = self.policy;
        // The trees, per domain.
        // The live client stays open for libxl's post-lock check that each domain still exists.
        let mut live_client: Option<Box<Client>> = None;
        let (domids, trees, snapshot): (Vec<u32>, Vec<Tree>, Option<Tree>) = match self.snapshot {
            Snapshot::Tree { tree, origin } => {
                let domids = pick_domains(select, &tree, host_file.as_ref(), json_file_domain, &origin)?;
                let trees = domids.iter().map(|_| tree.clone()).collect();
                (domids, trees, Some(tree))
            }
            Snapshot::Live { mut client } => {
                // Permissions decide trust under no-loss; libxl reads as dom0 and never looks.
                let with_perms = policy == Policy::NoLoss;
                let snap = |client: &mut Client, scope: Scope| {
                    let options = SnapshotOptions { scope, with_perms, ..SnapshotOptions::default() };
                    client.snapshot(&options).map(|s| s.tree).map_err(live_error)
                };
                if select.domids.is_empty() {
                    // libxl 4.17 reads a fraction of the store: fetch only that.
                    let scope = if policy == Policy::Libxl417 { Scope::Libxl417 } else { Scope::Host };
                    let mut tree = snap(&mut client, scope.clone())?;
                    if scope == Scope::Libxl417 {
                        // A damaged record may point libxl elsewhere: read there too.
                        for pointer in merge_core::reconcile::libxl417::pointers_outside(&tree) {
                            let Ok(root) = Path::new(&pointer) else { continue };
                            for (p, n) in snap(&mut client, Scope::Subtree(root))?.iter() {
                                tree.insert(p.clone(), n.clone());
                            }
                        }
                    }
                    let origin = client.endpoint().to_string();
                    let domids = pick_domains(select, &tree, host_file.as_ref(), json_file_domain, &origin)?;
                    let trees = domids.iter().map(|_| tree.clone()).collect();
                    live_client = Some(client);
                    (domids, trees, Some(tree))
                } else {
                    let mut trees = Vec::new();
                    for &d in &select.domids {
                        trees.push(snap(&mut client, Scope::Domain(d))?);
                    }
                    for (&d, tree) in select.domids.iter().zip(&trees) {
                        check_exists(d, tree, host_file.as_ref(), &client.endpoint().to_string())?;
                    }
                    live_client = Some(client);
                    (select.domids.clone(), trees, None)
                }
            }
        };

        let mut host = host_file.clone().unwrap_or_else(|| {
            let mut h = HostInfo::default();
            h.pool_schedulers.insert(0, scheduler);
            h
        });
        let scheduler_note = match self.scheduler {
            Some(s) => InputNote::from("scheduler", s.as_str(), "--scheduler"),
            None => InputNote::defaulted(
                "scheduler",
                scheduler.as_str(),
                "Xen 4.17's default for cpupool 0; pass --scheduler",
            ),
        };
        // Everything but the JSON, in domain order. A failure stops here; the domains before
        // it are still read, so the error reported is the first in domain order.
        let mut staged = Vec::with_capacity(domids.len());
        let mut stage_error = None;
        for (domid, tree) in domids.into_iter().zip(trees) {
            match stage(domid, tree, host_file.as_ref().zip(self.hypervisor.as_ref()), &self.json, policy, &mut host) {
                Ok(mut s) => {
                    s.notes.push(scheduler_note.clone());
                    staged.push(s);
                }
                Err(e) => {
                    stage_error = Some(e);
                    break;
                }
            }
        }
        // The JSON: on all cores, since each userdata file not read ahead is read under its own
        // lock, which costs a file creation and removal, and every file is parsed; and what
        // the caller makes of each domain, right after. Domains are taken in order, as the
        // reads ahead are made.
        let live_client = std::sync::Mutex::new(live_client);
        let read_ahead = self.read_ahead.take();
        let reads_ahead = read_ahead.as_ref().map(|ahead| &ahead.reads);
        let (json_source, host_ref) = (&self.json, &host);
        let loaded = super::par::map(staged, |s: Staged| {
            let Staged { domid, tree, mut notes, uuid } = s;
            let read = reads_ahead.and_then(|reads| reads.take(domid, &uuid));
            let json = json_of(domid, &uuid, read, json_source, policy, select, &live_client)?;
            let made = json.map(|(json, note)| {
                notes.push(note);
                each(host_ref, policy, DomainInputs { domid, tree, json, notes })
            });
            Ok((domid, made))
        });
        drop(read_ahead);
        let mut domains = Vec::with_capacity(loaded.len());
        let mut vanished = Vec::new();
        for loaded in loaded {
            match loaded? {
                (_, Some(made)) => domains.push(made),
                // As `xl list -l`: a domain destroyed meanwhile is not listed.
                (domid, None) => vanished.push(domid),
            }
        }
        if let Some(e) = stage_error {
            return Err(e);
        }
        Ok(LoadedHost { policy, host, domains, vanished, snapshot })
    }
}

/// A domain's inputs but its JSON.
struct Staged {
    domid: u32,
    tree: Tree,
    notes: Vec<InputNote>,
    uuid: String,
}

/// What the hypervisor says of a domain (from `--hypervisor`, or derived from xenstore and
/// added to `host`), and the uuid that names its userdata file.
fn stage(
    domid: u32,
    tree: Tree,
    hypervisor: Option<(&HostInfo, &HypervisorText)>,
    json: &JsonSource,
    policy: Policy,
    host: &mut HostInfo,
) -> Result<Staged, CliError> {
    let mut notes = Vec::new();
    let hv = match hypervisor {
        Some((file, text)) => match file.domain(domid) {
            Some(d) => {
                let source = merge_core::xenstore::concat(&["--hypervisor ", &text.origin]);
                notes.push(InputNote::from("uuid", d.uuid.clone(), source.clone()));
                notes.push(InputNote::from("type", d.guest_type.as_str(), source.clone()));
                notes.push(InputNote::from("sched_params", format!("weight {} cap {}", d.weight, d.cap), source));
                Some(d.clone())
            }
            None => {
                notes.push(InputNote::defaulted(
                    "uuid",
                    "(none)",
                    format!("domain {domid} is not in --hypervisor {}: libxl would find no such domain", text.origin),
                ));
                None
            }
        },
        _ => {
            let json_config_hint = match json {
                JsonSource::File { bytes, .. } => match parse_json(bytes, domid, policy) {
                    Ok(JsonReplica::Present(c)) => Some(c),
                    _ => None,
                },
                _ => None,
            };
            let uuid_from_files = match json {
                JsonSource::Dir { dir, .. } => dir.json_uuids(domid).map_err(userdata_error)?,
                JsonSource::Embedded { .. } | JsonSource::File { .. } => Vec::new(),
            };
            let d = derive_domain(&tree, domid, json_config_hint.as_ref(), &uuid_from_files, &mut notes);
            host.insert(d.clone());
            Some(d)
        }
    };
    let uuid = hv.map_or(ZERO_UUID.to_string(), |d| d.uuid);
    Ok(Staged { domid, tree, notes, uuid })
}

/// A domain's JSON replica and where it came from; `None` for a domain of `--all` found
/// destroyed under its userdata lock, which `xl list -l` does not list.
fn json_of(
    domid: u32,
    uuid: &str,
    read_ahead: Option<JsonRead>,
    json: &JsonSource,
    policy: Policy,
    select: &Selection,
    live_client: &std::sync::Mutex<Option<Box<Client>>>,
) -> Result<Option<(JsonReplica, InputNote)>, CliError> {
    Ok(Some(match json {
        JsonSource::File { origin, bytes } => {
            let json =
                parse_json(bytes, domid, policy).map_err(|e| CliError::new(format!("{origin}: {e}"), JSON_FIX))?;
            (json, InputNote::from("userdata", origin.clone(), "--json"))
        }
        JsonSource::Dir { dir, locking } => {
            // libxl checks, lock held, that the domain is still there; on a live host its
            // xenstore home is what we can ask.
            let mut probe_error = None;
            let mut alive = || {
                let mut client = live_client.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match client.as_mut() {
                    Some(client) => match client.directory(&format!("/local/domain/{domid}")) {
                        Ok(found) => found.is_some(),
                        Err(e) => {
                            probe_error = Some(e);
                            true
                        }
                    },
                    None => true,
                }
            };
            let read = match read_ahead {
                Some(read) => Ok(read),
                None => dir.read_json_if_alive(domid, uuid, *locking, &mut alive),
            };
            if let Some(e) = probe_error {
                return Err(live_error(e));
            }
            let path = dir.json_path(domid, uuid);
            match read.map_err(userdata_error)? {
                JsonRead::DomainGone if select.domids.is_empty() => return Ok(None),
                JsonRead::DomainGone => {
                    return Err(CliError::new(
                        format!(
                            "domain {domid} was destroyed while xlsync read it (checked under libxl's userdata lock)"
                        ),
                        "nothing to retrieve: the domain no longer exists",
                    ))
                }
                JsonRead::Bytes(bytes) => {
                    let how = match locking {
                        Locking::Lock(_) => "read under libxl's userdata lock",
                        Locking::None => "read without the userdata lock (--no-lock)",
                    };
                    let json =
                        parse_json(&bytes, domid, policy).unwrap_or_else(|e| JsonReplica::Invalid(e.to_string()));
                    (json, InputNote::from("userdata", path.display().to_string(), how))
                }
                JsonRead::Absent => {
                    (JsonReplica::Missing, InputNote::from("userdata", "(none)", format!("no file {}", path.display())))
                }
            }
        }
        JsonSource::Embedded { origin, files } => match files.iter().find(|(d, _)| *d == domid) {
            Some((_, bytes)) => {
                let name = crate::userdata::data_file_name(domid, uuid, crate::userdata::LIBXL_JSON);
                let json = parse_json(bytes, domid, policy).unwrap_or_else(|e| JsonReplica::Invalid(e.to_string()));
                (json, InputNote::from("userdata", name, origin.clone()))
            }
            None => (
                JsonReplica::Missing,
                InputNote::from("userdata", "(none)", format!("no file for domain {domid} in {origin}")),
            ),
        },
    }))
}

/// The userdata directory and how to lock its files, from the command line.
fn userdata_dir(sources: &Sources) -> Result<(UserdataDir, Locking), CliError> {
    let dir = UserdataDir::new(sources.userdata_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)));
    if !dir.path().is_dir() {
        let why = match std::fs::metadata(dir.path()) {
            Ok(_) => "not a directory".to_string(),
            Err(e) => io_reason(&e),
        };
        return Err(CliError::new(
            format!("cannot use the userdata directory {}: {why}", dir.path().display()),
            "run on a Xen host, or give --userdata-dir DIR or --json FILE",
        ));
    }
    let locking = if sources.no_lock {
        Locking::None
    } else {
        let secs = sources.lock_timeout;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(CliError::new(
                format!("--lock-timeout {secs}: not a number of seconds"),
                "give --lock-timeout e.g. 10",
            ));
        }
        Locking::Lock(LockOptions { timeout: Duration::from_secs_f64(secs), ..LockOptions::default() })
    };
    Ok((dir, locking))
}

fn userdata_error(e: UserdataError) -> CliError {
    let fix = match &e {
        UserdataError::LockTimeout { .. } => {
            "try again when libxl is done, raise --lock-timeout, or pass --no-lock to read anyway"
        }
        UserdataError::LockOpen { .. } | UserdataError::Lock { .. } => {
            "run as root (libxl's lock file must be created there), or pass --no-lock for a copy nobody writes to"
        }
        UserdataError::ListDir { .. } | UserdataError::Read { .. } => "check --userdata-dir and its permissions",
    };
    let problem = match &e {
        UserdataError::LockOpen { path, source } => {
            format!("cannot open the userdata lock {}: {}", path.display(), io_reason(source))
        }
        UserdataError::Lock { path, source } => {
            format!("cannot take the userdata lock {}: {}", path.display(), io_reason(source))
        }
        UserdataError::ListDir { dir, source } => {
            format!("cannot list the userdata directory {}: {}", dir.display(), io_reason(source))
        }
        UserdataError::Read { path, source } => format!("cannot read {}: {}", path.display(), io_reason(source)),
        UserdataError::LockTimeout { .. } => e.to_string(),
    };
    CliError::new(problem, fix)
}

/// A userdata file's bytes as the engine's JSON replica. A zero-length file is `Empty` (libxl
/// says so); anything that does not read as a configuration is an error. Under libxl-4.17 the
/// engine decides what libxl makes of odd fields, so only the syntax is checked here; under
/// no-loss the document is also checked against the libxl 4.17 schema.
pub fn parse_json(bytes: &[u8], domid: u32, policy: Policy) -> Result<JsonReplica, ConfigError> {
    if bytes.is_empty() {
        return Ok(JsonReplica::Empty);
    }
    let document = match policy {
        Policy::Libxl417 => config::parse_document_unvalidated(bytes)?,
        Policy::NoLoss => config::parse_document(bytes)?,
    };
    let config: DomainConfig = match document {
        Document::Bare(c) => c,
        Document::Listed(domains) => {
            let listed: Vec<u32> = domains.iter().map(|d| d.domid).collect();
            match domains.into_iter().find(|d| d.domid == domid) {
                Some(d) => d.config,
                None => {
                    return Err(ConfigError::Invalid {
                        path: config::JsonPath::root(),
                        message: format!("this `xl list -l` output holds domains {listed:?}, not domain {domid}"),
                    })
                }
            }
        }
    };
    Ok(JsonReplica::Present(config))
}

/// The guest domids of a snapshot: every numeric child of `/local/domain` but 0, by domid.
pub fn guest_domids(tree: &Tree) -> Vec<u32> {
    let mut domids: Vec<u32> = guest_homes(tree).filter(|&d| d != 0).collect();
    domids.sort_unstable();
    domids.dedup();
    domids
}

/// Every numeric child of `/local/domain`.
fn guest_homes(tree: &Tree) -> impl Iterator<Item = u32> {
    tree.children_of_str("/local/domain").into_iter().filter_map(|c| c.parse::<u32>().ok())
}

fn check_exists(domid: u32, tree: &Tree, host: Option<&HostInfo>, origin: &str) -> Result<(), CliError> {
    let home = Path::new(&format!("/local/domain/{domid}")).map_err(|e| CliError::without_fix(e.to_string()))?;
    if tree.exists(&home) || tree.has_descendants(&home) || host.is_some_and(|h| h.domain(domid).is_some()) {
        return Ok(());
    }
    Err(CliError::new(
        format!("domain {domid} is not in {origin} (no /local/domain/{domid})"),
        "check the domid; `xlsync explain --all` lists every domain",
    ))
}

fn pick_domains(
    select: &Selection,
    tree: &Tree,
    host: Option<&HostInfo>,
    json_file: bool,
    origin: &str,
) -> Result<Vec<u32>, CliError> {
    if !select.domids.is_empty() {
        for &d in &select.domids {
            check_exists(d, tree, host, origin)?;
        }
        return Ok(select.domids.clone());
    }
    let all = guest_domids(tree);
    if json_file && !select.all {
        return match all.as_slice() {
            [one] => Ok(vec![*one]),
            _ => Err(CliError::new(
                format!("--json holds one domain's configuration and {origin} has {} guest domains", all.len()),
                "name the DOMID the JSON belongs to",
            )),
        };
    }
    Ok(all)
}

/// What the hypervisor would say about a domain, from xenstore where it can, else defaults;
/// each value gets a note saying which.
fn derive_domain(
    tree: &Tree,
    domid: u32,
    json: Option<&DomainConfig>,
    uuid_files: &[String],
    notes: &mut Vec<InputNote>,
) -> HypervisorDomain {
    let home = format!("/local/domain/{domid}");
    let vm_path = format!("{home}/vm");
    let from_vm =
        tree.text(&vm_path).and_then(|v| v.strip_prefix("/vm/")).and_then(merge_core::observe::libxl_list::parse_uuid);
    let uuid = match (from_vm, uuid_files) {
        (Some(u), files) if files.is_empty() || files.contains(&u) => {
            notes.push(InputNote::from("uuid", u.clone(), format!("xenstore {vm_path}")));
            u
        }
        (_, [only]) => {
            notes.push(InputNote::from("uuid", only.clone(), "the name of the domain's only userdata file"));
            only.clone()
        }
        (Some(u), _) => {
            notes.push(InputNote::from("uuid", u.clone(), format!("xenstore {vm_path}")));
            u
        }
        (None, _) => match json.and_then(|c| c.uuid()).map(|u| u.to_string()) {
            Some(u) => {
                notes.push(InputNote::from("uuid", u.clone(), "the JSON's c_info.uuid"));
                u
            }
            None => {
                notes.push(InputNote::defaulted(
                    "uuid",
                    ZERO_UUID,
                    format!("{vm_path} names no /vm/<uuid>; pass --hypervisor"),
                ));
                ZERO_UUID.to_string()
            }
        },
    };
    let type_path = format!("/libxl/{domid}/type");
    let guest_type = match tree.text(&type_path).and_then(GuestType::parse) {
        Some(t) => {
            notes.push(InputNote::from("type", t.as_str(), format!("xenstore {type_path}")));
            t
        }
        None => match json
            .and_then(|c| c.c_info())
            .and_then(|o| o.get("type"))
            .and_then(|v| v.as_str())
            .and_then(GuestType::parse)
        {
            Some(t) => {
                notes.push(InputNote::from("type", t.as_str(), "the JSON's c_info.type"));
                t
            }
            None => {
                notes.push(InputNote::defaulted("type", "pv", format!("no {type_path}; pass --hypervisor")));
                GuestType::Pv
            }
        },
    };
    let mut d = HypervisorDomain::new(domid, uuid, guest_type);
    let kb = |leaf: &str| tree.text(&format!("{home}/memory/{leaf}")).and_then(|v| v.trim().parse::<u64>().ok());
    d.max_memkb = kb("static-max").unwrap_or(0);
    d.tot_memkb = kb("target").unwrap_or(0);
    let cpu = Path::new(&format!("{home}/cpu")).expect("a valid path");
    let online = tree
        .children(&cpu)
        .iter()
        .filter(|c| tree.text(&format!("{home}/cpu/{c}/availability")) == Some("online"))
        .count();
    d.vcpus = online.max(1) as u32;
    notes.push(InputNote::defaulted(
        "sched_params",
        format!("weight {} cap {} in cpupool 0", d.weight, d.cap),
        "the scheduler's defaults: no hypervisor input; pass --hypervisor",
    ));
    if guest_type == GuestType::Hvm {
        notes.push(InputNote::defaulted(
            "qemu_cpus",
            "(unknown)",
            "QEMU is not asked; a qemu-xen HVM guest's vcpus need --hypervisor with qemu_cpus=",
        ));
    }
    d
}
