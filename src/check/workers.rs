//! The threads a check may split its objects over: a pool the size of the machine, made on
//! first use and kept by the runner, so a check does not pay for starting threads (nor for
//! the fresh allocator pages a new thread touches).

use std::sync::{Arc, OnceLock};

/// A runner's worker threads (cheap to clone; clones share the pool).
#[derive(Clone)]
pub struct Workers {
    pool: Arc<OnceLock<Option<rayon::ThreadPool>>>,
    /// threads to use, resolved once: asking the OS for the core count reads cgroup files,
    /// which cost a check of a few objects more than its evaluation did
    threads: usize,
}

impl Default for Workers {
    fn default() -> Workers {
        Workers::new(0)
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.threads())
            .finish()
    }
}

impl Workers {
    /// `threads` workers (0: one per core; 1: checks stay on their own thread).
    pub fn new(threads: usize) -> Workers {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Workers {
            pool: Arc::default(),
            threads,
        }
    }

    /// How many threads a check may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `jobs` (one per part of a check) on the pool and returns their results in order;
    /// on the caller's thread when there is no pool.
    pub fn run<T: Send>(&self, jobs: Vec<Box<dyn FnOnce() -> T + Send + '_>>) -> Vec<T> {
        let pool = self.pool.get_or_init(|| {
            let n = self.threads();
            (n > 1)
                .then(|| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .thread_name(|i| format!("tocsin-check-{i}"))
                        .build()
                        .map_err(|e| tracing::warn!("no check worker threads: {e}"))
                        .ok()
                })
                .flatten()
        });
        let Some(pool) = pool else {
            return jobs.into_iter().map(|j| j()).collect();
        };
        // The caller runs the first part itself while the pool runs the others: it would
        // only wait otherwise, and one hand-off fewer is one wake-up fewer a check.
        let mut jobs = jobs.into_iter();
        let Some(first) = jobs.next() else {
            return Vec::new();
        };
        let mut out: Vec<Option<T>> = (0..jobs.len() + 1).map(|_| None).collect();
        let (head, rest) = out.split_at_mut(1);
        pool.in_place_scope(|s| {
            for (job, slot) in jobs.zip(rest.iter_mut()) {
                s.spawn(move |_| *slot = Some(job()));
            }
            head[0] = Some(first());
        });
        out.into_iter().map(|o| o.expect("every job ran")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Workers;

    #[test]
    fn results_come_back_in_job_order() {
        for threads in [1, 2, 4] {
            let w = Workers::new(threads);
            let data: Vec<u64> = (0..1000).collect();
            let jobs: Vec<Box<dyn FnOnce() -> u64 + Send + '_>> = data
                .chunks(100)
                .map(|c| Box::new(move || c.iter().sum::<u64>()) as Box<dyn FnOnce() -> u64 + Send>)
                .collect();
            let sums = w.run(jobs);
            let want: Vec<u64> = data.chunks(100).map(|c| c.iter().sum()).collect();
            assert_eq!(sums, want, "{threads} threads");
        }
    }
}
