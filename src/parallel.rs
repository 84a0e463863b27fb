//! One way to spread pure work over the cores: the items split into one contiguous chunk per
//! core, each mapped on a scoped thread, the results in the items' order. Used where a large
//! fleet's work is per item and independent (render's input checks, the gateway's config
//! shards); a process that cannot start a thread does the chunk on the calling one.

/// `f` of every item, in order, on up to as many threads as there are cores.
pub fn map<T: Sync, R: Send>(items: &[T], name: &str, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(items.len());
    if threads < 2 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| {
                let handle = std::thread::Builder::new()
                    .name(name.to_owned())
                    .spawn_scoped(scope, move || chunk.iter().map(f).collect::<Vec<R>>());
                (chunk, handle)
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|(chunk, handle)| match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: the same work here.
                Err(_) => chunk.iter().map(f).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order_of_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            super::map(&items, "test", |n| n * 2),
            items.iter().map(|n| n * 2).collect::<Vec<_>>()
        );
        assert!(super::map(&[] as &[u32], "test", |n| *n).is_empty());
    }
}
