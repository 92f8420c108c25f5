//! A blocking client of a live xenstored, and consistent snapshots taken through it.
//!
//! * [`Endpoint`] says where the daemon is (`XENSTORED_PATH`, `XENSTORED_RUNDIR`, the default
//!   socket, `/dev/xen/xenbus`), as libxenstore decides it.
//! * [`Client`] speaks the [`crate::wire`] protocol over it. Every request has a timeout:
//!   when the daemon sends nothing for [`ClientOptions::timeout`] while a request is pending, the
//!   call fails with [`Error::Timeout`] naming that request. A dead daemon gives
//!   [`Error::Disconnected`]. No call returns a partial result after an error.
//! * Snapshots ([`Client::snapshot_host`], [`Client::snapshot_domain`],
//!   [`Client::snapshot_subtree`]) pipeline their requests and are consistent per domain without
//!   a whole-store transaction: see [`snapshot`] for the argument.
//! * Writes for repair plans go through [`Client::transaction`], which retries on `EAGAIN`.

mod conn;
pub mod snapshot;

pub use snapshot::{
    in_libxl417_scope, Consistency, Scope, Snapshot, SnapshotOptions, SnapshotStats, DOMAIN_HOME_PARTS,
};

use crate::wire::{self, Errno, MsgType, ReplyError, Request, WireError};
use conn::{Conn, Op, Reply, Work};
use merge_core::xenstore::{PathError, Perms};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

/// Where xenstored listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The daemon's Unix socket (dom0 tools).
    Socket(PathBuf),
    /// The xenbus character device (a domain without the socket).
    Xenbus(PathBuf),
}

/// libxenstore's default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/xenstored/socket";
/// The xenbus device of a Linux domain.
pub const XENBUS_DEVICE: &str = "/dev/xen/xenbus";

impl Endpoint {
    /// Decides from the process environment and the file system, like libxenstore's `xs_open`:
    /// `XENSTORED_PATH` if set; else `$XENSTORED_RUNDIR/socket` if set; else the default
    /// socket if it exists; else `/dev/xen/xenbus` if it exists; else the default socket (whose
    /// absence then shows up as a clear connect error).
    pub fn from_env() -> Endpoint {
        Endpoint::resolve(|k| std::env::var_os(k).map(PathBuf::from), |p| p.exists())
    }

    /// [`Endpoint::from_env`] with the environment and the file system given as functions, so
    /// that the rule can be tested.
    pub fn resolve(var: impl Fn(&str) -> Option<PathBuf>, exists: impl Fn(&FsPath) -> bool) -> Endpoint {
        if let Some(p) = var("XENSTORED_PATH").filter(|p| !p.as_os_str().is_empty()) {
            // libxenstore uses XENSTORED_PATH for the device too; a character device is told
            // apart by its well-known name.
            return if p == FsPath::new(XENBUS_DEVICE) { Endpoint::Xenbus(p) } else { Endpoint::Socket(p) };
        }
        if let Some(dir) = var("XENSTORED_RUNDIR").filter(|p| !p.as_os_str().is_empty()) {
            return Endpoint::Socket(dir.join("socket"));
        }
        let default = PathBuf::from(DEFAULT_SOCKET);
        if !exists(&default) && exists(FsPath::new(XENBUS_DEVICE)) {
            return Endpoint::Xenbus(XENBUS_DEVICE.into());
        }
        Endpoint::Socket(default)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Socket(p) => write!(f, "xenstored socket {}", p.display()),
            Endpoint::Xenbus(p) => write!(f, "xenbus device {}", p.display()),
        }
    }
}

/// Everything that can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect { endpoint: Endpoint, source: std::io::Error },
    #[error("{endpoint} went away: {detail}")]
    Disconnected { endpoint: Endpoint, detail: String },
    #[error("{endpoint} sent nothing for {waited:?} while waiting for {}", request.as_deref().unwrap_or("a write to complete"))]
    Timeout { endpoint: Endpoint, waited: Duration, request: Option<String> },
    #[error("IO error on {endpoint}: {source}")]
    Io { endpoint: Endpoint, source: std::io::Error },
    #[error("{endpoint} broke the wire protocol: {source}")]
    Protocol { endpoint: Endpoint, source: WireError },
    #[error("{endpoint} sent a {msg_type:?} reply with req_id {req_id} that matches no pending request")]
    UnexpectedReply { endpoint: Endpoint, req_id: u32, msg_type: MsgType },
    #[error("cannot encode a request for {path:?}: {source}")]
    Encode { path: String, source: WireError },
    #[error("bad reply to {request}: {source}")]
    BadReply { request: String, source: ReplyError },
    #[error("{request} failed: {errno}")]
    Daemon { request: String, errno: Errno },
    #[error("invalid xenstore path {path:?}: {source}")]
    InvalidPath { path: String, source: PathError },
    #[error("transaction gave EAGAIN {attempts} times in a row; giving up")]
    TooManyRetries { attempts: u32 },
}

