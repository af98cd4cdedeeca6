//! [`VecMap`]: the crate's small ordered map, a `Vec` of `(key, value)` pairs kept sorted by key.
//!
//! The maps it serves hold a handful of entries (the calls open on one connection, the
//! endpoint namespaces of one actor): a binary search over a `Vec` is as fast as a tree there,
//! and the map costs one small generic routine per use instead of `BTreeMap`'s rebalancing code
//! (several KB per key/value pair type in a size-optimised binary). Iteration is in key order,
//! as a `BTreeMap`'s, so nothing that iterates one depends on insertion order.

use alloc::vec::Vec;
use core::borrow::Borrow;

/// An ordered map over a sorted `Vec` (see the module docs). Insert and remove are `O(n)`:
/// meant for small maps.
#[derive(Clone)]
pub(crate) struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Inserts `value` under `key`; the value it replaced, if any.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(core::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The value under `key`, inserted with `make` first if there is none.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, make()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Removes the entry under `key`; its value, if there was one.
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }
}

impl<K, V> VecMap<K, V> {
    /// The entries, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    #[test]
    fn keeps_key_order_and_replaces_in_place() {
        let mut m: VecMap<u64, &str> = VecMap::default();
        assert_eq!(m.insert(5, "e"), None);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(3, "c"), None);
        assert_eq!(m.insert(3, "C"), Some("c"));
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["a", "C", "e"]);
        assert_eq!(m.get(&3), Some(&"C"));
        assert!(m.contains_key(&5) && !m.contains_key(&4));
        assert_eq!(m.remove(&1), Some("a"));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), ["C", "e"]);
        assert_eq!(m.remove(&3), Some("C"));
        assert_eq!(m.remove(&5), Some("e"));
        assert!(m.is_empty());
    }

    #[test]
    fn borrowed_lookup_and_get_or_insert_with() {
        let mut m: VecMap<String, u32> = VecMap::default();
        *m.get_or_insert_with("b".to_string(), || 10) += 1;
        *m.get_or_insert_with("a".to_string(), || 20) += 1;
        *m.get_or_insert_with("b".to_string(), || panic!("present: not made again")) += 1;
        assert_eq!(m.get("b"), Some(&12));
        assert_eq!(m.get("a"), Some(&21));
        assert_eq!(m.get("c"), None);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [21, 12]);
        assert_eq!(m.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), [("a", 21), ("b", 12)]);
    }
}
