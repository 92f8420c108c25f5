//! The harness itself works: a private daemon starts, takes writes and lists them.
mod support;

#[test]
fn private_xenstored_round_trip() {
    let xs = support::Xenstored::start();
    xs.write(&[("/local/domain/1/name", "guest1")]);
    let out = xs.tool("xenstore-ls", &["-fp", "/local/domain/1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "/local/domain/1/name = \"guest1\"   (n0)\n");
    let pid = xs.pid();
    xs.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z")).unwrap_or(true)
    );
}
