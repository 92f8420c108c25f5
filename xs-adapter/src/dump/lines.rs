//! Splitting the input into lines, and lenient mode's repairs of transport damage (mail quote
//! prefixes, pastebin line markers, shell prompts, stderr mixed in, flowed wraps) before any
//! format is parsed.

use super::error::{Repair, RepairKind, Warning, WarningKind};
use std::borrow::Cow;

/// One logical line: its 1-based number in the original input, how many bytes of the
/// original line were stripped before `text` (so that columns stay those of the input), and
/// the text without its line end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub no: usize,
    pub col0: usize,
    pub text: &'a [u8],
    /// Where `text` starts in the input, for a line read as it is (strict mode); a line
    /// rebuilt by lenient repairs has none.
    pub offset: Option<usize>,
}

impl Line<'_> {
    /// The 1-based column of byte `offset` of `text` in the original line.
    pub(crate) fn column(&self, offset: usize) -> usize {
        self.col0 + offset + 1
    }
}

/// The lines of `input` exactly as they are (strict mode). A final line end does not start
/// another line.
pub(crate) fn raw_lines(input: &[u8]) -> impl Iterator<Item = Line<'_>> + Clone {
    raw_lines_after(input, 0, 0)
}

/// [`raw_lines`] of a part of a dump that starts after `lines_before` lines, at byte
/// `offset` of the whole.
pub(crate) fn raw_lines_after(
    part: &[u8],
    lines_before: usize,
    offset: usize,
) -> impl Iterator<Item = Line<'_>> + Clone {
    let mut rest = part;
    let mut no = lines_before;
    let mut at = offset;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        no += 1;
        let (text, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = Line { no, col0: 0, text, offset: Some(at) };
        at += rest.len() - next.len();
        rest = next;
        Some(line)
    })
}

/// A logical line after lenient repairs; joined lines own their text.
#[derive(Debug, Clone)]
pub(crate) struct OwnedLine<'a> {
    pub no: usize,
    pub col0: usize,
    pub text: Cow<'a, [u8]>,
}

impl OwnedLine<'_> {
    pub(crate) fn as_line(&self) -> Line<'_> {
        Line { no: self.no, col0: self.col0, text: &self.text, offset: None }
    }
}

/// What a shell prompt line at the top of a dump says about the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Command {
    /// The node `xenstore-ls` was started on, if the command names one literally; `Some("")`
    /// when it names none (the root).
    pub start: Option<String>,
    /// The command pipes its output through something (`| grep vif`).
    pub filtered: bool,
    pub text: String,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `> `, `>> `, `> >> `: mail quote markers, each `>` optionally followed by one space.
fn quote_prefix_len(t: &[u8]) -> usize {
    let mut i = 0;
    while i < t.len() && t[i] == b'>' {
        while i < t.len() && t[i] == b'>' {
            i += 1;
        }
        if i < t.len() && t[i] == b' ' {
            i += 1;
        }
    }
    i
}

