//! Blocking connections to xenstored and the pipelining engine on top of them.
//!
//! The engine ([`run_over`]) keeps up to `window` requests in flight on each of one or more
//! connections. It writes every request it can in one `write` per connection, and reads
//! replies in large chunks, so the client costs the daemon no extra wake-ups. Replies are
//! matched to requests by `req_id`, never by order. Watch events that arrive between replies
//! are parked in [`Conn::take_events`] for the snapshot logic.
//!
//! Why several connections: the C xenstored of 4.17 handles at most one request per
//! connection in each turn of its main loop (`handle_input` reads one message, then the loop
//! goes back to `poll`), so a single connection pays a `poll` and a pass over the connection
//! list for every request however deep the pipeline is. With several connections one turn
//! serves one request from each: a flood of 200,000 reads cost the daemon about 11-17 us a
//! request over one connection and about 6-7 us over 12 to 32 connections, and a whole-store
//! snapshot of a 1,000-domain store took 6.5 s over one connection and 4.1 s over 16
//! (`benches/live_snapshot.rs` sweeps both knobs).

use super::{Endpoint, Error};
use crate::wire::{self, Decoder, Errno, Frame, MsgType, Request, WatchEvent};
use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The byte stream under a connection: the daemon's Unix socket or the xenbus device.
enum Transport {
    Socket(UnixStream),
    Device(File),
}

impl Transport {
    fn fd(&self) -> RawFd {
        match self {
            Transport::Socket(s) => s.as_raw_fd(),
            Transport::Device(f) => f.as_raw_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Socket(s) => s.read(buf),
            Transport::Device(f) => f.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Socket(s) => s.write(buf),
            Transport::Device(f) => f.write(buf),
        }
    }
}

