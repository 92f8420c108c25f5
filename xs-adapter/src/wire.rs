//! A sans-IO codec of xenstore's wire protocol (`xen/include/public/io/xs_wire.h`,
//! `docs/misc/xenstore.txt`).
//!
//! Every message, in both directions, is a 16-byte header `{type, req_id, tx_id, len}` of
//! native-endian `u32`s followed by `len` bytes of payload, at most [`PAYLOAD_MAX`]. Payloads are
//! NUL-terminated strings, except a value (`WRITE`'s second part, `READ`'s reply), which is raw
//! bytes. The daemon copies `req_id` and `tx_id` from a request into its reply, so a client may
//! have many requests in flight and match replies by `req_id`. A failed request is answered with
//! type `ERROR` and an errno name (`"ENOENT\0"`). Watch events arrive unsolicited with
//! `req_id = 0`.
//!
//! Nothing here does IO: [`encode`] appends a request's bytes to a buffer, and [`Decoder`] turns
//! whatever bytes arrived into [`Frame`]s. Decoding never panics, whatever the bytes; a stream
//! that violates the framing gives a [`WireError`] (the connection is then out of sync and must
//! be dropped).

use merge_core::xenstore::{Access, Perm, Perms};

/// Size of the message header.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`: the daemon kills a connection that sends a longer payload.
pub const PAYLOAD_MAX: usize = 4096;

macro_rules! msg_types {
    ($($variant:ident = $num:literal, $name:literal;)*) => {
        /// A message type (`enum xsd_sockmsg_type`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MsgType {
            $($variant,)*
        }

        impl MsgType {
            /// Every type, with its wire number and the name xenstored's logs use.
            pub const TABLE: &'static [(MsgType, u32, &'static str)] = &[
                $((MsgType::$variant, $num, $name),)*
            ];
        }
    };
}

msg_types! {
    Control = 0, "CONTROL";
    Directory = 1, "DIRECTORY";
    Read = 2, "READ";
    GetPerms = 3, "GET_PERMS";
    Watch = 4, "WATCH";
    Unwatch = 5, "UNWATCH";
    TransactionStart = 6, "TRANSACTION_START";
    TransactionEnd = 7, "TRANSACTION_END";
    Introduce = 8, "INTRODUCE";
    Release = 9, "RELEASE";
    GetDomainPath = 10, "GET_DOMAIN_PATH";
    Write = 11, "WRITE";
    Mkdir = 12, "MKDIR";
    Rm = 13, "RM";
    SetPerms = 14, "SET_PERMS";
    WatchEvent = 15, "WATCH_EVENT";
    Error = 16, "ERROR";
    IsDomainIntroduced = 17, "IS_DOMAIN_INTRODUCED";
    Resume = 18, "RESUME";
    SetTarget = 19, "SET_TARGET";
    ResetWatches = 21, "RESET_WATCHES";
    DirectoryPart = 22, "DIRECTORY_PART";
}

impl MsgType {
    /// The wire number.
    pub fn number(self) -> u32 {
        Self::TABLE.iter().find(|(t, _, _)| *t == self).map_or(u32::MAX, |e| e.1)
    }

    /// The type with wire number `n`, if there is one.
    pub fn from_number(n: u32) -> Option<MsgType> {
        Self::TABLE.iter().find(|e| e.1 == n).map(|e| e.0)
    }

    /// `"READ"`, `"DIRECTORY_PART"` …
    pub fn name(self) -> &'static str {
        Self::TABLE.iter().find(|(t, _, _)| *t == self).map_or("?", |e| e.2)
    }
}

macro_rules! errnos {
    ($($variant:ident,)*) => {
        /// An errno name carried by an `ERROR` reply (the `xsd_errors` table of `xs_wire.h`, in
        /// its order), or any other string the daemon sent.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Errno {
            $($variant,)*
            /// A name that is not in `xs_wire.h`'s table.
            Other(String),
        }

        impl Errno {
            const TABLE: &'static [(Errno, &'static str)] = &[$((Errno::$variant, stringify!($variant)),)*];
        }
    };
}

