//! Work spread over the machine's cores, in order. The domains of a host are independent
//! (merge-core is pure, a snapshot is shared read-only, each userdata file has its own lock), so
//! threads take small runs of them in turn until none is left; results come back in the order
//! given and do not depend on which thread did what.

use std::sync::Mutex;

/// Fewer items than this per thread are not worth a thread.
pub const MIN_PER_THREAD: usize = 16;

/// How many items a thread takes at a time: small enough that the threads finish together
/// though domains differ in cost (an HVM guest with a QEMU, a guest with many devices), large
/// enough that taking them costs nothing.
const RUN: usize = 8;

/// `items.map(f)`, on up to as many threads as there are cores, keeping the order.
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let count = items.len();
    let mut runs: Vec<(usize, Vec<T>)> = Vec::with_capacity(count.div_ceil(RUN));
    let mut rest = items.into_iter();
    loop {
        let run: Vec<T> = rest.by_ref().take(RUN).collect();
        if run.is_empty() {
            break;
        }
        runs.push((runs.len(), run));
    }
    let queue = Mutex::new(runs.into_iter());
    let (f, queue) = (&f, &queue);
    let mut done: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    // A poisoned queue means another thread panicked: stop, and let its panic
                    // be re-raised below.
                    while let Some((i, run)) = queue.lock().ok().and_then(|mut q| q.next()) {
                        done.push((i, run.into_iter().map(f).collect::<Vec<R>>()));
                    }
                    done
                })
            })
            .collect();
        // A panic in a thread is a bug: re-raise it as the sequential code would have.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(count);
    for (_, run) in done {
        out.extend(run);
    }
    out
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
