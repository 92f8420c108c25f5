//! Work spread over the machine's cores, in order. The domains of a host are independent
//! (merge-core is pure, a snapshot is shared read-only, each userdata file has its own lock), so
//! threads take small runs of them until none is left; results come back in the order given and
//! do not depend on which thread did what. Every step runs on rayon's one pool: its threads,
//! their stacks and their heaps are made once per process, not once per step (fresh memory is
//! most of what a new thread costs, and a heap left by a finished thread is not reused).

/// Fewer items than this are mapped on the calling thread: two threads' worth of domains is
/// the least worth sharing, and a command about a few domains never starts the pool.
const MIN_SHARED: usize = 32;

/// How many items a thread takes at a time: small enough that the threads finish together
/// though domains differ in cost (an HVM guest with a QEMU, a guest with many devices), large
/// enough that taking them costs nothing.
const RUN: usize = 8;

/// `items.map(f)`, on the pool's threads (one per core), keeping the order. The threads take
/// runs of [`RUN`] items in the order given, so that the first items are done first: a domain
/// whose userdata file is still being read ahead ([`super::inputs`]) comes after those already
/// read, and a thread that must wait for one waits the least.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    use rayon::iter::{ParallelBridge, ParallelIterator};
    if items.len() < MIN_SHARED {
        return items.into_iter().map(f).collect();
    }
    let mut items = items.into_iter();
    let runs = std::iter::from_fn(|| Some(items.by_ref().take(RUN).collect::<Vec<T>>()).filter(|run| !run.is_empty()));
    // A bridge hands the runs out one at a time, in order, to whichever thread asks first.
    let mut done: Vec<(usize, Vec<R>)> =
        runs.enumerate().par_bridge().map(|(i, run)| (i, run.into_iter().map(&f).collect())).collect();
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().flat_map(|(_, run)| run).collect()
}

/// Drops `value` on a thread of the pool. Freeing a thousand domains' trees and documents takes
/// longer than printing them; the process usually exits before that thread is done, and a caller
/// that goes on loses nothing.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    rayon::spawn(move || drop(value));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_order_is_kept_however_the_items_are_cut() {
        for n in [0, 1, 15, 16, 33, 1000] {
            let items: Vec<usize> = (0..n).collect();
            assert_eq!(super::map(items.clone(), |i| i * 3), items.iter().map(|i| i * 3).collect::<Vec<_>>());
        }
    }
}
