//! A small open-addressing map from source pages to their copies, for
//! deduplication during compaction (`no_std` + `alloc`, no hashing crate).

use alloc::vec;
use alloc::vec::Vec;

/// `u64` keys (never 0) to `u64` values; grows at half load.
#[derive(Debug, Default)]
pub(crate) struct PageMap {
    slots: Vec<(u64, u64)>,
    len: usize,
}

impl PageMap {
    fn slot(&self, key: u64) -> usize {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.slots.len() - 1)
    }

    pub(crate) fn get(&self, key: u64) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.slot(key);
        loop {
            match self.slots[i] {
                (0, _) => return None,
                (k, v) if k == key => return Some(v),
                _ => i = (i + 1) & (self.slots.len() - 1),
            }
        }
    }

    pub(crate) fn insert(&mut self, key: u64, value: u64) {
        debug_assert!(key != 0);
        if (self.len + 1) * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(1024);
            let old = core::mem::replace(&mut self.slots, vec![(0, 0); size]);
            self.len = 0;
            for (k, v) in old.into_iter().filter(|&(k, _)| k != 0) {
                self.insert(k, v);
            }
        }
        let mut i = self.slot(key);
        while self.slots[i].0 != 0 && self.slots[i].0 != key {
            i = (i + 1) & (self.slots.len() - 1);
        }
        if self.slots[i].0 == 0 {
            self.len += 1;
        }
        self.slots[i] = (key, value);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn map_holds_many_keys() {
        let mut m = super::PageMap::default();
        for k in 1..5000u64 {
            m.insert(k << 12 | 1, k);
        }
        for k in 1..5000u64 {
            assert_eq!(m.get(k << 12 | 1), Some(k));
        }
        assert_eq!(m.get(7), None);
    }
}
