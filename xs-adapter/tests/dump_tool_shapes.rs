//! The rarer shapes of `xenstore-ls` output, produced by the real tool and read back:
//! unreadable values and permissions (EACCES, which dom0 never meets, so `xs_read` and
//! `xs_get_permissions` are made to fail by a small LD_PRELOAD library), names cut at the
//! tree format's width, and listings deeper than the width.

mod support;

use merge_core::xenstore::{Path, Perms};
use std::path::PathBuf;
use std::process::Command;
use support::Xenstored;
use xs_adapter::dump::{read, DumpErrorKind, Format, ReadOptions, WarningKind};

/// Fails `xs_read` / `xs_get_permissions` with EACCES for paths containing `$EACCES_READ` /
/// `$EACCES_PERMS`, and defers to libxenstore otherwise.
const EACCES_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
struct xs_handle;
struct xs_permissions;
typedef unsigned int xs_transaction_t;
static int hidden(const char *path, const char *var) {
    const char *h = getenv(var);
    return h && *h && strstr(path, h);
}
void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *len) {
    static void *(*real)(struct xs_handle *, xs_transaction_t, const char *, unsigned int *);
    if (!real) real = dlsym(RTLD_NEXT, "xs_read");
    if (hidden(path, "EACCES_READ")) { errno = EACCES; return NULL; }
    return real(h, t, path, len);
}
struct xs_permissions *xs_get_permissions(struct xs_handle *h, xs_transaction_t t, const char *path, unsigned int *num) {
    static struct xs_permissions *(*real)(struct xs_handle *, xs_transaction_t, const char *, unsigned int *);
    if (!real) real = dlsym(RTLD_NEXT, "xs_get_permissions");
    if (hidden(path, "EACCES_PERMS")) { errno = EACCES; return NULL; }
    return real(h, t, path, num);
}
"#;

fn eacces_so() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("xlsync-eacces.{}.c", std::process::id()));
    let so = dir.join(format!("xlsync-eacces.{}.so", std::process::id()));
    std::fs::write(&src, EACCES_C).unwrap();
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}); apt-get install gcc (see .ci/run)"));
    assert!(status.success(), "building the EACCES preload failed");
    let _ = std::fs::remove_file(&src);
    so
}

