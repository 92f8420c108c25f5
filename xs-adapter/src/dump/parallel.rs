//! A large `xenstore-ls -f` or `-fp` dump read on several threads, when only some of its nodes
//! are kept ([`super::read_kept`]). A host's dump is many independent lines, and checking them
//! is most of the cost of reading it when few nodes are made.
//!
//! The dump is cut at line starts that begin a node (never between `<path>:` and the line it
//! owns), each part is read by the one-pass flat reader with line numbers counted from the part's
//! start, and sorts the nodes it keeps; the sorted parts are merged into the tree's array
//! ([`Tree::from_sorted`]). Only the strict reader runs here, and on any error (a path given
//! twice included) the caller reads the dump again on one thread, so that the error reported is
//! the first in the input, with both lines of a duplicate.

use super::build::{Builder, LeftNode};
use super::flat::{self, FlatOptions};
use super::lines::{raw_lines, raw_lines_after};
use super::{detect, sort_unique, Format, ReadOptions, Snapshot};
use merge_core::xenstore::{Node, Path, Tree};

/// Below this many bytes a part, one thread reads faster than several.
const MIN_PART: usize = 1 << 20;

/// The smallest dump worth cutting: two parts.
pub(crate) const MIN_INPUT: usize = 2 * MIN_PART;

/// The nodes kept, in a tree, and those left out (sorted by path, each once), of a dump read
/// in strict mode, on up to
/// `threads` threads; `None` when it is not a `-f`/`-fp` dump, is too small to gain, or has an
/// error somewhere (read it on one thread).
pub(crate) fn read_flat(
    input: &[u8],
    opts: &ReadOptions,
    keep: fn(&str) -> bool,
    threads: usize,
) -> Option<(Snapshot, Vec<LeftNode>)> {
    let (format, decided_at) = match opts.format {
        Some(f) => (f, 0),
        None => detect(raw_lines(input))?,
    };
    if !matches!(format, Format::Flat | Format::FlatPerms) {
        return None;
    }
    let parts = parts(input, threads.min(input.len() / MIN_PART));
    if parts.len() < 2 {
        return None;
    }
    let fopts = FlatOptions { perms: format.has_perms(), format, decided_at, base: opts.base.as_ref() };
    let builders: Vec<Option<Builder>> = {
        use rayon::prelude::*;
        parts
            .par_iter()
            .map(|part| {
                let mut b = Builder::new(false);
                b.keep = Some(keep);
                // Room for every line, kept or left out: what is not written is never touched,
                // and a list that grows is copied at each step.
                b.collected = Some(Vec::with_capacity(part.lines));
                b.left_out = Vec::with_capacity(part.lines);
                let lines = raw_lines_after(part.text, part.lines_before, part.offset);
                flat::parse_flat_pass(lines, &fopts, &mut b, None).ok()?;
                // The nodes left out are sorted here too, on this part's thread.
                let unique = sort_unique(&mut b.left_out, LeftNode::by_path(input))
                    && sort_unique(b.collected.as_mut()?, |x, y| x.0.cmp(&y.0));
                unique.then_some(b)
            })
            .collect()
    };
    let mut kept: Vec<(Path, Node)> = Vec::new();
    let mut left_out = Vec::new();
    let mut warnings = Vec::new();
    for b in builders {
        let b = b?;
        kept = merge_sorted(kept, b.collected.unwrap_or_default(), |x, y| x.0.cmp(&y.0))?;
        left_out = merge_sorted(left_out, b.left_out, LeftNode::by_path(input))?;
        warnings.extend(b.warnings);
    }
    let tree = Tree::from_sorted(kept);
    let snapshot = Snapshot { tree, format, base: opts.base.clone(), repairs: Vec::new(), warnings };
    Some((snapshot, left_out))
}

/// Two lists sorted by `order`, as one; `None` if an item is in both. Parts of a dump mostly
/// follow each other in path order: what of `a` comes before all of `b` is kept in place, and
/// only the few items where they overlap are compared.
fn merge_sorted<T>(mut a: Vec<T>, b: Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) -> Option<Vec<T>> {
    let Some(first) = b.first() else { return Some(a) };
    if a.is_empty() {
        return Some(b);
    }
    let before = a.partition_point(|x| order(x, first).is_lt());
    let overlap = a.split_off(before);
    let mut out = a;
    out.reserve(overlap.len() + b.len());
    let (mut a, mut b) = (overlap.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = match order(x, y) {
            std::cmp::Ordering::Less => a.next(),
            std::cmp::Ordering::Greater => b.next(),
            std::cmp::Ordering::Equal => return None,
        };
        out.extend(next);
    }
    out.extend(a);
    out.extend(b);
    Some(out)
}

/// A part of a dump to read on its own thread.
struct Part<'a> {
    text: &'a [u8],
    /// How many lines and bytes of the dump come before it.
    lines_before: usize,
    offset: usize,
    /// Its own lines.
    lines: usize,
}

