//! A concurrent writer for the live-snapshot tests: for `duration_ms` it commits, as fast as it
//! can, transactions that each set three nodes of one domain to the same counter, in three
//! areas of the store:
//!
//! * `/local/domain/<a>/control/pair` (the domain's home),
//! * `/libxl/<a>/pair` (the toolstack's record),
//! * `/local/domain/0/backend/vbd/<a>/51712/pair` (a backend in dom0's area),
//!
//! cycling `a` over `first..first+count`. A snapshot consistent per domain therefore always
//! shows the three equal. It stops after `duration_ms` or once the node [`STOP`] exists, and
//! prints `commits=<n> retries=<n>`.
//!
//! Usage: `live_pair_writer <socket> <first-domid> <count> <duration-ms>`
use std::time::{Duration, Instant};
use xs_adapter::live::{Client, Endpoint};

/// Writing this node tells the writer to stop.
pub const STOP: &str = "/xlsync-test/stop-writer";

/// The three nodes that every transaction sets together for domain `a`.
pub fn pair_paths(a: u32) -> [String; 3] {
    [
        format!("/local/domain/{a}/control/pair"),
        format!("/libxl/{a}/pair"),
        format!("/local/domain/0/backend/vbd/{a}/51712/pair"),
    ]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: {} <socket> <first-domid> <count> <duration-ms>", args[0]);
    let mut client = Client::connect(Endpoint::Socket(args[1].clone().into()))?;
    let first: u32 = args[2].parse()?;
    let count: u32 = args[3].parse()?;
    let until = Instant::now() + Duration::from_millis(args[4].parse()?);
    let (mut commits, mut attempts) = (0u64, 0u64);
    let mut n = 0u64;
    while Instant::now() < until && client.read(STOP)?.is_none() {
        n += 1;
        let a = first + (n % u64::from(count)) as u32;
        let value = n.to_string();
        client.transaction(|tx| {
            attempts += 1;
            for p in pair_paths(a) {
                tx.write(&p, value.as_bytes())?;
            }
            Ok(())
        })?;
        commits += 1;
    }
    println!("commits={commits} retries={}", attempts - commits);
    Ok(())
}
