//! An immutable snapshot of xenstore: validated path → node.
//!
//! The tree is an `imbl` ordered map, so a clone is O(1) and shares structure, iteration is
//! sorted and deterministic (never the daemon's creation order), and a subtree is one range
//! scan. A tree built whole from its nodes ([`Tree::from_sorted`], `collect`) is first held as
//! one sorted array, shared the same way, and becomes a map on its first change: a dump's
//! hundred thousand nodes are then sorted once instead of inserted one by one.
//!
//! A tree may be partial: a dump of one subtree, or a `grep`-filtered excerpt, has nodes
//! whose ancestors are absent. Listing children therefore derives them from the keys below, so
//! an ancestor that was never printed still shows up as a directory.

mod path;

pub(crate) use path::valid_component;
pub use path::{concat, leading_components, CheckedPath, Decimal, Path, PathError, ABS_PATH_MAX, REL_PATH_MAX};

use imbl::OrdMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

/// What one domain may do with a node (`n`, `r`, `w`, `b` in xenstore's notation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    pub fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    pub fn from_letter(c: char) -> Option<Access> {
        Some(match c {
            'n' => Access::None,
            'r' => Access::Read,
            'w' => Access::Write,
            'b' => Access::Both,
            _ => return None,
        })
    }

    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }

    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }
}

/// One entry of a permission list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Perm {
    pub access: Access,
    pub domid: u32,
}

/// A node's permission list. The first entry names the owner and, through its access letter,
/// what every domain not listed may do. Shared (`Arc`) because most nodes of a dump repeat a
/// handful of lists.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Perms(Arc<[Perm]>);

impl Perms {
    /// A list must have at least the owner entry.
    pub fn new(entries: Vec<Perm>) -> Option<Perms> {
        if entries.is_empty() {
            None
        } else {
            Some(Perms(entries.into()))
        }
    }

    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    pub fn owner(&self) -> u32 {
        self.0[0].domid
    }

    /// What `domid` may do, by xenstored's rule: the owner may do anything, a listed domain
    /// has its entry (the last one that names it wins in 4.17's `perm_for_conn`, which scans
    /// all entries), everyone else has the owner entry's access. Dom0 is privileged and may
    /// do anything.
    pub fn access_for(&self, domid: u32) -> Access {
        if domid == 0 || domid == self.owner() {
            return Access::Both;
        }
        let mut access = self.0[0].access;
        for p in &self.0[1..] {
            if p.domid == domid {
                access = p.access;
            }
        }
        access
    }

    /// `n0,r3` as xenstore-ls prints it.
    pub fn to_xs_string(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push(p.access.letter());
            s.push_str(&p.domid.to_string());
        }
        s
    }

    /// Parses `n0,r3`. Returns `None` unless every entry is a letter and a decimal domid.
    pub fn parse(s: &str) -> Option<Perms> {
        let mut v = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars();
            let access = Access::from_letter(chars.next()?)?;
            let digits = chars.as_str();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 10 {
                return None;
            }
            let domid: u32 = digits.parse().ok()?;
            v.push(Perm { access, domid });
        }
        Perms::new(v)
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({})", self.to_xs_string())
    }
}

/// One xenstore node as a snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    /// The value's bytes. Xenstore values are bytes, not text.
    pub value: Box<[u8]>,
    /// The permission list, when the source showed it.
    pub perms: Option<Perms>,
    /// The source cut the value (`xenstore-ls` tree output ends such a value in `\...`): `value`
    /// holds only the printed prefix and must never be taken as the real value.
    pub truncated: bool,
    /// The source could not read the value (EACCES: `name:` with no value). `value` is empty.
    pub unreadable: bool,
}

impl Node {
    pub fn new(value: impl Into<Box<[u8]>>) -> Node {
        Node { value: value.into(), perms: None, truncated: false, unreadable: false }
    }

    pub fn with_perms(mut self, perms: Option<Perms>) -> Node {
        self.perms = perms;
        self
    }

    /// The value, only if it is complete and readable.
    pub fn known_value(&self) -> Option<&[u8]> {
        if self.truncated || self.unreadable {
            None
        } else {
            Some(&self.value)
        }
    }

    /// The value as UTF-8 text, only if complete, readable and valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        self.known_value().and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// One difference between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Path, Node),
    Removed(Path, Node),
    Updated { path: Path, old: Node, new: Node },
}