/// Up to `n` parts of `input`.
fn parts(input: &[u8], n: usize) -> Vec<Part<'_>> {
    let mut cuts = vec![0];
    for i in 1..n {
        let from = (input.len() / n * i).max(*cuts.last().unwrap_or(&0));
        match node_start_after(input, from) {
            Some(cut) if cut > *cuts.last().unwrap_or(&0) => cuts.push(cut),
            _ => break,
        }
    }
    cuts.push(input.len());
    let mut lines_before = 0;
    cuts.windows(2)
        .map(|w| {
            let text = &input[w[0]..w[1]];
            let lines = memchr::memchr_iter(b'\n', text).count();
            let part = Part { text, lines_before, offset: w[0], lines };
            lines_before += lines;
            part
        })
        .collect()
}

/// The first line start after `from` where a node begins: not a blank or indented line, and
/// not the line an unreadable `<path>:` owns.
fn node_start_after(input: &[u8], from: usize) -> Option<usize> {
    let mut at = from + memchr::memchr(b'\n', input.get(from..)?)? + 1;
    while at < input.len() {
        let prev_start = memchr::memrchr(b'\n', &input[..at - 1]).map_or(0, |i| i + 1);
        let begins_node = !matches!(input[at], b'\n' | b'\r' | b' ' | b'\t');
        if begins_node && !flat::unreadable_head(&input[prev_start..at - 1]) {
            return Some(at);
        }
        at += memchr::memchr(b'\n', &input[at..])? + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_read_in_parts_equals_one_read_on_one_thread() {
        let mut input = Vec::new();
        for i in 0..60_000 {
            input.extend_from_slice(
                format!("/local/domain/{}/k{} = \"v\\t{i}\"   (n0,r1)\n", i / 30, i % 30).as_bytes(),
            );
            if i == 30_000 {
                input.extend_from_slice(b"/local/domain/x:\n  (n0)\n/local/domain/y = \"\" \n");
            }
        }
        let opts = ReadOptions::default();
        let keep: fn(&str) -> bool = |p| p.ends_with('7');
        let (snapshot, left_out) = read_flat(&input, &opts, keep, 2).expect("read in parts");
        let (one, one_left_out) = super::super::read_keeping_on_one_thread(&input, &opts, Some(keep)).unwrap();
        assert!(snapshot.tree == one.tree);
        assert_eq!(snapshot.warnings, one.warnings);
        assert_eq!(snapshot.warnings.len(), 1);
        let sorted = |mut v: Vec<LeftNode>| {
            v.sort_by_key(|n| n.start);
            v
        };
        assert_eq!(sorted(left_out), sorted(one_left_out));
        // Too small to gain: read on one thread.
        assert!(read_flat(&input[..1000], &opts, keep, 2).is_none());
    }

    #[test]
    fn merging_keeps_the_order_and_refuses_an_item_in_both() {
        let merge = |a: &[u32], b: &[u32]| merge_sorted(a.to_vec(), b.to_vec(), |x, y| x.cmp(y));
        assert_eq!(merge(&[1, 2], &[3, 4]), Some(vec![1, 2, 3, 4]));
        assert_eq!(merge(&[1, 3, 5, 7], &[4, 6]), Some(vec![1, 3, 4, 5, 6, 7]));
        assert_eq!(merge(&[5, 6], &[1, 2]), Some(vec![1, 2, 5, 6]));
        assert_eq!(merge(&[], &[1]), Some(vec![1]));
        assert_eq!(merge(&[1], &[]), Some(vec![1]));
        assert_eq!(merge(&[1, 4, 9], &[2, 4]), None);
    }

    #[test]
    fn a_cut_never_separates_an_unreadable_node_from_its_line() {
        let input = b"/a = \"1\"\n/b:\n  (n0)\n/c = \"2\"\n";
        // From inside `/a`'s line, the next line start is `/b:`, a node.
        assert_eq!(node_start_after(input, 0), Some(9));
        // From inside `/b:`, the next start is its perms line, owned by it; then `/c`.
        assert_eq!(node_start_after(input, 10), Some(20));
        assert_eq!(node_start_after(input, 21), None);
    }

    #[test]
    fn parts_cover_the_input_and_count_lines() {
        let input: Vec<u8> = (0..1000).flat_map(|i| format!("/n{i} = \"{i}\"\n").into_bytes()).collect();
        let parts = parts(&input, 4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.iter().map(|p| p.text.len()).sum::<usize>(), input.len());
        for part in &parts {
            let first = std::str::from_utf8(part.text).unwrap().lines().next().unwrap();
            let before = part.lines_before;
            assert_eq!(first, format!("/n{before} = \"{before}\""));
            assert_eq!(&input[part.offset..part.offset + part.text.len()], part.text);
        }
    }
}