impl Error {
    /// The daemon's errno, when the error is a refused request.
    pub fn errno(&self) -> Option<&Errno> {
        match self {
            Error::Daemon { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long the daemon may stay silent while a request is pending.
    pub timeout: Duration,
    /// How many requests a walk keeps in flight on each connection. The C xenstored of 4.17
    /// limits outstanding requests only for unprivileged domains (`quota_req_outstanding`,
    /// 20); a dom0 socket connection has no such quota. See [`DEFAULT_WINDOW`].
    pub window: usize,
    /// How many times [`Client::transaction`] retries after `EAGAIN`.
    pub max_transaction_attempts: u32,
    /// How many connections a snapshot's walk spreads its requests over, each with `window`
    /// in flight (a daemon socket only: over `/dev/xen/xenbus` every open shares one ring, so
    /// one is used). See [`DEFAULT_CONNECTIONS`].
    pub connections: usize,
}

/// The connections a walk uses unless told otherwise. The C xenstored of 4.17 serves one
/// request per connection in each turn of its main loop, so spreading a walk over several
/// connections spares it most of a `poll` per request. Measured against it, a flood of 200,000
/// reads cost the daemon 11-17 us a request over one connection and 6-7 us from 12 to 32
/// connections; 16 sits in that plateau. On a 1,000-domain store the whole-store snapshot took
/// 4.1 s over 16 and 6.5 s over one (`benches/live_snapshot.rs` sweeps this). A walk opens the
/// extra connections as it needs them and closes them when it ends.
pub const DEFAULT_CONNECTIONS: usize = 16;

/// The pipelining window of each connection unless told otherwise, measured against the C
/// xenstored 4.17 (`benches/live_snapshot.rs` prints the curve). Over one connection, on a
/// 172,017-node store, windows from 8 to 32 were best and window 1 took 2.4 to 2.8 times as
/// long; over 16 connections windows 1 to 32 all took within 15% of each other (quiet runs).
/// It stays under the 20-request quota that xenstored applies to unprivileged domains, so the
/// same window is safe over `/dev/xen/xenbus`.
pub const DEFAULT_WINDOW: usize = 16;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            window: DEFAULT_WINDOW,
            max_transaction_attempts: 20,
            connections: DEFAULT_CONNECTIONS,
        }
    }
}

/// A blocking connection to xenstored.
pub struct Client {
    /// The client's own connection: single requests, transactions and watches live there.
    conn: Conn,
    options: ClientOptions,
    endpoint: Endpoint,
    /// Requests that walks sent over their extra connections, which are closed after each walk.
    requests_on_extra: u64,
}

pub(crate) fn expect_ok(request: &Request<'_>, reply: Reply) -> Result<Vec<u8>, Error> {
    reply.map_err(|errno| Error::Daemon { request: conn::describe(request), errno })
}

/// `Ok(None)` for ENOENT, the payload otherwise.
fn optional(request: &Request<'_>, reply: Reply) -> Result<Option<Vec<u8>>, Error> {
    match reply {
        Err(Errno::ENOENT) => Ok(None),
        other => expect_ok(request, other).map(Some),
    }
}

fn bad_reply(request: &Request<'_>, source: ReplyError) -> Error {
    Error::BadReply { request: conn::describe(request), source }
}

impl Client {
    /// Connects with [`ClientOptions::default`].
    pub fn connect(endpoint: Endpoint) -> Result<Client, Error> {
        Client::connect_with(endpoint, ClientOptions::default())
    }

