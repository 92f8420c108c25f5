//! One blocking connection to xenstored and the pipelining engine on top of it.
//!
//! The engine keeps up to `window` requests in flight. It writes every request it can in one
//! `write`, and reads replies in large chunks, so the client costs the daemon no extra wake-ups.
//! Replies are matched to requests by `req_id`, never by order. Watch events that arrive
//! between replies are parked in [`Conn::take_events`] for the snapshot logic.

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

/// Waits until `fd` is ready for `events` (POLLIN/POLLOUT) or `timeout` passes.
fn wait_ready(fd: RawFd, events: libc::c_short, timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `pfd` is a valid pollfd for the duration of the call, and nfds is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // POLLHUP/POLLERR count as ready: the following read or write reports them.
        return Ok(n > 0);
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

    /// The next reply frame (watch events are parked). Flushes pending requests before it
    /// blocks, and gives up after `timeout` without a byte from the daemon.
    fn recv(&mut self, waiting_for: &dyn Fn() -> String) -> Result<Frame, Error> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) if frame.msg_type == MsgType::WatchEvent => {
                    let event = wire::parse_watch_event(&frame.payload)
                        .map_err(|source| Error::BadReply { request: "WATCH_EVENT".into(), source })?;
                    self.events.push(event);
                    continue;
                }
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(source) => return Err(Error::Protocol { endpoint: self.endpoint.clone(), source }),
            }
            self.flush()?;
            if !wait_ready(self.io.fd(), libc::POLLIN, self.timeout).map_err(|e| self.io_error(e))? {
                return Err(Error::Timeout {
                    endpoint: self.endpoint.clone(),
                    waited: self.timeout,
                    request: Some(waiting_for()),
                });
            }
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
            // Frames are taken one by one above; the iterator is only used to append.
            let buf = &self.read_buf[..n];
            let _ = self.decoder.push(buf);
        }
    }

    /// Runs `work` to completion with at most `window` requests in flight, all in transaction
    /// `tx_id` (0 for none).
    pub(crate) fn run<W: Work>(&mut self, work: &mut W, window: usize, tx_id: u32) -> Result<(), Error> {
        let window = window.max(1);
        let mut in_flight: HashMap<u32, (Op, W::Tag)> = HashMap::with_capacity(window * 2);
        loop {
            while in_flight.len() < window {
                let Some((op, tag)) = work.next_request() else { break };
                let id = self.queue(&op.request(), tx_id)?;
                in_flight.insert(id, (op, tag));
            }
            if in_flight.is_empty() {
                return Ok(());
            }
            let frame = {
                let pending = &in_flight;
                self.recv(&|| describe_oldest(pending))?
            };
            let Some((op, tag)) = in_flight.remove(&frame.req_id) else {
                return Err(Error::UnexpectedReply {
                    endpoint: self.endpoint.clone(),
                    req_id: frame.req_id,
                    msg_type: frame.msg_type,
                });
            };
            let expected = op.request().msg_type();
            let reply = match frame.msg_type {
                MsgType::Error => Err(Errno::from_payload(&frame.payload)),
                t if t == expected => Ok(frame.payload),
                other => {
                    return Err(Error::UnexpectedReply {
                        endpoint: self.endpoint.clone(),
                        req_id: frame.req_id,
                        msg_type: other,
                    })
                }
            };
            work.on_reply(tag, &op, reply)?;
        }
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

pub(crate) fn describe(request: &Request<'_>) -> String {
    match request.path() {
        Some(p) => format!("{} {p}", request.msg_type().name()),
        None => request.msg_type().name().to_string(),
    }
}

fn describe_oldest<T>(in_flight: &HashMap<u32, (Op, T)>) -> String {
    match in_flight.iter().min_by_key(|(id, _)| **id) {
        Some((_, (op, _))) => describe(&op.request()),
        None => "nothing".into(),
    }
}