impl Change {
    pub fn path(&self) -> &Path {
        match self {
            Change::Added(p, _) | Change::Removed(p, _) => p,
            Change::Updated { path, .. } => path,
        }
    }
}

/// An immutable, cheaply clonable xenstore snapshot.
#[derive(Clone, Default)]
pub struct Tree {
    nodes: Nodes,
    /// Host-wide facts derived from the nodes on first use ([`crate::observe::host::HostShape`]),
    /// shared by clones so that reconciling each of a thousand domains against one snapshot
    /// does not rescan every domain each time. Every mutation starts an empty one.
    shape: Arc<OnceLock<crate::observe::host::HostShape>>,
}

/// A tree's nodes: an array built whole and never changed, or a map.
#[derive(Clone)]
enum Nodes {
    /// Strictly increasing paths.
    Sorted(Arc<Vec<(Path, Node)>>),
    Map(OrdMap<Path, Node>),
}

impl Default for Nodes {
    fn default() -> Nodes {
        Nodes::Map(OrdMap::new())
    }
}

impl Nodes {
    fn len(&self) -> usize {
        match self {
            Nodes::Sorted(v) => v.len(),
            Nodes::Map(m) => m.len(),
        }
    }

    /// The nodes whose paths lie between the bounds, in order.
    fn range<'a>(&'a self, lower: Bound<&str>, upper: Bound<&str>) -> NodesIter<'a> {
        match self {
            Nodes::Sorted(v) => {
                let start = lower_position(v, lower);
                let end = match upper {
                    Bound::Included(s) => sorted_position(v, s, true),
                    Bound::Excluded(s) => sorted_position(v, s, false),
                    Bound::Unbounded => v.len(),
                };
                NodesIter::Sorted(v[start..end.max(start)].iter())
            }
            Nodes::Map(m) => NodesIter::Map(m.range::<_, str>((lower, upper))),
        }
    }

    /// All the nodes, to search.
    fn searched(&self) -> Searched<'_> {
        match self {
            Nodes::Sorted(v) => Searched::Slice(v),
            Nodes::Map(m) => Searched::Map(m),
        }
    }

    /// The map to change, made from the array on the first change.
    fn map_mut(&mut self) -> &mut OrdMap<Path, Node> {
        if let Nodes::Sorted(v) = self {
            let map = match Arc::try_unwrap(std::mem::take(v)) {
                Ok(owned) => owned.into_iter().collect(),
                Err(shared) => shared.iter().cloned().collect(),
            };
            *self = Nodes::Map(map);
        }
        match self {
            Nodes::Map(m) => m,
            Nodes::Sorted(_) => unreachable!("made a map above"),
        }
    }
}

/// Some of a tree's nodes, searched by a lower bound.
#[derive(Clone, Copy)]
enum Searched<'a> {
    Slice(&'a [(Path, Node)]),
    Map(&'a OrdMap<Path, Node>),
}

impl<'a> Searched<'a> {
    /// The node at `path`, if present.
    fn get(self, path: &str) -> Option<&'a Node> {
        self.get_key_value(path).map(|(_, n)| n)
    }

    /// The node at `path` with its path, if present.
    fn get_key_value(self, path: &str) -> Option<(&'a Path, &'a Node)> {
        match self {
            Searched::Slice(v) => {
                v.get(sorted_position(v, path, false)).filter(|(k, _)| k.as_str() == path).map(|(k, n)| (k, n))
            }
            Searched::Map(m) => m.get_key_value(path),
        }
    }

    /// The nodes to search for those whose paths start with `prefix`: an array's own slice of
    /// them, found once, so that each later search stays in a few cache lines instead of
    /// crossing the host's array; a map whole.
    fn below(self, prefix: &str) -> Searched<'a> {
        match self {
            Searched::Slice(v) => Searched::Slice(below_slice(v, prefix)),
            Searched::Map(m) => Searched::Map(m),
        }
    }

    /// The nodes whose paths start with `prefix`, which ends in `/`, in order. An array finds
    /// them with [`below_slice`], where a range searches the whole array for both ends.
    fn iter_below(self, prefix: &str) -> NodesIter<'a> {
        match self.below(prefix) {
            Searched::Slice(v) => NodesIter::Sorted(v.iter()),
            Searched::Map(m) => {
                // The first string past every one that starts with `prefix`: `/` is followed
                // by `0`.
                let end = format!("{}0", prefix.strip_suffix('/').unwrap_or(prefix));
                NodesIter::Map(m.range::<_, str>((Bound::Included(prefix), Bound::Excluded(end.as_str()))))
            }
        }
    }

    /// The first node at or past `lower`: one search where a range takes two.
    fn first_from(self, lower: Bound<&str>) -> Option<(&'a Path, &'a Node)> {
        match self {
            Searched::Slice(v) => v.get(lower_position(v, lower)).map(|(k, n)| (k, n)),
            Searched::Map(m) => m.range::<_, str>((lower, Bound::Unbounded)).next(),
        }
    }
}

