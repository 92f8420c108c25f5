//! Writes the committed seed corpora under `fuzz/seeds/<target>/` from the project's own
//! generators (testkit hosts, the dump writers, the wire encoder), deterministically:
//! `cargo run --example make_seeds` from `fuzz/`.

use merge_core::testkit::{host, HostProfile};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::Path;
use xs_adapter::{dump, wire};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let save = |target: &str, name: String, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    for seed in 0u8..4 {
        let mut key = [0u8; 32];
        key[0] = seed;
        let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &key));
        let g = host(HostProfile { guests: 1..=1, ..HostProfile::default() }).new_tree(&mut runner).unwrap().current();
        let tree = &g.scenario.tree;
        save("dump_flat", format!("host{seed}.txt"), &dump::write_f(tree).unwrap());
        save("dump_flat_perms", format!("host{seed}.txt"), &dump::write_fp(tree).unwrap());
        save("dump_scenario", format!("host{seed}.txt"), &dump::write_scenario(tree).unwrap());
        for (domid, bytes) in &g.scenario.userdata {
            save("libxl_json", format!("host{seed}-d{domid}.json"), bytes);
        }
        // Reconcile: the generator seed, then a few damaging edits.
        let mut input = vec![seed, 0, 0, 0, 0, 0, 0, 0, seed.wrapping_mul(67)];
        input.extend_from_slice(&[2, 0, seed, 7, 3, 1, seed, 40, 4, 0, 9, 0]);
        save("reconcile", format!("host{seed}.bin"), &input);
    }
    let tree_listing = b"local = \"\"\n domain = \"\"\n  0 = \"\"\n   name = \"Domain-0\"\n   domid = \"0\"\n";
    save("dump_tree", "dom0.txt".into(), tree_listing);
    let tree_perms = b"local = \"\" . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n domain = \"\" . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . . .  (n0)\n";
    save("dump_tree_perms", "dom0.txt".into(), tree_perms);
    let mut frames = Vec::new();
    let requests = [
        wire::Request::Read("/local/domain/1/name"),
        wire::Request::Directory("/local/domain"),
        wire::Request::GetPerms("/vm"),
    ];
    for (i, r) in requests.iter().enumerate() {
        wire::encode(r, i as u32, 0, &mut frames).unwrap();
    }
    save("xs_wire", "requests.bin".into(), &frames);
}