    pub fn connect_with(endpoint: Endpoint, options: ClientOptions) -> Result<Client, Error> {
        let conn = Conn::open(&endpoint, options.timeout)?;
        Ok(Client { conn, options, endpoint, requests_on_extra: 0 })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Changes the pipelining window for later snapshots.
    pub fn set_window(&mut self, window: usize) {
        self.options.window = window.max(1);
    }

    /// Changes how many connections later walks spread over.
    pub fn set_connections(&mut self, connections: usize) {
        self.options.connections = connections.max(1);
    }

    /// Requests sent on this client's connections so far.
    pub fn requests_sent(&self) -> u64 {
        self.conn.requests_sent + self.requests_on_extra
    }

    fn call(&mut self, request: &Request<'_>, tx_id: u32) -> Result<Reply, Error> {
        self.conn.call(request, tx_id)
    }

    /// Runs `work` outside any transaction over up to [`ClientOptions::connections`]
    /// connections: the client's own, and others opened while the walk has more work than the
    /// open ones have room for, closed when it ends (an idle connection costs the daemon a
    /// little in every turn of its loop, for every client). Replies come back in no particular
    /// order across connections, and watch events only on the client's own. Returns how many
    /// connections the walk used.
    pub(crate) fn run_spread<W: Work>(&mut self, work: &mut W) -> Result<usize, Error> {
        let max = match self.endpoint {
            Endpoint::Socket(_) => self.options.connections.max(1) - 1,
            Endpoint::Xenbus(_) => 0,
        };
        let (endpoint, timeout) = (self.endpoint.clone(), self.options.timeout);
        let mut conns = Vec::new();
        let result = conn::run_over(
            &mut self.conn,
            Some(conn::Extra { conns: &mut conns, max, open: &mut || Conn::open(&endpoint, timeout) }),
            work,
            self.options.window,
            0,
        );
        self.requests_on_extra += conns.iter().map(|c| c.requests_sent).sum::<u64>();
        result.map(|()| 1 + conns.len())
    }

    /// The value at `path`, `None` if the node does not exist.
    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        Transaction { client: self, tx_id: 0 }.read(path)
    }

    /// The children of `path` in the daemon's order, `None` if it does not exist.
    pub fn directory(&mut self, path: &str) -> Result<Option<Vec<String>>, Error> {
        Transaction { client: self, tx_id: 0 }.directory(path)
    }

    pub fn get_perms(&mut self, path: &str) -> Result<Option<Perms>, Error> {
        Transaction { client: self, tx_id: 0 }.get_perms(path)
    }

    /// Writes outside any transaction (creating missing parents).
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        Transaction { client: self, tx_id: 0 }.write(path, value)
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        Transaction { client: self, tx_id: 0 }.mkdir(path)
    }

    /// Removes `path` and its subtree; absent is fine if the parent exists.
    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        Transaction { client: self, tx_id: 0 }.rm(path)
    }

    pub fn set_perms(&mut self, path: &str, perms: &Perms) -> Result<(), Error> {
        Transaction { client: self, tx_id: 0 }.set_perms(path, perms)
    }

    /// Writes many nodes pipelined, outside any transaction: fast, but not atomic (a reader
    /// may see some of them and not others). For bulk loading, e.g. a test store.
    pub fn write_many<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<(), Error> {
        struct Writes<I> {
            pairs: I,
        }
        impl<'a, I: Iterator<Item = (&'a str, &'a [u8])>> Work for Writes<I> {
            type Tag = ();
            fn next_request(&mut self) -> Option<(Op, ())> {
                self.pairs.next().map(|(p, v)| (Op::Write(p.to_string(), v.to_vec()), ()))
            }
            fn on_reply(&mut self, _: (), op: &Op, reply: Reply) -> Result<(), Error> {
                expect_ok(&op.request(), reply).map(drop)
            }
        }
        let window = self.options.window;
        self.conn.run(&mut Writes { pairs: pairs.into_iter() }, window, 0)
    }

    /// Reads many nodes pipelined over the walk's connections (`None` for a missing node), in
    /// the order given. Outside any transaction, so not a consistent view: this is the daemon's
    /// raw read speed.
    pub fn read_many(&mut self, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        struct Reads<'p> {
            paths: std::iter::Enumerate<std::slice::Iter<'p, &'p str>>,
            out: Vec<Option<Vec<u8>>>,
        }
        impl Work for Reads<'_> {
            type Tag = usize;
            fn next_request(&mut self) -> Option<(Op, usize)> {
                self.paths.next().map(|(i, p)| (Op::Read(p.to_string()), i))
            }
            fn on_reply(&mut self, i: usize, op: &Op, reply: Reply) -> Result<(), Error> {
                self.out[i] = optional(&op.request(), reply)?;
                Ok(())
            }
        }
        let mut work = Reads { paths: paths.iter().enumerate(), out: vec![None; paths.len()] };
        self.run_spread(&mut work)?;
        Ok(work.out)
    }

    /// Runs `body` inside a transaction and commits it, starting over (with a fresh
    /// transaction) when the commit gives `EAGAIN` because someone else wrote meanwhile, up to
    /// [`ClientOptions::max_transaction_attempts`] times. `body` must therefore be safe to run
    /// more than once. An error from `body` aborts the transaction and is returned.
    pub fn transaction<T>(
        &mut self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let attempts = self.options.max_transaction_attempts.max(1);
        for _ in 0..attempts {
            let start = Request::TransactionStart;
            let reply = self.call(&start, 0)?;
            let payload = expect_ok(&start, reply)?;
            let tx_id = wire::parse_transaction_id(&payload).map_err(|e| bad_reply(&start, e))?;
            let mut tx = Transaction { client: self, tx_id };
            let value = match body(&mut tx) {
                Ok(v) => v,
                Err(e) => {
                    // Best effort: the daemon also drops the transaction with the connection.
                    let _ = self.call(&Request::TransactionEnd { commit: false }, tx_id);
                    return Err(e);
                }
            };
            let end = Request::TransactionEnd { commit: true };
            match self.call(&end, tx_id)? {
                Ok(_) => return Ok(value),
                Err(Errno::EAGAIN) => continue,
                Err(errno) => return Err(Error::Daemon { request: conn::describe(&end), errno }),
            }
        }
        Err(Error::TooManyRetries { attempts })
    }

    /// The client's own connection.
    pub(crate) fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Requests inside one transaction (or outside any, for the [`Client`] methods).
