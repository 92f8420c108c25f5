//! The `path=value` scenario format of the oracle spike (`oracle-spike/run.sh`): one node per
//! line, split at the first `=`; blank lines and lines starting with `#` are ignored. Each value
//! goes to `xenstore-write` as it is, so it is decoded exactly as `xenstore-write` decodes its
//! arguments. Strict mode accepts only the canonical escapes (`\\ \t \n \r \ooo \xhh`); lenient
//! mode decodes anything `xenstore-write` would, quirks included, and reports each such escape.
//! Scenarios carry no permissions, and the ancestors `xenstore-write` creates implicitly are not
//! added to the tree.

use super::build::{decode_error, error_at, Builder};
use super::error::{DumpError, DumpErrorKind, RepairKind, WriteError};
use super::escape::{decode_write_arg, escape_value_into, DecodeError, VALUE_MAX};
use super::lines::Line;
use super::write::dfs_order;
use merge_core::xenstore::{Node, Path, Tree};

const SCENARIO_ESCAPES: &str = "a strict scenario takes only \\\\ \\t \\n \\r \\ooo \\xhh";

pub(crate) fn parse_scenario<'a>(
    lines: impl Iterator<Item = Line<'a>>,
    base: Option<&Path>,
    b: &mut Builder,
) -> Result<(), DumpError> {
    let mut value = Vec::new();
    let mut odd = Vec::new();
    for line in lines {
        let t = line.text;
        if t.is_empty() || t[0] == b'#' {
            continue;
        }
        let Some(eq) = memchr::memchr(b'=', t) else {
            return Err(error_at(
                &line,
                t.len(),
                DumpErrorKind::Expected { expected: "`=` between the path and the value" },
            ));
        };
        let path = b.path(&line, 0, &t[..eq], base)?;
        let raw = &t[eq + 1..];
        if let Some(at) = memchr::memchr(0, raw) {
            return Err(error_at(&line, eq + 1 + at, DumpErrorKind::RawByte { byte: 0 }));
        }
        odd.clear();
        decode_write_arg(raw, &mut value, &mut odd);
        for e in &odd {
            let escape = String::from_utf8_lossy(&raw[e.offset..(e.offset + e.len).min(raw.len())]).into_owned();
            if b.lenient {
                b.repair(&line, RepairKind::WriteEscape { escape });
            } else {
                let err = DecodeError::BadEscape { offset: e.offset, len: e.len };
                return Err(decode_error(&line, eq + 1, raw, err, SCENARIO_ESCAPES));
            }
        }
        if value.len() > VALUE_MAX {
            return Err(error_at(&line, eq + 1, DumpErrorKind::ValueTooLong { len: value.len(), max: VALUE_MAX }));
        }
        b.insert(&line, 0, path, Node::new(value.as_slice()))?;
    }
    Ok(())
}

/// Writes `tree` as a `path=value` scenario that `oracle-spike/run.sh` (and
/// `xenstore-write`) turns back into the same values. Nodes are in depth-first order, so
/// parents come before their children. Permissions are not part of the format and are dropped;
/// the root node `/` is skipped. A truncated or unreadable node is an error, because its
/// value is unknown.
pub fn write_scenario(tree: &Tree) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    for (path, node) in dfs_order(tree) {
        if node.truncated {
            return Err(WriteError::Truncated { path: path.to_string() });
        }
        if node.unreadable {
            return Err(WriteError::Unreadable { path: path.to_string() });
        }
        out.extend_from_slice(path.as_str().as_bytes());
        out.push(b'=');
        escape_value_into(&mut out, &node.value);
        out.push(b'\n');
    }
    Ok(out)
}