fn ls_with(xs: &Xenstored, so: &PathBuf, env: &[(&str, &str)], args: &[&str]) -> Vec<u8> {
    let mut c = xs.command("xenstore-ls");
    c.args(args).env("LD_PRELOAD", so);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run xenstore-ls");
    assert!(out.status.success(), "xenstore-ls {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn unreadable_values_and_permissions_from_the_real_tool() {
    let xs = Xenstored::start_empty();
    xs.write(&[("/q/one", "1"), ("/q/secret/kid", "2"), ("/q/three", "3")]);
    let so = eacces_so();
    let base = Some(Path::new("/q").unwrap());
    for (flags, format) in
        [("-fp", Format::FlatPerms), ("-f", Format::Flat), ("-p", Format::TreePerms), ("", Format::Tree)]
    {
        let args: Vec<&str> = [flags, "/q"].into_iter().filter(|a| !a.is_empty()).collect();
        // Value unreadable, permissions readable: `secret:` then `  (n0)` with -p.
        let dump = ls_with(&xs, &so, &[("EACCES_READ", "secret")], &args);
        let snap = read(&dump, &ReadOptions { base: base.clone(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{flags}: {e}\n{}", String::from_utf8_lossy(&dump)));
        assert_eq!(snap.format, format);
        for p in ["/q/secret", "/q/secret/kid"] {
            let node = snap.tree.get_str(p).unwrap();
            assert!(node.unreadable && node.known_value().is_none(), "{flags} {p}");
            assert_eq!(node.perms, if format.has_perms() { Perms::parse("n0") } else { None }, "{flags} {p}");
        }
        assert_eq!(snap.tree.text("/q/three"), Some("3"));
        // Both unreadable: `secret:` then a blank line.
        let dump = ls_with(&xs, &so, &[("EACCES_READ", "secret"), ("EACCES_PERMS", "secret")], &args);
        let snap = read(&dump, &ReadOptions { base: base.clone(), ..Default::default() }).unwrap();
        let node = snap.tree.get_str("/q/secret").unwrap();
        assert!(node.unreadable && node.perms.is_none(), "{flags}");
        // Permissions unreadable: `-fp` ends the line after the value's quote, `-p` after the
        // padding; the nodes keep their values and have no permissions.
        let dump = ls_with(&xs, &so, &[("EACCES_PERMS", "secret")], &args);
        let snap = read(&dump, &ReadOptions { base: base.clone(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{flags}: {e}\n{}", String::from_utf8_lossy(&dump)));
        assert_eq!(snap.tree.text("/q/secret/kid"), Some("2"), "{flags}");
        assert_eq!(snap.tree.get_str("/q/secret/kid").unwrap().perms, None);
        assert_eq!(
            snap.tree.get_str("/q/one").unwrap().perms,
            if format.has_perms() { Perms::parse("n0") } else { None }
        );
        let unreadable_perms =
            snap.warnings.iter().filter(|w| matches!(w.kind, WarningKind::PermsUnreadable { .. })).count();
        assert_eq!(unreadable_perms, if format.has_perms() { 2 } else { 0 }, "{flags}: {:?}", snap.warnings);
    }
    let _ = std::fs::remove_file(&so);
}

#[test]
fn names_cut_at_the_width_are_flagged() {
    let xs = Xenstored::start_empty();
    let long = "n".repeat(90);
    xs.write(&[(&format!("/u/{long}/child"), "v"), ("/u/short", "x")]);
    let out = xs.tool("xenstore-ls", &["/u"]);
    let snap = read(&out.stdout, &ReadOptions { base: Some(Path::new("/u").unwrap()), ..Default::default() }).unwrap();
    // xenstore-ls printed 72 of the 90 bytes; the path below it carries the cut name.
    let cut = format!("/u/{}", "n".repeat(72));
    assert_eq!(snap.tree.text(&format!("{cut}/child")), Some("v"));
    assert!(
        snap.warnings.iter().any(|w| w.kind == WarningKind::NameMayBeCut { path: cut.clone() }),
        "{:?}",
        snap.warnings
    );
    // -f has no width, so nothing is cut there.
    let out = xs.tool("xenstore-ls", &["-f", "/u"]);
    let snap = read(&out.stdout, &ReadOptions::default()).unwrap();
    assert_eq!(snap.tree.text(&format!("/u/{long}/child")), Some("v"));
    assert!(snap.warnings.is_empty());
}

#[test]
fn listings_deeper_than_the_width_lose_the_names_at_depth_72() {
    let xs = Xenstored::start_empty();
    let deep = format!("/d{}", "/x".repeat(75));
    xs.write(&[(&format!("{deep}/end"), "value")]);
    let out = xs.tool("xenstore-ls", &["/d"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // At depth 72 the name is printed with precision 0: the line is 72 spaces and ` = ""`.
    let line =
        text.lines().position(|l| l.starts_with(&" ".repeat(72)) && l.trim_start().starts_with('=')).unwrap() + 1;
    let e = read(&out.stdout, &ReadOptions { base: Some(Path::new("/d").unwrap()), ..Default::default() }).unwrap_err();
    assert_eq!((e.line, e.column), (line, 73), "{e}");
    assert_eq!(e.kind, DumpErrorKind::EmptyName { width: 80 });
    // The same store in -f reads fine.
    let out = xs.tool("xenstore-ls", &["-f", "/d"]);
    let snap = read(&out.stdout, &ReadOptions::default()).unwrap();
    assert_eq!(snap.tree.text(&format!("{deep}/end")), Some("value"));
}