pub struct Transaction<'a> {
    client: &'a mut Client,
    tx_id: u32,
}

impl Transaction<'_> {
    /// The daemon's transaction id (0 outside a transaction).
    pub fn id(&self) -> u32 {
        self.tx_id
    }

    fn ask(&mut self, request: Request<'_>) -> Result<Option<Vec<u8>>, Error> {
        let reply = self.client.call(&request, self.tx_id)?;
        optional(&request, reply)
    }

    fn order(&mut self, request: Request<'_>) -> Result<(), Error> {
        let reply = self.client.call(&request, self.tx_id)?;
        expect_ok(&request, reply).map(drop)
    }

    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        self.ask(Request::Read(path))
    }

    /// The children of `path` in the daemon's order, `None` if it does not exist. A list too
    /// long for one reply (`E2BIG`) is fetched with `DIRECTORY_PART`, starting over if the
    /// node's generation changes between parts.
    pub fn directory(&mut self, path: &str) -> Result<Option<Vec<String>>, Error> {
        let request = Request::Directory(path);
        match self.client.call(&request, self.tx_id)? {
            Err(Errno::E2BIG) => self.directory_in_parts(path),
            reply => match optional(&request, reply)? {
                None => Ok(None),
                Some(p) => wire::parse_directory(&p).map(Some).map_err(|e| bad_reply(&request, e)),
            },
        }
    }

    fn directory_in_parts(&mut self, path: &str) -> Result<Option<Vec<String>>, Error> {
        let mut children = Vec::new();
        let mut generation: Option<String> = None;
        let mut offset = 0;
        loop {
            let request = Request::DirectoryPart { path, offset };
            let Some(payload) = self.ask(request)? else { return Ok(None) };
            let part = wire::parse_directory_part(&payload).map_err(|e| bad_reply(&request, e))?;
            if generation.as_ref().is_some_and(|g| *g != part.generation) {
                (children, generation, offset) = (Vec::new(), None, 0);
                continue;
            }
            generation = Some(part.generation);
            children.extend(part.children);
            offset += part.list_bytes;
            if part.complete {
                return Ok(Some(children));
            }
        }
    }

    pub fn get_perms(&mut self, path: &str) -> Result<Option<Perms>, Error> {
        let request = Request::GetPerms(path);
        match self.ask(request)? {
            None => Ok(None),
            Some(p) => wire::parse_perms(&p).map(Some).map_err(|e| bad_reply(&request, e)),
        }
    }

    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        self.order(Request::Write { path, value })
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        self.order(Request::Mkdir(path))
    }

    pub fn rm(&mut self, path: &str) -> Result<(), Error> {
        self.order(Request::Rm(path))
    }

    pub fn set_perms(&mut self, path: &str, perms: &Perms) -> Result<(), Error> {
        self.order(Request::SetPerms { path, perms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_follows_libxenstore() {
        let none = |_: &str| None;
        assert_eq!(Endpoint::resolve(none, |_| false), Endpoint::Socket(DEFAULT_SOCKET.into()));
        assert_eq!(
            Endpoint::resolve(none, |p| p == FsPath::new(XENBUS_DEVICE)),
            Endpoint::Xenbus(XENBUS_DEVICE.into())
        );
        assert_eq!(Endpoint::resolve(none, |_| true), Endpoint::Socket(DEFAULT_SOCKET.into()));
        let rundir = |k: &str| (k == "XENSTORED_RUNDIR").then(|| PathBuf::from("/tmp/x"));
        assert_eq!(Endpoint::resolve(rundir, |_| true), Endpoint::Socket("/tmp/x/socket".into()));
        let both = |k: &str| Some(PathBuf::from(if k == "XENSTORED_PATH" { "/s" } else { "/r" }));
        assert_eq!(Endpoint::resolve(both, |_| true), Endpoint::Socket("/s".into()));
    }
}