errnos! {
    EINVAL, EACCES, EEXIST, EISDIR, ENOENT, ENOMEM, ENOSPC, EIO, ENOTEMPTY, ENOSYS, EROFS, EBUSY,
    EAGAIN, EISCONN, E2BIG, EPERM,
}

impl Errno {
    /// Parses an `ERROR` payload (`"ENOENT\0"`).
    pub fn from_payload(payload: &[u8]) -> Errno {
        let name = first_string(payload);
        let name = String::from_utf8_lossy(name);
        Self::TABLE.iter().find(|(_, n)| *n == name).map_or_else(|| Errno::Other(name.into_owned()), |e| e.0.clone())
    }

    /// The errno's name as sent on the wire.
    pub fn name(&self) -> &str {
        match self {
            Errno::Other(s) => s,
            known => Self::TABLE.iter().find(|(e, _)| e == known).map_or("?", |e| e.1),
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes cannot be framed or a request cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A header announced a payload longer than [`PAYLOAD_MAX`]; the stream is out of sync.
    #[error("message at stream offset {offset} announces a {len}-byte payload, over the {PAYLOAD_MAX}-byte limit")]
    PayloadTooLong { offset: u64, len: u32 },
    /// A header carried a type number that `xs_wire.h` does not define.
    #[error("message at stream offset {offset} has unknown type {number}")]
    UnknownType { offset: u64, number: u32 },
    /// A request would exceed [`PAYLOAD_MAX`]; sending it would get the connection killed.
    #[error("{msg_type:?} request payload is {len} bytes, over the {PAYLOAD_MAX}-byte limit")]
    RequestTooLong { msg_type: MsgType, len: usize },
    /// A string argument of a request contains a NUL byte.
    #[error("{msg_type:?} request argument contains a NUL byte")]
    NulInArgument { msg_type: MsgType },
}

/// One message as it travels: a header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub msg_type: MsgType,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        push_header(out, self.msg_type, self.req_id, self.tx_id, self.payload.len());
        out.extend_from_slice(&self.payload);
    }
}

fn push_header(out: &mut Vec<u8>, msg_type: MsgType, req_id: u32, tx_id: u32, len: usize) {
    out.extend_from_slice(&msg_type.number().to_ne_bytes());
    out.extend_from_slice(&req_id.to_ne_bytes());
    out.extend_from_slice(&tx_id.to_ne_bytes());
    out.extend_from_slice(&(len as u32).to_ne_bytes());
}

