//! A small least-recently-used cache of pages, bounded in bytes, shared by the reader's lookups and
//! cursors. Branch pages near the root are read again by every lookup; leaves are read once per
//! iteration and age out, so memory stays at the budget however large the file.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::reader::PageBytes;

#[derive(Debug)]
pub(crate) struct PageCache {
    budget: usize,
    held: usize,
    tick: u64,
    pages: HashMap<u64, (PageBytes, u64)>,
    /// Last use → page id: the oldest first.
    order: BTreeMap<u64, u64>,
}

impl PageCache {
    pub fn new(budget: usize) -> Self {
        PageCache {
            budget,
            held: 0,
            tick: 0,
            pages: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, pgid: u64) -> Option<PageBytes> {
        self.tick += 1;
        let (bytes, used) = self.pages.get_mut(&pgid)?;
        self.order.remove(used);
        *used = self.tick;
        self.order.insert(self.tick, pgid);
        Some(Arc::clone(bytes))
    }

    /// Keeps `bytes` unless it would take more than a quarter of the budget; evicts the least
    /// recently used pages to stay within the budget.
    pub fn insert(&mut self, pgid: u64, bytes: PageBytes) {
        if bytes.len() > self.budget / 4 || self.pages.contains_key(&pgid) {
            return;
        }
        self.tick += 1;
        self.held += bytes.len();
        self.pages.insert(pgid, (bytes, self.tick));
        self.order.insert(self.tick, pgid);
        while self.held > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = self.pages.remove(&oldest) {
                self.held -= b.len();
            }
        }
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize) -> PageBytes {
        Arc::new(vec![0u8; n])
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut c = PageCache::new(400);
        for id in 0..4 {
            c.insert(id, page(100));
        }
        assert!(c.get(0).is_some());
        c.insert(4, page(100));
        assert!(c.get(1).is_none(), "1 was the least recently used");
        assert!(c.get(0).is_some() && c.get(4).is_some());
        assert_eq!(c.held(), 400);
        c.insert(9, page(101));
        assert!(c.get(9).is_none(), "larger than a quarter of the budget");
    }
}