/// A pastebin line marker: `  12. ` (returns its length and number) or `- `.
fn numbered_prefix(t: &[u8]) -> Option<(usize, u64)> {
    let digits_start = t.iter().position(|&b| b != b' ')?;
    let digits = t[digits_start..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let end = digits_start + digits;
    if t.get(end) != Some(&b'.') || !(t.get(end + 1) == Some(&b' ') || end + 1 == t.len()) {
        return None;
    }
    let n = std::str::from_utf8(&t[digits_start..end]).ok()?.parse().ok()?;
    Some(((end + 2).min(t.len()), n))
}

fn looks_like_node_line(t: &[u8]) -> bool {
    memchr::memmem::find(t, b" = \"").is_some() || t.ends_with(b":") || t.ends_with(b")")
}

/// A shell prompt, optionally with a command after it: `[root@dom0 ~]# cmd`, `# cmd`,
/// `root@host:~# cmd`, `(dom0) # cmd`, `[tal@dom0 ~]$ cmd`. Returns the command text.
fn prompt_command(t: &[u8]) -> Option<&[u8]> {
    let trimmed_start = t.iter().position(|&b| b != b' ')?;
    let t = &t[trimmed_start..];
    if looks_like_node_line(t) && !t.contains(&b'#') && !t.contains(&b'$') {
        return None;
    }
    let marker = t.iter().position(|&b| b == b'#' || b == b'$')?;
    let before = &t[..marker];
    if before.len() > 64 || before.contains(&b'"') || before.contains(&b'=') {
        return None;
    }
    let after = &t[marker + 1..];
    if !(after.is_empty() || after[0] == b' ') {
        return None;
    }
    let command = trim(after);
    let is_xenstore = memchr::memmem::find(command, b"xenstore").is_some();
    if command.is_empty() || is_xenstore {
        Some(command)
    } else {
        None
    }
}

fn trim(t: &[u8]) -> &[u8] {
    let start = t.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(t.len());
    let end = t.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &t[start..end.max(start)]
}

fn parse_command(command: &[u8]) -> Command {
    let text = lossy(command);
    let mut out = Command { text: text.clone(), ..Command::default() };
    // A `|` inside a command substitution does not filter the listing.
    let mut depth = 0i32;
    let mut backtick = false;
    let pipe = text.char_indices().find_map(|(i, c)| {
        match c {
            '`' => backtick = !backtick,
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth <= 0 && !backtick => return Some(i),
            _ => {}
        }
        None
    });
    let (listing, rest) = match pipe {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (&text[..], None),
    };
    out.filtered = rest.is_some();
    let mut words = listing.split_whitespace().peekable();
    // `xenstore-ls ARGS` or `xenstore ls ARGS`.
    let mut found = false;
    while let Some(w) = words.next() {
        if w.ends_with("xenstore-ls") {
            found = true;
            break;
        }
        if w.ends_with("xenstore") && words.peek() == Some(&"ls") {
            words.next();
            found = true;
            break;
        }
    }
    if !found {
        return out;
    }
    let mut start = String::new();
    for w in words {
        if w.starts_with('-') {
            continue;
        }
        if w.contains(['$', '`', '(', '\'', '"', '*']) {
            return out;
        }
        start = w.to_string();
        break;
    }
    out.start = Some(start);
    out
}

fn stderr_line(t: &[u8]) -> Option<bool> {
    let t = trim(t);
    if t.starts_with(b"xenstore-ls:") {
        let aborted = memchr::memmem::find(t, b"xs_directory (").is_some();
        return Some(aborted);
    }
    if t.starts_with(b"could not access permissions for ") {
        return Some(false);
    }
    None
}

/// Lenient mode: repairs transport damage and returns the logical lines, plus what a prompt
/// line at the top said. Every change is recorded in `repairs`.
pub(crate) fn repair_lines<'a>(
    input: &'a [u8],
    repairs: &mut Vec<Repair>,
    warnings: &mut Vec<Warning>,
) -> (Vec<OwnedLine<'a>>, Option<Command>) {
    let mut lines: Vec<OwnedLine<'a>> = Vec::new();
    for line in raw_lines(input) {
        let mut text = line.text;
        let mut col0 = 0;
        if let Some(stripped) = text.strip_suffix(b"\r") {
            text = stripped;
            repairs.push(Repair { line: line.no, kind: RepairKind::CarriageReturn });
        }
        let q = quote_prefix_len(text);
        if q > 0 {
            repairs.push(Repair { line: line.no, kind: RepairKind::QuotePrefix { prefix: lossy(&text[..q]) } });
            text = &text[q..];
            col0 += q;
        }
        lines.push(OwnedLine { no: line.no, col0, text: Cow::Borrowed(text) });
    }

    strip_line_numbers(&mut lines, repairs);

    // A prompt (with the command) at the top, a bare prompt at the bottom.
    let mut command = None;
    if let Some(first) = lines.iter().position(|l| !trim(&l.text).is_empty()) {
        if let Some(cmd) = prompt_command(&lines[first].text) {
            command = Some(parse_command(cmd));
            repairs.push(Repair {
                line: lines[first].no,
                kind: RepairKind::PromptLine { text: lossy(&lines[first].text) },
            });
            lines.remove(first);
        }
    }
    if let Some(last) = lines.iter().rposition(|l| !trim(&l.text).is_empty()) {
        if prompt_command(&lines[last].text).is_some() {
            repairs
                .push(Repair { line: lines[last].no, kind: RepairKind::PromptLine { text: lossy(&lines[last].text) } });
            lines.remove(last);
        }
    }

    lines.retain(|l| match stderr_line(&l.text) {
        Some(aborted) => {
            repairs.push(Repair { line: l.no, kind: RepairKind::StderrLine { text: lossy(&l.text) } });
            if aborted {
                warnings
                    .push(Warning { line: l.no, kind: WarningKind::ListingAborted { message: lossy(trim(&l.text)) } });
            }
            false
        }
        None => true,
    });

    (join_flowed(lines, repairs), command)
}

