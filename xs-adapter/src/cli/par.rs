//! Work spread over the machine's cores, in order. The domains of a host are independent
//! (merge-core is pure, a snapshot is shared read-only, each userdata file has its own lock), so
//! threads take small runs of them until none is left; results come back in the order given and
//! do not depend on which thread did what. Every step runs on rayon's one pool: its threads,
//! their stacks and their heaps are made once per process, not once per step (fresh memory is
//! most of what a new thread costs, and a heap left by a finished thread is not reused).

/// Fewer items than this are mapped on the calling thread: two threads' worth of domains is
/// the least worth sharing, and a command about a few domains never starts the pool.
const MIN_SHARED: usize = 32;

/// The fewest items a thread takes at a time: small enough that the threads finish together
/// though domains differ in cost (an HVM guest with a QEMU, a guest with many devices), large
/// enough that taking them costs nothing.
const RUN: usize = 8;

/// `items.map(f)`, on the pool's threads (one per core), keeping the order. The threads take
/// runs of [`RUN`] items in the order given, so that the first items are done first: a domain
/// whose userdata file is still being read ahead ([`super::inputs`]) comes after those already
/// read, and a thread that must wait for one waits the least.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    if items.len() < MIN_SHARED {
        return items.into_iter().map(f).collect();
    }
    let n = items.len();
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let start = next.fetch_add(RUN, Ordering::Relaxed);
        if start >= n {
            break;
        }
        for i in start..n.min(start + RUN) {
            // Each index is taken by one thread, once: the item is there, and its slot empty.
            let item = items[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(item) = item {
                *results[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(f(item));
            }
        }
    };
    rayon::scope(|scope| {
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(|_| work());
        }
        work();
    });
    let results = results.into_iter().map(|r| r.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
    results.map(|r| r.expect("every item is mapped once")).collect()
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