/// The nodes of a sorted tree below one directory, found once and searched in place of the
/// whole array for any path below that directory ([`Tree::window`]). A domain's reconcile reads
/// mostly below its home and its `/libxl` directory; a search there stays among that domain's
/// few nodes, already in the cache, where a search of the host's array misses the cache at
/// nearly every probe.
#[derive(Debug, Clone, Copy)]
pub struct Window<'t> {
    /// The directory's own path followed by `/`.
    prefix: &'t str,
    nodes: &'t [(Path, Node)],
}

impl<'t> Window<'t> {
    /// The nodes of the window that covers `path` (it lies below the window's directory) among
    /// `windows`, if one does.
    fn covering(windows: &[Option<Window<'t>>], path: &str) -> Option<&'t [(Path, Node)]> {
        windows.iter().flatten().find(|w| path.starts_with(w.prefix)).map(|w| w.nodes)
    }
}

/// The nodes whose paths start with `prefix`, in strictly increasing paths: one search for the
/// first, and for the end a gallop from there, which stays among the few nodes of a subtree
/// where a second search would walk the whole array again.
fn below_slice<'a>(nodes: &'a [(Path, Node)], prefix: &str) -> &'a [(Path, Node)] {
    let start = sorted_position(nodes, prefix, false);
    let rest = &nodes[start..];
    let inside = |(k, _): &(Path, Node)| k.as_str().starts_with(prefix);
    let mut step = 1;
    while step <= rest.len() && inside(&rest[step - 1]) {
        step *= 2;
    }
    // The subtree ends within the last step: at or after `step / 2`, at or before `step - 1`.
    let from = step / 2;
    let within = &rest[from..rest.len().min(step)];
    &rest[..from + within.partition_point(inside)]
}

/// The index of the first node at or past a lower bound, in strictly increasing paths.
fn lower_position(nodes: &[(Path, Node)], lower: Bound<&str>) -> usize {
    match lower {
        Bound::Included(s) => sorted_position(nodes, s, false),
        Bound::Excluded(s) => sorted_position(nodes, s, true),
        Bound::Unbounded => 0,
    }
}

/// The index of the first node whose path is not below `key` (with `past_equal`, not at or
/// below it), in strictly increasing paths.
///
/// A binary search that skips what every probe is known to share with `key`: the paths between
/// two bounds share the prefix both bounds share with `key`, so each probe compares only the
/// bytes after it. A host's paths share long prefixes (`/local/domain/0/backend/vif/17/0/…`),
/// which a plain comparison reads again at every probe.
fn sorted_position(nodes: &[(Path, Node)], key: &str, past_equal: bool) -> usize {
    let key = key.as_bytes();
    let (mut low, mut high) = (0, nodes.len());
    // What `key` shares with the path just below `low`, and with the path at `high`.
    let (mut shared_low, mut shared_high) = (0, 0);
    while low < high {
        let middle = low + (high - low) / 2;
        let probe = nodes[middle].0.as_str().as_bytes();
        let known = shared_low.min(shared_high);
        let shared = known + common_prefix(&probe[known..], &key[known..]);
        let below = match (probe.get(shared), key.get(shared)) {
            (Some(p), Some(k)) => p < k,
            // The probe is a prefix of the key (or equal to it).
            (None, Some(_)) => true,
            (None, None) => past_equal,
            (Some(_), None) => false,
        };
        if below {
            (low, shared_low) = (middle + 1, shared);
        } else {
            (high, shared_high) = (middle, shared);
        }
    }
    low
}

