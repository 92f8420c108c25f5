//! xs-adapter: the edge of xlsync. It reads snapshots and userdata files, talks to a live
//! xenstored, and hosts the `xlsync` command. It calls merge-core; merge-core never calls it.

pub mod cli;
pub mod dump;
pub mod live;
pub mod userdata;
pub mod wire;
