//! Which of a few per-thread copies the current thread uses. Values that every
//! task touches (success counters, the bearer header) are kept once per
//! stripe, so that worker threads do not fight over one cache line; readers
//! add the stripes up.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many copies: a power of two, enough for the worker threads of the
/// machines hfconnect runs on. More threads share stripes, which stays correct.
pub(crate) const STRIPES: usize = 16;

/// This thread's stripe, below [`STRIPES`]; threads take them in turn.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.with(|s| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_stripe_and_threads_spread() {
        let here = stripe();
        assert_eq!(stripe(), here);
        let others: std::collections::HashSet<usize> = (0..4)
            .map(|_| std::thread::spawn(stripe).join().unwrap_or(usize::MAX))
            .collect();
        assert!(others.iter().all(|s| *s < STRIPES));
        assert!(others.len() > 1, "four threads all took one stripe");
    }
}
