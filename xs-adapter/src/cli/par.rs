//! Work spread over the machine's cores, in order. The domains of a host are independent
//! (merge-core is pure, a snapshot is shared read-only, each userdata file has its own lock), so
//! a host is cut into contiguous runs, one per core; results come back in the order given and do
//! not depend on how the host was cut.

/// Fewer items than this per thread are not worth a thread.
pub const MIN_PER_THREAD: usize = 16;

/// `items.map(f)`, on up to as many threads as there are cores, keeping the order.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let run = items.len().div_ceil(threads);
    let mut runs: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let r: Vec<T> = rest.by_ref().take(run).collect();
        if r.is_empty() {
            break;
        }
        runs.push(r);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            runs.into_iter().map(|r| scope.spawn(move || r.into_iter().map(f).collect::<Vec<_>>())).collect();
        // A panic in a thread is a bug: re-raise it as the sequential code would have.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// Drops `value` on a thread of its own. Freeing a thousand domains' trees and documents takes
/// longer than printing them; the process usually exits before that thread is done, and a caller
/// that goes on loses nothing.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    // If no thread can be started, drop here.
    let _ = std::thread::Builder::new().name("xlsync-drop".into()).spawn(move || drop(value));
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
