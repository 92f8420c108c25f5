//! libxl's JSON layout: yajl 2 with `yajl_gen_beautify` and a 4-space indent.
//!
//! Facts (spec §5.2): `{`/`[` then a newline; one member per line at 4 × depth; `"key": value`;
//! an empty object or array is `{`, newline, newline, indent, `}` (a blank line inside); a final
//! newline after the top-level value. Strings escape `"`, `\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//! bytes below 0x20 as `\u00XX`; `/` is not escaped and everything from 0x7f up is raw.

use serde_json::Value;
use std::fmt::Write as _;

/// Prints `value` exactly as libxl's generator would, final newline included.
pub fn to_libxl_string(value: &Value) -> String {
    let mut out = String::with_capacity(4096);
    write_value(&mut out, value, 0);
    out.push('\n');
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing to a String cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push_str("[\n");
            if items.is_empty() {
                out.push('\n');
            }
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write_value(out, item, depth + 1);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, depth),
    }
}

/// One element of `xl list -l`'s array, `{"domid": D, "config": {...}}`, indented as the array
/// holds it, without the separator after it: the elements of a host can be printed apart (on
/// several threads) and joined by [`join_xl_list`].
pub fn xl_list_entry(domid: u32, config: &serde_json::Map<String, Value>) -> String {
    let mut out = String::with_capacity(4096);
    indent(&mut out, 1);
    out.push_str("{\n");
    indent(&mut out, 2);
    write_string(&mut out, "domid");
    // Writing to a String cannot fail.
    let _ = writeln!(out, ": {domid},");
    indent(&mut out, 2);
    write_string(&mut out, "config");
    out.push_str(": ");
    write_object(&mut out, config, 2);
    out.push('\n');
    indent(&mut out, 1);
    out.push('}');
    out
}

/// `xl list -l`'s output from its elements, each printed by [`xl_list_entry`]: `[`, the
/// elements, `]`, then the newline yajl's buffer ends in and the one xl's `printf("%s\n")` adds.
pub fn join_xl_list(entries: &[String]) -> String {
    let mut out = String::with_capacity(entries.iter().map(|e| e.len() + 2).sum::<usize>() + 8);
    out.push_str("[\n");
    if entries.is_empty() {
        out.push('\n');
    }
    for (i, entry) in entries.iter().enumerate() {
        out.push_str(entry);
        if i + 1 < entries.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str("]\n\n");
    out
}

/// An object nested `depth` levels deep (its first line is not indented: it follows a key),
/// so a caller can print a document around it without building it as one [`Value`].
pub fn write_object(out: &mut String, map: &serde_json::Map<String, Value>, depth: usize) {
    out.push_str("{\n");
    if map.is_empty() {
        out.push('\n');
    }
    let n = map.len();
    for (i, (k, v)) in map.iter().enumerate() {
        indent(out, depth + 1);
        write_string(out, k);
        out.push_str(": ");
        write_value(out, v, depth + 1);
        if i + 1 < n {
            out.push(',');
        }
        out.push('\n');
    }
    indent(out, depth);
    out.push('}');
}

/// yajl's string escaping (`yajl_string_encode`). The runs between bytes to escape (all of
/// most strings) are copied whole.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut clean = 0;
    for (at, byte) in s.bytes().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        // Every byte to escape is ASCII, so the runs around it are whole characters.
        out.push_str(&s[clean..at]);
        clean = at + 1;
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            other => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(other >> 4)]));
                out.push(char::from(HEX[usize::from(other & 0xf)]));
            }
        }
    }
    out.push_str(&s[clean..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_containers_have_a_blank_line() {
        let v: Value = serde_json::from_str(r#"{"a": {}, "b": [], "c": [0, 1]}"#).unwrap();
        assert_eq!(
            to_libxl_string(&v),
            "{\n    \"a\": {\n\n    },\n    \"b\": [\n\n    ],\n    \"c\": [\n        0,\n        1\n    ]\n}\n"
        );
    }

    #[test]
    fn escapes_like_yajl() {
        let mut s = String::new();
        write_string(&mut s, "a/\"\\\n\u{1}\u{7f}é");
        assert_eq!(s, "\"a/\\\"\\\\\\n\\u0001\u{7f}é\"");
        // Every control character, each escape at either end of a run, and plain text.
        for c in (0u8..0x20).chain([b'"', b'\\']) {
            let text = format!("é{}x{}", char::from(c), char::from(c));
            let mut fast = String::new();
            write_string(&mut fast, &text);
            let mut slow = String::from("\"");
            for ch in text.chars() {
                match ch {
                    '"' => slow.push_str("\\\""),
                    '\\' => slow.push_str("\\\\"),
                    '\u{8}' => slow.push_str("\\b"),
                    '\u{c}' => slow.push_str("\\f"),
                    '\n' => slow.push_str("\\n"),
                    '\r' => slow.push_str("\\r"),
                    '\t' => slow.push_str("\\t"),
                    c if (c as u32) < 0x20 => slow.push_str(&format!("\\u{:04X}", c as u32)),
                    c => slow.push(c),
                }
            }
            slow.push('"');
            assert_eq!(fast, slow, "byte {c:#x}");
        }
    }
}