/// Waits until one of `pfds` is readable or `timeout` passes; their `revents` say which are
/// (POLLHUP and POLLERR count: the following read reports them). `false` on a timeout.
fn wait_readable(pfds: &mut [libc::pollfd], timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    for p in pfds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfds` holds `pfds.len()` valid pollfds for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(n > 0);
    }
}

/// A pollfd for `fd`, to be armed by [`wait_readable`].
fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: 0, revents: 0 }
}

/// What a request got back: the reply payload, or the errno of an `ERROR` reply.
pub(crate) type Reply = Result<Vec<u8>, Errno>;

/// An owned request, for queues of work that outlive the borrowed [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Read(String),
    GetPerms(String),
    Directory(String),
    DirectoryPart(String, u32),
    Watch(String, String),
    Unwatch(String, String),
    Write(String, Vec<u8>),
}

impl Op {
    pub(crate) fn request(&self) -> Request<'_> {
        match self {
            Op::Read(p) => Request::Read(p),
            Op::GetPerms(p) => Request::GetPerms(p),
            Op::Directory(p) => Request::Directory(p),
            Op::DirectoryPart(p, offset) => Request::DirectoryPart { path: p, offset: *offset },
            Op::Watch(p, t) => Request::Watch { path: p, token: t },
            Op::Unwatch(p, t) => Request::Unwatch { path: p, token: t },
            Op::Write(p, v) => Request::Write { path: p, value: v },
        }
    }
}

/// A source of pipelined work: it hands out requests and consumes their replies, which may
/// create more requests (a `DIRECTORY` reply names children to read).
pub(crate) trait Work {
    type Tag;
    /// The next request to send, with the tag its reply will be handed back with.
    fn next_request(&mut self) -> Option<(Op, Self::Tag)>;
    /// Consumes the reply to the request sent with `tag`.
    fn on_reply(&mut self, tag: Self::Tag, op: &Op, reply: Reply) -> Result<(), Error>;
}

/// One open connection.
pub(crate) struct Conn {
    io: Transport,
    endpoint: Endpoint,
    decoder: Decoder,
    out: Vec<u8>,
    read_buf: Box<[u8]>,
    next_req_id: u32,
    timeout: Duration,
    events: Vec<WatchEvent>,
    /// Requests sent over this connection's lifetime.
    pub(crate) requests_sent: u64,
}

impl Conn {
    pub(crate) fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Conn, Error> {
        let io = match endpoint {
            Endpoint::Socket(path) => Transport::Socket(
                UnixStream::connect(path).map_err(|source| Error::Connect { endpoint: endpoint.clone(), source })?,
            ),
            Endpoint::Xenbus(path) => Transport::Device(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|source| Error::Connect { endpoint: endpoint.clone(), source })?,
            ),
        };
        let mut conn = Conn {
            io,
            endpoint: endpoint.clone(),
            decoder: Decoder::new(),
            out: Vec::with_capacity(64 * 1024),
            read_buf: vec![0; 256 * 1024].into_boxed_slice(),
            next_req_id: 1,
            timeout,
            events: Vec::new(),
            requests_sent: 0,
        };
        conn.set_timeout(timeout)?;
        Ok(conn)
    }

    pub(crate) fn set_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.timeout = timeout;
        if let Transport::Socket(s) = &self.io {
            s.set_write_timeout(Some(timeout)).map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    /// Watch events received so far and not yet taken.
    pub(crate) fn take_events(&mut self) -> Vec<WatchEvent> {
        std::mem::take(&mut self.events)
    }

    /// Encodes a request into the send buffer and returns its `req_id`.
    fn queue(&mut self, request: &Request<'_>, tx_id: u32) -> Result<u32, Error> {
        let req_id = self.next_req_id;
        // 0 is what watch events carry; never use it for a request.
        self.next_req_id = self.next_req_id.checked_add(1).unwrap_or(1);
        wire::encode(request, req_id, tx_id, &mut self.out)
            .map_err(|source| Error::Encode { path: request.path().unwrap_or("").to_string(), source })?;
        self.requests_sent += 1;
        Ok(req_id)
    }

    fn flush(&mut self) -> Result<(), Error> {
        let mut done = 0;
        while done < self.out.len() {
            match self.io.write(&self.out[done..]) {
                Ok(0) => return Err(self.disconnected("the daemon stopped accepting data")),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The socket's write timeout expired: the daemon took nothing for that long.
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return Err(Error::Timeout {
                        endpoint: self.endpoint.clone(),
                        waited: self.timeout,
                        request: None,
                    });
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
        self.out.clear();
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        match e.kind() {
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
                self.disconnected(&e.to_string())
            }
            _ => Error::Io { endpoint: self.endpoint.clone(), source: e },
        }
    }

    fn disconnected(&self, detail: &str) -> Error {
        Error::Disconnected { endpoint: self.endpoint.clone(), detail: detail.to_string() }
    }

    /// The next reply frame already received, if any (watch events on the way are parked).
    fn buffered_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) if frame.msg_type == MsgType::WatchEvent => {
                    let event = wire::parse_watch_event(&frame.payload)
                        .map_err(|source| Error::BadReply { request: "WATCH_EVENT".into(), source })?;
                    self.events.push(event);
                }
                Ok(frame) => return Ok(frame),
                Err(source) => return Err(Error::Protocol { endpoint: self.endpoint.clone(), source }),
            }
        }
    }

    /// One read of whatever the daemon has sent (blocks until something comes).
    fn fill(&mut self) -> Result<(), Error> {
        let n = loop {
            match self.io.read(&mut self.read_buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        };
        if n == 0 {
            return Err(self.disconnected("the daemon closed the connection"));
        }
        // Frames are taken one by one in `buffered_frame`; the iterator is only used to append.
        let _ = self.decoder.push(&self.read_buf[..n]);
        Ok(())
    }

    fn timeout_error(&self, request: String) -> Error {
        Error::Timeout { endpoint: self.endpoint.clone(), waited: self.timeout, request: Some(request) }
    }

    /// The next reply frame (watch events are parked). Flushes pending requests before it
    /// blocks, and gives up after `timeout` without a byte from the daemon.
    fn recv(&mut self, waiting_for: &dyn Fn() -> String) -> Result<Frame, Error> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.flush()?;
            if !wait_readable(&mut [pollfd(self.io.fd())], self.timeout).map_err(|e| self.io_error(e))? {
                return Err(self.timeout_error(waiting_for()));
            }
            self.fill()?;
        }
    }

    /// Runs `work` to completion on this connection alone (see [`run_over`]).
    pub(crate) fn run<W: Work>(&mut self, work: &mut W, window: usize, tx_id: u32) -> Result<(), Error> {
        run_over(self, None, work, window, tx_id)
    }

    /// `frame` as the answer to a request of type `expected` (`None`: no request has its
    /// `req_id`): the payload, the errno of an `ERROR`, or a protocol error.
    fn reply(&self, frame: Frame, expected: Option<MsgType>) -> Result<Reply, Error> {
        match (frame.msg_type, expected) {
            (MsgType::Error, Some(_)) => Ok(Err(Errno::from_payload(&frame.payload))),
            (t, Some(e)) if t == e => Ok(Ok(frame.payload)),
            (msg_type, _) => {
                Err(Error::UnexpectedReply { endpoint: self.endpoint.clone(), req_id: frame.req_id, msg_type })
            }
        }
    }

    /// Hands `frame` to the request it answers.
    fn dispatch<W: Work>(&self, frame: Frame, in_flight: &mut InFlight<W::Tag>, work: &mut W) -> Result<(), Error> {
        let Some((op, tag)) = in_flight.remove(&frame.req_id) else {
            return self.reply(frame, None).map(drop);
        };
        let reply = self.reply(frame, Some(op.request().msg_type()))?;
        work.on_reply(tag, &op, reply)
    }

    /// Sends one request and waits for its reply (watch events that arrive meanwhile are parked).
    pub(crate) fn call(&mut self, request: &Request<'_>, tx_id: u32) -> Result<Reply, Error> {
        let id = self.queue(request, tx_id)?;
        let what = describe(request);
        let frame = self.recv(&|| what.clone())?;
        let expected = (frame.req_id == id).then(|| request.msg_type());
        self.reply(frame, expected)
    }
}

/// Requests sent on one connection and not yet answered, by `req_id`.
type InFlight<T> = HashMap<u32, (Op, T)>;

/// Connections a walk may add to its first one: up to `max` more, made by `open`.
pub(crate) struct Extra<'a> {
    pub conns: &'a mut Vec<Conn>,
    pub max: usize,
    pub open: &'a mut dyn FnMut() -> Result<Conn, Error>,
}

/// Connection `i` of a walk: the first, then the extra ones.
fn nth<'a>(first: &'a mut Conn, extra: &'a mut [Conn], i: usize) -> &'a mut Conn {
    if i == 0 {
        first
    } else {
        &mut extra[i - 1]
    }
}

/// Runs `work` to completion over `first` and, when given, extra connections, with at most
/// `window` requests in flight on each, all in transaction `tx_id` (0 for none; a transaction
/// lives on one connection, so give no extra ones). While every connection is full and `work`
/// has more, another connection is opened, up to the extra's `max`; if one cannot be opened,
/// the walk goes on over those it has.
///
/// Work goes to whichever connection has room, so replies to one piece of work may come back
/// on any of them; `work` must not depend on their order. Watch events are parked on the
/// connection they arrive on. The daemon keeps each connection's requests in order, but not
/// the order between connections: a caller that needs "everything before X has been handled"
/// must wait for every reply here, then send X.
pub(crate) fn run_over<W: Work>(
    first: &mut Conn,
    extra: Option<Extra<'_>>,
    work: &mut W,
    window: usize,
    tx_id: u32,
) -> Result<(), Error> {
    let window = window.max(1);
    let mut spare: Vec<Conn> = Vec::new();
    let (extra_conns, max_extra, mut open) = match extra {
        Some(Extra { conns, max, open }) => (conns, max, Some(open)),
        None => (&mut spare, 0, None),
    };
    let mut in_flight: Vec<InFlight<W::Tag>> =
        (0..=extra_conns.len()).map(|_| HashMap::with_capacity(window * 2)).collect();
    // Reused by every wait: which connections have requests pending, and their pollfds.
    let mut waiting: Vec<usize> = Vec::new();
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut next = work.next_request();
    loop {
        // Hand out work while a connection has room (opening one if allowed), then send each
        // connection's share.
        let mut i = 0;
        while next.is_some() {
            if i == in_flight.len() {
                match open.as_mut().filter(|_| extra_conns.len() < max_extra) {
                    Some(opener) => match opener() {
                        Ok(conn) => extra_conns.push(conn),
                        // A daemon that takes no more connections: go on with those open.
                        Err(_) => {
                            open = None;
                            break;
                        }
                    },
                    None => break,
                }
                in_flight.push(HashMap::with_capacity(window * 2));
            }
            let conn = nth(first, extra_conns, i);
            while in_flight[i].len() < window {
                let Some((op, tag)) = next.take() else { break };
                let id = conn.queue(&op.request(), tx_id)?;
                in_flight[i].insert(id, (op, tag));
                next = work.next_request();
            }
            i += 1;
        }
        for i in 0..in_flight.len() {
            nth(first, extra_conns, i).flush()?;
        }
        if in_flight.iter().all(HashMap::is_empty) {
            return Ok(());
        }
        // Consume every reply already received; wait for more only when there is none.
        let mut answered = false;
        for (i, pending) in in_flight.iter_mut().enumerate() {
            let conn = nth(first, extra_conns, i);
            while let Some(frame) = conn.buffered_frame()? {
                conn.dispatch(frame, pending, work)?;
                answered = true;
            }
        }
        if answered {
            if next.is_none() {
                next = work.next_request();
            }
            continue;
        }
        waiting.clear();
        waiting.extend((0..in_flight.len()).filter(|&i| !in_flight[i].is_empty()));
        pfds.clear();
        pfds.extend(waiting.iter().map(|&i| pollfd(nth(first, extra_conns, i).io.fd())));
        let conn = nth(first, extra_conns, waiting[0]);
        if !wait_readable(&mut pfds, conn.timeout).map_err(|e| conn.io_error(e))? {
            return Err(conn.timeout_error(describe_oldest(&in_flight[waiting[0]])));
        }
        for (&i, p) in waiting.iter().zip(&pfds) {
            if p.revents != 0 {
                nth(first, extra_conns, i).fill()?;
            }
        }
    }
}

pub(crate) fn describe(request: &Request<'_>) -> String {
    match request.path() {
        Some(p) => format!("{} {p}", request.msg_type().name()),
        None => request.msg_type().name().to_string(),
    }
}

fn describe_oldest<T>(in_flight: &InFlight<T>) -> String {
    match in_flight.iter().min_by_key(|(id, _)| **id) {
        Some((_, (op, _))) => describe(&op.request()),
        None => "nothing".into(),
    }
}