/// A request a client sends. Paths are given as text; the daemon validates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Read(&'a str),
    Directory(&'a str),
    /// The children of `path` from byte `offset` of its NUL-separated child list.
    DirectoryPart {
        path: &'a str,
        offset: u32,
    },
    GetPerms(&'a str),
    Watch {
        path: &'a str,
        token: &'a str,
    },
    Unwatch {
        path: &'a str,
        token: &'a str,
    },
    TransactionStart,
    /// `commit = false` discards the transaction.
    TransactionEnd {
        commit: bool,
    },
    Write {
        path: &'a str,
        value: &'a [u8],
    },
    Mkdir(&'a str),
    Rm(&'a str),
    SetPerms {
        path: &'a str,
        perms: &'a Perms,
    },
    GetDomainPath(u32),
}

impl Request<'_> {
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Read(_) => MsgType::Read,
            Request::Directory(_) => MsgType::Directory,
            Request::DirectoryPart { .. } => MsgType::DirectoryPart,
            Request::GetPerms(_) => MsgType::GetPerms,
            Request::Watch { .. } => MsgType::Watch,
            Request::Unwatch { .. } => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd { .. } => MsgType::TransactionEnd,
            Request::Write { .. } => MsgType::Write,
            Request::Mkdir(_) => MsgType::Mkdir,
            Request::Rm(_) => MsgType::Rm,
            Request::SetPerms { .. } => MsgType::SetPerms,
            Request::GetDomainPath(_) => MsgType::GetDomainPath,
        }
    }

    /// The path the request is about, if any (for error messages).
    pub fn path(&self) -> Option<&str> {
        match *self {
            Request::Read(p)
            | Request::Directory(p)
            | Request::DirectoryPart { path: p, .. }
            | Request::GetPerms(p)
            | Request::Watch { path: p, .. }
            | Request::Unwatch { path: p, .. }
            | Request::Write { path: p, .. }
            | Request::Mkdir(p)
            | Request::Rm(p)
            | Request::SetPerms { path: p, .. } => Some(p),
            Request::TransactionStart | Request::TransactionEnd { .. } | Request::GetDomainPath(_) => None,
        }
    }

    fn payload(&self, out: &mut Vec<u8>) {
        fn s(out: &mut Vec<u8>, text: &str) {
            out.extend_from_slice(text.as_bytes());
            out.push(0);
        }
        match *self {
            Request::Read(p) | Request::Directory(p) | Request::GetPerms(p) | Request::Mkdir(p) | Request::Rm(p) => {
                s(out, p)
            }
            Request::DirectoryPart { path, offset } => {
                s(out, path);
                s(out, &offset.to_string());
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                s(out, path);
                s(out, token);
            }
            // "It is not legal to send non-0 tx_id in TRANSACTION_START"; the payload is one
            // empty (reserved) string.
            Request::TransactionStart => out.push(0),
            Request::TransactionEnd { commit } => s(out, if commit { "T" } else { "F" }),
            Request::Write { path, value } => {
                s(out, path);
                out.extend_from_slice(value);
            }
            Request::SetPerms { path, perms } => {
                s(out, path);
                for p in perms.entries() {
                    s(out, &format!("{}{}", p.access.letter(), p.domid));
                }
            }
            Request::GetDomainPath(domid) => s(out, &domid.to_string()),
        }
    }

    fn string_args(&self) -> impl Iterator<Item = &str> {
        let (a, b) = match *self {
            Request::Watch { path, token } | Request::Unwatch { path, token } => (Some(path), Some(token)),
            _ => (self.path(), None),
        };
        a.into_iter().chain(b)
    }
}

/// Appends the bytes of `request` (header and payload) to `out`.
///
/// Fails, leaving `out` as it was, when the payload would exceed [`PAYLOAD_MAX`] or a string
/// argument contains a NUL byte: the first would get the connection killed, the second would
/// change the request's meaning.
pub fn encode(request: &Request<'_>, req_id: u32, tx_id: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
    let msg_type = request.msg_type();
    if request.string_args().any(|a| a.as_bytes().contains(&0)) {
        return Err(WireError::NulInArgument { msg_type });
    }
    let start = out.len();
    push_header(out, msg_type, req_id, tx_id, 0);
    request.payload(out);
    let len = out.len() - start - HEADER_LEN;
    if len > PAYLOAD_MAX {
        out.truncate(start);
        return Err(WireError::RequestTooLong { msg_type, len });
    }
    out[start + 12..start + 16].copy_from_slice(&(len as u32).to_ne_bytes());
    Ok(())
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces.
///
/// Feed it with [`Decoder::push`] and drain the frames that became complete. After an error the
/// stream is out of sync: every later call returns the same error.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]`, for error messages.
    consumed: u64,
    failed: Option<WireError>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Adds received bytes and returns an iterator over the frames now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Frames<'_> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        Frames { decoder: self, done: false }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = &self.buf[self.start..];
        if rest.len() < HEADER_LEN {
            return Ok(None);
        }
        let word = |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (number, req_id, tx_id, len) = (word(0), word(4), word(8), word(12));
        let offset = self.consumed;
        if len as usize > PAYLOAD_MAX {
            return Err(self.fail(WireError::PayloadTooLong { offset, len }));
        }
        let Some(msg_type) = MsgType::from_number(number) else {
            return Err(self.fail(WireError::UnknownType { offset, number }));
        };
        let total = HEADER_LEN + len as usize;
        if rest.len() < total {
            return Ok(None);
        }
        let payload = rest[HEADER_LEN..total].to_vec();
        self.start += total;
        self.consumed += total as u64;
        Ok(Some(Frame { msg_type, req_id, tx_id, payload }))
    }

    /// Bytes received but not yet part of a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.failed = Some(e.clone());
        e
    }
}