/// Strips pastebin markers when every non-blank line carries one: `- `, or `N. ` with N
/// counting up by one. A dump line never starts like that, but a tree name may be `-`, hence
/// the all-or-nothing rule.
fn strip_line_numbers(lines: &mut [OwnedLine<'_>], repairs: &mut Vec<Repair>) {
    let content: Vec<usize> = (0..lines.len()).filter(|&i| !trim(&lines[i].text).is_empty()).collect();
    if content.is_empty() {
        return;
    }
    let dashes = content.iter().all(|&i| lines[i].text.starts_with(b"- "));
    let numbered = !dashes && {
        let mut expected = None;
        content.iter().all(|&i| match numbered_prefix(&lines[i].text) {
            Some((_, n)) => {
                let ok = expected.is_none_or(|e| e == n);
                expected = Some(n + 1);
                ok
            }
            None => false,
        })
    };
    if !dashes && !numbered {
        return;
    }
    for &i in &content {
        let len = if dashes { 2 } else { numbered_prefix(&lines[i].text).map_or(0, |(len, _)| len) };
        let line = &mut lines[i];
        repairs.push(Repair { line: line.no, kind: RepairKind::LineNumber { prefix: lossy(&line.text[..len]) } });
        line.text = match std::mem::take(&mut line.text) {
            Cow::Borrowed(b) => Cow::Borrowed(&b[len..]),
            Cow::Owned(o) => Cow::Owned(o[len..].to_vec()),
        };
        line.col0 += len;
    }
}

/// Undoes `format=flowed` soft breaks: a line that ends in a space, followed by a line that
/// cannot start a node (it starts with the value's `"` or the permissions' `(`), is one line.
/// A continuation that starts with a space lost one to space-stuffing.
fn join_flowed<'a>(lines: Vec<OwnedLine<'a>>, repairs: &mut Vec<Repair>) -> Vec<OwnedLine<'a>> {
    let mut out: Vec<OwnedLine<'a>> = Vec::with_capacity(lines.len());
    for line in lines {
        if let Some(prev) = out.last_mut() {
            let continues = trim(&line.text).first().is_some_and(|&b| b == b'"' || b == b'(');
            if prev.text.ends_with(b" ") && continues {
                let rest: &[u8] = line.text.strip_prefix(b" ").unwrap_or(&line.text);
                let mut joined = prev.text.to_vec();
                joined.extend_from_slice(rest);
                prev.text = Cow::Owned(joined);
                repairs.push(Repair { line: prev.no, kind: RepairKind::FlowedWrap });
                continue;
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts() {
        for (line, cmd) in [
            ("# xenstore-ls -f", Some("xenstore-ls -f")),
            ("# xenstore-ls ", Some("xenstore-ls")),
            (
                "[root@dom0 ~]# xenstore-ls -fp /local/domain/$(xl domid personal)/memory",
                Some("xenstore-ls -fp /local/domain/$(xl domid personal)/memory"),
            ),
            ("(dom0) # xenstore-ls -p /local/domain/2/foo", Some("xenstore-ls -p /local/domain/2/foo")),
            ("[tal@dom0 ~]$ xenstore-ls /local/domain/3/backend/vif", Some("xenstore-ls /local/domain/3/backend/vif")),
            ("    [root@mccpvm24 ~]# ", Some("")),
            ("/local/domain/0/name = \"Domain-0\"", None),
            ("name = \"a # b\"", None),
        ] {
            assert_eq!(
                prompt_command(line.as_bytes()).map(|c| String::from_utf8_lossy(c).into_owned()),
                cmd.map(String::from),
                "{line}"
            );
        }
        let c = parse_command(b"xenstore-ls -p /local/domain/2/foo");
        assert_eq!(c.start.as_deref(), Some("/local/domain/2/foo"));
        let c = parse_command(b"xenstore-ls");
        assert_eq!(c.start.as_deref(), Some(""));
        let c = parse_command(b"xenstore-ls -f | grep pci");
        assert!(c.filtered);
        let c = parse_command(b"xenstore-ls -fp /local/domain/$(xl domid personal)/memory");
        assert_eq!(c.start, None);
        assert!(!parse_command(b"xenstore-ls `xl block-list vm | grep 5632`").filtered);
        let c = parse_command(b"xenstore ls /local/domain/89");
        assert_eq!(c.start.as_deref(), Some("/local/domain/89"));
    }

    #[test]
    fn line_numbers_need_every_line() {
        let mut repairs = Vec::new();
        let mut warnings = Vec::new();
        let (lines, _) = repair_lines(b"  1. /a = \"\" (n0)\n  2. /a/b = \"x\" (n0)\n", &mut repairs, &mut warnings);
        assert_eq!(&*lines[1].text, b"/a/b = \"x\" (n0)");
        assert_eq!(lines[1].col0, 5);
        assert_eq!(repairs.len(), 2);
        repairs.clear();
        let (lines, _) = repair_lines(b"- = \"x\"\nb = \"y\"\n", &mut repairs, &mut warnings);
        assert_eq!(&*lines[0].text, b"- = \"x\"");
        assert!(repairs.is_empty());
    }
}
