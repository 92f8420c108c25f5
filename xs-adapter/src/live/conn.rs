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

/// Waits until one of `fds` is readable or `timeout` passes, and says which are. POLLHUP and
/// POLLERR count as readable: the following read reports them.
fn wait_readable(fds: &[RawFd], timeout: Duration) -> std::io::Result<Vec<bool>> {
    let deadline = Instant::now() + timeout;
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
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
        return Ok(pfds.iter().map(|p| p.revents != 0).collect());
    }
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
            if !wait_readable(&[self.io.fd()], self.timeout).map_err(|e| self.io_error(e))?[0] {
                return Err(self.timeout_error(waiting_for()));
            }
            self.fill()?;
        }
    }

    /// Runs `work` to completion on this connection alone (see [`run_over`]).
    pub(crate) fn run<W: Work>(&mut self, work: &mut W, window: usize, tx_id: u32) -> Result<(), Error> {
        run_over(self, None, work, window, tx_id)
    }

    /// Hands `frame` to the request it answers.
    fn dispatch<W: Work>(&self, frame: Frame, in_flight: &mut InFlight<W::Tag>, work: &mut W) -> Result<(), Error> {
        let unexpected =
            |msg_type| Error::UnexpectedReply { endpoint: self.endpoint.clone(), req_id: frame.req_id, msg_type };
        let Some((op, tag)) = in_flight.remove(&frame.req_id) else {
            return Err(unexpected(frame.msg_type));
        };
        let reply = match frame.msg_type {
            MsgType::Error => Err(Errno::from_payload(&frame.payload)),
            t if t == op.request().msg_type() => Ok(frame.payload),
            other => return Err(unexpected(other)),
        };
        work.on_reply(tag, &op, reply)
    }

    /// Sends one request and waits for its reply (watch events that arrive meanwhile are parked).
    pub(crate) fn call(&mut self, request: &Request<'_>, tx_id: u32) -> Result<Reply, Error> {
        let id = self.queue(request, tx_id)?;
        let what = describe(request);
        let frame = self.recv(&|| what.clone())?;
        if frame.req_id != id {
            return Err(Error::UnexpectedReply {
                endpoint: self.endpoint.clone(),
                req_id: frame.req_id,
                msg_type: frame.msg_type,
            });
        }
        match frame.msg_type {
            MsgType::Error => Ok(Err(Errno::from_payload(&frame.payload))),
            t if t == request.msg_type() => Ok(Ok(frame.payload)),
            other => {
                Err(Error::UnexpectedReply { endpoint: self.endpoint.clone(), req_id: frame.req_id, msg_type: other })
            }
        }
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
        let waiting: Vec<usize> = (0..in_flight.len()).filter(|&i| !in_flight[i].is_empty()).collect();
        let fds: Vec<RawFd> = waiting.iter().map(|&i| nth(first, extra_conns, i).io.fd()).collect();
        let ready = {
            let conn = nth(first, extra_conns, waiting[0]);
            let ready = wait_readable(&fds, conn.timeout).map_err(|e| conn.io_error(e))?;
            if !ready.contains(&true) {
                return Err(conn.timeout_error(describe_oldest(&in_flight[waiting[0]])));
            }
            ready
        };
        for (&i, _) in waiting.iter().zip(&ready).filter(|(_, &r)| r) {
            nth(first, extra_conns, i).fill()?;
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