/// The frames completed by one [`Decoder::push`]; yields an error at most once, then stops.
pub struct Frames<'a> {
    decoder: &'a mut Decoder,
    done: bool,
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.decoder.next_frame() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Decodes every complete frame of `bytes`, returning them and the number of bytes they used
/// (the rest is an incomplete frame). A pure convenience over [`Decoder`].
pub fn decode(bytes: &[u8]) -> Result<(Vec<Frame>, usize), WireError> {
    let mut d = Decoder::new();
    let mut frames = Vec::new();
    for f in d.push(bytes) {
        frames.push(f?);
    }
    let used = bytes.len() - d.buffered();
    Ok((frames, used))
}

/// The NUL-terminated strings of a payload. A trailing piece without its NUL counts as a string
/// too (the daemon always terminates, but hostile bytes need not).
pub fn strings(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    let empty = payload.is_empty();
    body.split(|&b| b == 0).filter(move |_| !empty)
}

fn first_string(payload: &[u8]) -> &[u8] {
    strings(payload).next().unwrap_or(&[])
}

/// Why a reply payload cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{what} is not valid: {text:?}")]
    Malformed { what: &'static str, text: String },
}

fn malformed(what: &'static str, bytes: &[u8]) -> ReplyError {
    ReplyError::Malformed { what, text: String::from_utf8_lossy(bytes).into_owned() }
}

/// The child names of a `DIRECTORY` reply, in the daemon's order (creation order).
pub fn parse_directory(payload: &[u8]) -> Result<Vec<String>, ReplyError> {
    strings(payload).map(|s| String::from_utf8(s.to_vec()).map_err(|_| malformed("child name", s))).collect()
}

/// One chunk of a `DIRECTORY_PART` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPart {
    /// The node's generation count: equal counts across chunks mean the list did not change.
    pub generation: String,
    pub children: Vec<String>,
    /// Bytes of the child list this chunk covers (the next request's offset grows by it).
    pub list_bytes: u32,
    /// Whether this chunk ends the list (the daemon marks the end with an empty string).
    pub complete: bool,
}

/// Parses `<gencnt>|<child>|*`, where the last chunk ends with an extra NUL.
pub fn parse_directory_part(payload: &[u8]) -> Result<DirectoryPart, ReplyError> {
    let Some(gen_end) = payload.iter().position(|&b| b == 0) else {
        return Err(malformed("DIRECTORY_PART generation", payload));
    };
    let generation = &payload[..gen_end];
    if generation.is_empty() || !generation.iter().all(u8::is_ascii_digit) {
        return Err(malformed("DIRECTORY_PART generation", generation));
    }
    let mut list = &payload[gen_end + 1..];
    let complete = list.is_empty() || list.ends_with(&[0, 0]) || list == [0];
    if complete {
        list = &list[..list.len().saturating_sub(1)];
    }
    let children = parse_directory(list)?;
    Ok(DirectoryPart {
        generation: String::from_utf8_lossy(generation).into_owned(),
        children,
        list_bytes: list.len() as u32,
        complete,
    })
}

/// Parses a `GET_PERMS` reply (`"n0\0r3\0"`).
pub fn parse_perms(payload: &[u8]) -> Result<Perms, ReplyError> {
    let mut entries = Vec::new();
    for s in strings(payload) {
        let text = std::str::from_utf8(s).map_err(|_| malformed("permission", s))?;
        let mut chars = text.chars();
        let access = chars.next().and_then(Access::from_letter).ok_or_else(|| malformed("permission", s))?;
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("permission", s));
        }
        let domid = digits.parse().map_err(|_| malformed("permission", s))?;
        entries.push(Perm { access, domid });
    }
    Perms::new(entries).ok_or_else(|| malformed("permission list", payload))
}

/// A `WATCH_EVENT`: the path that changed and the token of the watch it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// Parses `<epath>|<token>|`.
pub fn parse_watch_event(payload: &[u8]) -> Result<WatchEvent, ReplyError> {
    let mut it = strings(payload);
    let (Some(path), Some(token)) = (it.next(), it.next()) else {
        return Err(malformed("WATCH_EVENT", payload));
    };
    Ok(WatchEvent {
        path: String::from_utf8(path.to_vec()).map_err(|_| malformed("WATCH_EVENT path", path))?,
        token: String::from_utf8_lossy(token).into_owned(),
    })
}