/// How many leading bytes `a` and `b` share, eight at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let len = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= len {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < len && a[i] == b[i] {
        i += 1;
    }
    i
}

/// An iterator over some of a tree's nodes, in path order.
enum NodesIter<'a> {
    Sorted(std::slice::Iter<'a, (Path, Node)>),
    Map(imbl::ordmap::RangedIter<'a, Path, Node, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for NodesIter<'a> {
    type Item = (&'a Path, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            NodesIter::Sorted(it) => it.next().map(|(k, v)| (k, v)),
            NodesIter::Map(it) => it.next(),
        }
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        match (&self.nodes, &other.nodes) {
            (Nodes::Map(a), Nodes::Map(b)) => a == b,
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }
}

impl Eq for Tree {}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 0
    }

    /// A tree of these nodes. Nodes sorted by path, no path twice, are taken as they are;
    /// others are sorted here, keeping the later of a path given twice, as inserting them in
    /// order would.
    pub fn from_sorted(mut nodes: Vec<(Path, Node)>) -> Tree {
        if !nodes.windows(2).all(|w| w[0].0 < w[1].0) {
            nodes.sort_by(|a, b| a.0.cmp(&b.0));
            // Of equal paths, keep the last: `dedup_by` drops the later one, so move it back.
            nodes.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        Tree { nodes: Nodes::Sorted(Arc::new(nodes)), shape: Arc::default() }
    }

    /// Returns a tree with `path` set to `node` (replacing any node there). Ancestors are not
    /// created: see [`Tree::with_parents`].
    pub fn insert(&mut self, path: Path, node: Node) -> Option<Node> {
        self.forget_shape();
        self.nodes.map_mut().insert(path, node)
    }

    /// Drops derived facts before a mutation (a clone sharing them keeps its own).
    fn forget_shape(&mut self) {
        match Arc::get_mut(&mut self.shape) {
            Some(cell) => {
                cell.take();
            }
            None => self.shape = Arc::default(),
        }
    }

    /// The derived host facts, computed once per unmutated tree and its clones.
    pub(crate) fn host_shape(&self) -> &crate::observe::host::HostShape {
        self.shape.get_or_init(|| crate::observe::host::HostShape::of(self))
    }

    /// Sets `path` and creates every missing ancestor with an empty value and the given
    /// permissions, as `xenstore-write` does.
    pub fn insert_with_parents(&mut self, path: Path, node: Node, parent_perms: Option<Perms>) {
        self.forget_shape();
        let nodes = self.nodes.map_mut();
        let mut p = path.parent();
        while let Some(ancestor) = p {
            if ancestor.is_root() || nodes.contains_key(&ancestor) {
                break;
            }
            let next = ancestor.parent();
            nodes.insert(ancestor, Node::new(Vec::new()).with_perms(parent_perms.clone()));
            p = next;
        }
        nodes.insert(path, node);
    }

    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.get_str(path.as_str())
    }

    /// Looks up a path given as text; an invalid path is simply absent.
    pub fn get_str(&self, path: &str) -> Option<&Node> {
        self.get_str_in(&[], path)
    }

    /// The complete text value at `path`, if present, readable, untruncated and UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.get_str(path).and_then(Node::text)
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.get(path).is_some()
    }

    /// Whether `path` exists as a node or as the ancestor of one.
    pub fn exists(&self, path: &Path) -> bool {
        self.exists_in(&[], path)
    }

    pub fn has_descendants(&self, path: &Path) -> bool {
        let start = path.subtree_start();
        let first = self.nodes.searched().first_from(Bound::Included(&start));
        first.is_some_and(|(k, _)| k.as_str().starts_with(start.as_str()))
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &Path) -> usize {
        self.forget_shape();
        let doomed: Vec<Path> = self.subtree(path).map(|(p, _)| p.clone()).collect();
        let nodes = self.nodes.map_mut();
        for p in &doomed {
            nodes.remove(p);
        }
        doomed.len()
    }

    pub fn remove(&mut self, path: &Path) -> Option<Node> {
        self.forget_shape();
        self.nodes.map_mut().remove(path)
    }

    /// Every node, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Node)> {
        self.nodes.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// `path` itself (if present) and every node below it, sorted.
    pub fn subtree<'a>(&'a self, path: &Path) -> impl Iterator<Item = (&'a Path, &'a Node)> + 'a {
        self.subtree_in(&[], path)
    }

    /// [`Tree::children_of_str`], searching a window instead when one covers `path`'s children.
    pub fn children_of_str_in<'t>(&'t self, windows: &[Option<Window<'t>>], path: &str) -> Vec<String> {
        let prefix_len = if path == "/" { 1 } else { path.len() + 1 };
        // One buffer for every search's lower bound: the prefix, then `<prefix><child>` or
        // `<prefix><child>0`. A key found that does not start with the prefix ends the list.
        let mut lower = String::with_capacity(prefix_len + 32);
        lower.push_str(path);
        if path != "/" {
            lower.push('/');
        }
        let mut lower_included = true;
        let mut out: Vec<String> = Vec::new();
        let below = self.searched_for(windows, &lower).below(&lower);
        loop {
            let bound = if lower_included { Bound::Included(lower.as_str()) } else { Bound::Excluded(lower.as_str()) };
            let prefix = &lower.as_bytes()[..prefix_len];
            let next = below.first_from(bound).filter(|(k, _)| k.as_str().as_bytes().starts_with(prefix));
            let Some((key, _)) = next else { break };
            let rest = &key.as_str()[prefix_len..];
            let child = match rest.find('/') {
                Some(i) => &rest[..i],
                None => rest,
            };
            if out.last().map(String::as_str) != Some(child) {
                out.push(child.to_string());
            }
            // Key order is not child-name order (`b`, `b-c`, `b/x`), hence the sort below.
            lower.truncate(prefix_len);
            lower.push_str(child);
            // A node that is the child itself: continue right after it (a sibling such as
            // `b-c` sorts between `b` and `b/x`). A deeper node: skip the child's subtree.
            lower_included = rest.len() > child.len();
            if lower_included {
                lower.push('0');
            }
        }
        if !out.is_sorted() {
            out.sort();
            out.dedup();
        }
        out
    }

    /// The nodes below the directory `prefix` (its path followed by `/`, borrowed from the
    /// tree's own nodes), to search in its place ([`Window`]). `None` for a tree that is a map
    /// (searches there do not cross an array) or with nothing below `prefix`.
    pub fn window(&self, prefix: &str) -> Option<Window<'_>> {
        let Nodes::Sorted(v) = &self.nodes else { return None };
        let nodes = below_slice(v, prefix);
        let prefix = &nodes.first()?.0.as_str()[..prefix.len()];
        Some(Window { prefix, nodes })
    }

    /// The nodes to search for `path`: a window's when one of this tree's own covers it, else
    /// all of them.
    fn searched_for<'t>(&'t self, windows: &[Option<Window<'t>>], path: &str) -> Searched<'t> {
        let Nodes::Sorted(all) = &self.nodes else { return self.nodes.searched() };
        match Window::covering(windows, path) {
            // A window of another tree would answer for that tree: such a window is not used.
            Some(nodes) if all.as_ptr_range().contains(&nodes.as_ptr()) => Searched::Slice(nodes),
            _ => Searched::Slice(all),
        }
    }

    /// [`Tree::get_str`], searching a window instead when one covers `path`.
    pub fn get_str_in<'t>(&'t self, windows: &[Option<Window<'t>>], path: &str) -> Option<&'t Node> {
        self.searched_for(windows, path).get(path)
    }

    /// [`Tree::subtree`], searching a window instead when one covers `path`'s descendants.
    pub fn subtree_in<'t>(
        &'t self,
        windows: &[Option<Window<'t>>],
        path: &Path,
    ) -> impl Iterator<Item = (&'t Path, &'t Node)> + 't {
        let start = path.subtree_start();
        let own = self.searched_for(windows, path.as_str()).get_key_value(path.as_str());
        own.into_iter().chain(self.searched_for(windows, &start).iter_below(&start))
    }

    /// [`Tree::exists`], searching a window instead when one covers `path`.
    pub fn exists_in<'t>(&'t self, windows: &[Option<Window<'t>>], path: &Path) -> bool {
        let start = path.subtree_start();
        // The nodes that cover `<path>/` hold `path` too, unless `path` is a window's own
        // directory: then the window is not empty, and a descendant is found below.
        let searched = self.searched_for(windows, &start);
        searched.get(path.as_str()).is_some()
            || searched.first_from(Bound::Included(&start)).is_some_and(|(k, _)| k.as_str().starts_with(start.as_str()))
    }

    /// The names of `path`'s children, sorted. A child that is only implied by a deeper node
    /// (its own line missing from a partial dump) is listed too.
    pub fn children(&self, path: &Path) -> Vec<String> {
        self.children_of_str(path.as_str())
    }

    /// [`Tree::children`] for a path given as text (an invalid path has no children).
    pub fn children_of_str(&self, path: &str) -> Vec<String> {
        self.children_of_str_in(&[], path)
    }

    /// A tree holding only `path`'s subtree.
    pub fn extract(&self, path: &Path) -> Tree {
        Tree::from_sorted(self.subtree(path).map(|(p, n)| (p.clone(), n.clone())).collect())
    }

    /// The changes that turn `self` into `other`, sorted by path.
    pub fn diff(&self, other: &Tree) -> Vec<Change> {
        use imbl::ordmap::DiffItem;
        if let (Nodes::Map(a), Nodes::Map(b)) = (&self.nodes, &other.nodes) {
            // imbl skips the subtrees the two maps share.
            return a
                .diff(b)
                .map(|item| match item {
                    DiffItem::Add(p, n) => Change::Added(p.clone(), n.clone()),
                    DiffItem::Remove(p, n) => Change::Removed(p.clone(), n.clone()),
                    DiffItem::Update { old, new } => {
                        Change::Updated { path: old.0.clone(), old: old.1.clone(), new: new.1.clone() }
                    }
                })
                .collect();
        }
        let mut out = Vec::new();
        let (mut old, mut new) = (self.iter().peekable(), other.iter().peekable());
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.cmp(b),
            };
            match order {
                std::cmp::Ordering::Less => {
                    if let Some((p, n)) = old.next() {
                        out.push(Change::Removed(p.clone(), n.clone()));
                    }
                }
                std::cmp::Ordering::Greater => {
                    if let Some((p, n)) = new.next() {
                        out.push(Change::Added(p.clone(), n.clone()));
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let (Some((p, a)), Some((_, b))) = (old.next(), new.next()) {
                        if a != b {
                            out.push(Change::Updated { path: p.clone(), old: a.clone(), new: b.clone() });
                        }
                    }
                }
            }
        }
        out
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(Path, Node)> for Tree {
    fn from_iter<I: IntoIterator<Item = (Path, Node)>>(iter: I) -> Tree {
        Tree::from_sorted(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    fn tree(paths: &[&str]) -> Tree {
        paths.iter().map(|s| (p(s), Node::new(s.as_bytes().to_vec()))).collect()
    }

    /// Every text of up to `len` bytes over `alphabet`, after each of `prefixes`.
    fn texts(prefixes: &[&str], alphabet: &[u8], len: usize) -> Vec<String> {
        let mut out: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
        let mut last = out.clone();
        for _ in 0..len {
            last = last.iter().flat_map(|t| alphabet.iter().map(move |&c| format!("{t}{}", c as char))).collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn the_prefix_skipping_search_finds_what_a_plain_one_finds() {
        // Short paths, and paths behind a prefix longer than one 8-byte step, so that both the
        // byte and the word comparisons meet every order: shorter, longer, equal, `/` and `-`.
        let prefixes = ["/", "/local/domain/0/backend/vif/1"];
        let mut paths: Vec<String> =
            texts(&prefixes, b"a0/-", 4).into_iter().filter(|t| Path::new(t).is_ok()).collect();
        paths.sort();
        paths.dedup();
        let keys = texts(&prefixes, b"a0/-~", 4);
        for (step, offset) in [(1, 0), (2, 1), (3, 0), (7, 3), (31, 5)] {
            let nodes: Vec<(Path, Node)> =
                paths.iter().skip(offset).step_by(step).map(|t| (p(t), Node::new(Vec::new()))).collect();
            for key in keys.iter().map(String::as_str).chain(["", "/local/domain/0/backend/vif/1a0a0a0a0a0"]) {
                let plain = nodes.partition_point(|(k, _)| k.as_str() < key);
                assert_eq!(sorted_position(&nodes, key, false), plain, "{key:?} among {} paths", nodes.len());
                let plain = nodes.partition_point(|(k, _)| k.as_str() <= key);
                assert_eq!(sorted_position(&nodes, key, true), plain, "{key:?} (past equal)");
            }
        }
    }

    #[test]
    fn the_gallop_finds_every_subtree_a_filter_finds() {
        // Subtrees of every size around the gallop's powers of two, between neighbours that
        // share their prefix but for the separator (`/d/a-…`, `/d/a0`).
        for size in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 64, 100] {
            let mut paths = vec!["/d/a-x".to_string(), "/d/a".to_string(), "/d/a0".to_string(), "/c".to_string()];
            paths.extend((0..size).map(|i| format!("/d/a/{i:03}")));
            paths.sort();
            let nodes: Vec<(Path, Node)> = paths.iter().map(|t| (p(t), Node::new(Vec::new()))).collect();
            for prefix in ["/d/a/", "/d/", "/", "/d/a/0", "/e/"] {
                let filtered: Vec<&str> = paths.iter().map(String::as_str).filter(|t| t.starts_with(prefix)).collect();
                let found: Vec<&str> = below_slice(&nodes, prefix).iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(found, filtered, "{prefix:?} with {size} below /d/a");
            }
        }
    }

    #[test]
    fn windows_answer_as_the_whole_tree_does() {
        // Every path of up to three bytes below `/`, some present: each window, alone or with
        // another, must not change any answer, for present, absent, implied and invalid paths.
        let all: Vec<String> = texts(&["/"], b"a0/-", 3).into_iter().filter(|t| Path::new(t).is_ok()).collect();
        let nodes: Vec<(Path, Node)> =
            all.iter().step_by(3).map(|t| (p(t), Node::new(t.as_bytes().to_vec()))).collect();
        let t = Tree::from_sorted(nodes);
        let other = Tree::from_sorted(vec![(p("/a/0"), Node::new(Vec::new())), (p("/a/a/a"), Node::new(Vec::new()))]);
        assert!(other.window("/a/").is_some());
        let probes: Vec<String> = texts(&["/"], b"a0/-", 3).into_iter().chain(["".into(), "//a".into()]).collect();
        let directories = ["/a/", "/0/", "/a/a/", "/a-/", "/", "/b/"];
        for first in directories {
            for second in directories {
                let windows = [t.window(first), t.window(second)];
                // The other tree's window covers the same paths, and must be ignored.
                let foreign = [other.window(first), t.window(second)];
                for probe in &probes {
                    for w in [&windows, &foreign] {
                        assert_eq!(t.get_str_in(w, probe), t.get_str(probe), "{probe:?} with {first} {second}");
                        assert_eq!(t.children_of_str_in(w, probe), t.children_of_str(probe), "children {probe:?}");
                        if let Ok(path) = Path::new(probe) {
                            assert_eq!(t.exists_in(w, &path), t.exists(&path), "exists {probe:?}");
                            let got: Vec<&Path> = t.subtree_in(w, &path).map(|(k, _)| k).collect();
                            let want: Vec<&Path> = t.subtree(&path).map(|(k, _)| k).collect();
                            assert_eq!(got, want, "subtree {probe:?} with {first} {second}");
                        }
                    }
                }
            }
        }
        // A map has no windows: its searches do not cross an array.
        let mut map = t.clone();
        map.insert(p("/z"), Node::new(Vec::new()));
        assert!(map.window("/a/").is_none());
        assert!(t.window("/a/").is_some() && t.window("/b/").is_none());
    }

    #[test]
    fn children_skip_subtrees_and_keep_dash_siblings() {
        let t = tree(&["/a/b", "/a/b-c", "/a/b/x", "/a/b/y/z", "/a/c/d", "/a0", "/a-"]);
        assert_eq!(t.children(&p("/a")), vec!["b", "b-c", "c"]);
        assert_eq!(t.children(&p("/a/b")), vec!["x", "y"]);
        assert_eq!(t.children(&Path::root()), vec!["a", "a-", "a0"]);
        assert!(t.children(&p("/a/b/x")).is_empty());
    }

    #[test]
    fn subtree_is_a_range() {
        let t = tree(&["/a/b", "/a/b-c", "/a/b/x", "/a/b/y/z", "/a/c"]);
        let got: Vec<&str> = t.subtree(&p("/a/b")).map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, vec!["/a/b", "/a/b/x", "/a/b/y/z"]);
        assert!(t.exists(&p("/a/b/y")));
        assert!(!t.contains(&p("/a/b/y")));
    }

    #[test]
    fn diff_reports_every_change() {
        let a = tree(&["/x", "/y"]);
        let mut b = a.clone();
        b.remove(&p("/x"));
        b.insert(p("/y"), Node::new(b"new".to_vec()));
        b.insert(p("/z"), Node::new(Vec::new()));
        let d = a.diff(&b);
        assert_eq!(d.len(), 3);
        assert!(matches!(&d[0], Change::Removed(p, _) if p.as_str() == "/x"));
        assert!(matches!(&d[1], Change::Updated { path, .. } if path.as_str() == "/y"));
        assert!(matches!(&d[2], Change::Added(p, _) if p.as_str() == "/z"));
    }

    #[test]
    fn perms_rules() {
        let perms = Perms::parse("n1,r0,b5").unwrap();
        assert_eq!(perms.owner(), 1);
        assert_eq!(perms.access_for(1), Access::Both);
        assert_eq!(perms.access_for(5), Access::Both);
        assert_eq!(perms.access_for(7), Access::None);
        assert_eq!(perms.to_xs_string(), "n1,r0,b5");
        assert!(Perms::parse("x1").is_none());
        assert!(Perms::parse("n").is_none());
        assert!(Perms::parse("").is_none());
    }

    /// The same nodes held as a sorted array and as a map answer every query alike, and the
    /// array becomes a map on its first change without losing a node.
    #[test]
    fn a_sorted_tree_answers_as_the_map() {
        let paths = ["/a", "/a/b", "/a/b-c", "/a/b/x", "/a/b/y/z", "/a/c/d", "/a0", "/a-", "/z", "/a/b/y"];
        let mut map = Tree::new();
        for s in paths {
            map.insert(p(s), Node::new(s.as_bytes().to_vec()));
        }
        // Unsorted and with a path given twice: sorted, and the later node kept.
        let mut given: Vec<(Path, Node)> = paths.iter().rev().map(|s| (p(s), Node::new(b"first".to_vec()))).collect();
        given.extend(paths.iter().map(|s| (p(s), Node::new(s.as_bytes().to_vec()))));
        let sorted = Tree::from_sorted(given);
        assert!(matches!(sorted.nodes, Nodes::Sorted(_)));
        assert!(sorted == map);
        assert!(map == sorted);
        assert_eq!(sorted.len(), paths.len());
        let queries = ["/", "/a", "/a/b", "/a/b/y", "/a/c", "/a0", "/b", "/z"];
        for q in queries {
            let q = p(q);
            assert_eq!(sorted.children(&q), map.children(&q), "children of {q}");
            assert_eq!(sorted.get(&q), map.get(&q), "{q}");
            assert_eq!(sorted.exists(&q), map.exists(&q), "{q}");
            let sub = |t: &Tree| t.subtree(&q).map(|(k, _)| k.as_str().to_string()).collect::<Vec<_>>();
            assert_eq!(sub(&sorted), sub(&map), "subtree of {q}");
            assert!(sorted.extract(&q) == map.extract(&q));
        }
        let mut changed = sorted.clone();
        changed.remove(&p("/a/b"));
        changed.insert(p("/a/b/x"), Node::new(b"new".to_vec()));
        changed.insert(p("/n"), Node::new(Vec::new()));
        assert!(matches!(changed.nodes, Nodes::Map(_)));
        assert!(matches!(sorted.nodes, Nodes::Sorted(_)), "a clone changes alone");
        assert_eq!(sorted.len(), paths.len());
        let mut changed_map = map.clone();
        changed_map.remove(&p("/a/b"));
        changed_map.insert(p("/a/b/x"), Node::new(b"new".to_vec()));
        changed_map.insert(p("/n"), Node::new(Vec::new()));
        // The diff between an array and a map is the maps' diff.
        assert_eq!(sorted.diff(&changed), map.diff(&changed_map));
        assert_eq!(changed.diff(&sorted), changed_map.diff(&map));
        assert_eq!(sorted.diff(&changed).len(), 3);
        assert!(Tree::from_sorted(Vec::new()).is_empty());
    }

    #[test]
    fn insert_with_parents_creates_ancestors() {
        let mut t = Tree::new();
        t.insert_with_parents(p("/a/b/c"), Node::new(b"v".to_vec()), None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.text("/a"), Some(""));
    }
}