/// Parses the decimal transaction id of a `TRANSACTION_START` reply.
pub fn parse_transaction_id(payload: &[u8]) -> Result<u32, ReplyError> {
    let s = first_string(payload);
    std::str::from_utf8(s).ok().and_then(|t| t.parse().ok()).ok_or_else(|| malformed("transaction id", s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_xs_wire_h() {
        assert_eq!(MsgType::Read.number(), 2);
        assert_eq!(MsgType::WatchEvent.number(), 15);
        assert_eq!(MsgType::Error.number(), 16);
        assert_eq!(MsgType::ResetWatches.number(), 21);
        assert_eq!(MsgType::DirectoryPart.number(), 22);
        assert_eq!(MsgType::from_number(20), None);
        for (t, n, name) in MsgType::TABLE {
            assert_eq!(MsgType::from_number(*n), Some(*t));
            assert_eq!(t.name(), *name);
        }
    }

    #[test]
    fn request_round_trip() {
        let mut out = Vec::new();
        encode(&Request::Write { path: "/a/b", value: b"x\0y" }, 7, 3, &mut out).unwrap();
        let (frames, used) = decode(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(
            frames,
            vec![Frame { msg_type: MsgType::Write, req_id: 7, tx_id: 3, payload: b"/a/b\0x\0y".to_vec() }]
        );
    }

    #[test]
    fn rejects_oversized_and_nul_requests() {
        let mut out = vec![1];
        let long = "a".repeat(PAYLOAD_MAX);
        assert!(matches!(encode(&Request::Read(&long), 1, 0, &mut out), Err(WireError::RequestTooLong { .. })));
        assert_eq!(out, vec![1]);
        assert!(matches!(encode(&Request::Read("/a\0b"), 1, 0, &mut out), Err(WireError::NulInArgument { .. })));
    }

    #[test]
    fn decoder_reassembles_split_frames() {
        let mut bytes = Vec::new();
        for i in 0..3 {
            encode(&Request::Read("/local/domain/0/name"), i, 0, &mut bytes).unwrap();
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for chunk in bytes.chunks(5) {
            got.extend(d.push(chunk).map(Result::unwrap));
        }
        assert_eq!(got.iter().map(|f| f.req_id).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decoder_refuses_a_long_payload_for_good() {
        let mut d = Decoder::new();
        let mut h = Vec::new();
        push_header(&mut h, MsgType::Read, 1, 0, PAYLOAD_MAX + 1);
        assert!(matches!(d.push(&h).next(), Some(Err(WireError::PayloadTooLong { len: 4097, .. }))));
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn reply_payloads() {
        assert_eq!(Errno::from_payload(b"ENOENT\0"), Errno::ENOENT);
        assert_eq!(Errno::from_payload(b"EWEIRD\0"), Errno::Other("EWEIRD".into()));
        assert_eq!(parse_directory(b"a\0bb\0").unwrap(), vec!["a", "bb"]);
        assert!(parse_directory(b"").unwrap().is_empty());
        let part = parse_directory_part(b"17\0a\0b\0\0").unwrap();
        assert_eq!((part.generation.as_str(), part.children.len(), part.complete), ("17", 2, true));
        let part = parse_directory_part(b"17\0a\0b\0").unwrap();
        assert_eq!((part.list_bytes, part.complete), (4, false));
        let end = parse_directory_part(b"17\0\0").unwrap();
        assert!(end.complete && end.children.is_empty());
        assert_eq!(parse_perms(b"n0\0r3\0").unwrap().to_xs_string(), "n0,r3");
        assert!(parse_perms(b"x0\0").is_err());
        assert_eq!(parse_watch_event(b"/a/b\0tok\0").unwrap().token, "tok");
        assert_eq!(parse_transaction_id(b"42\0").unwrap(), 42);
    }
}
