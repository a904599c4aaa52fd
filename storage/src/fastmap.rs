//! Hash maps for the hot paths' internal keys (row keys, table ids, lock
//! keys). std's SipHash cost about 7% of a TPC-B transaction's instructions;
//! foldhash is several times cheaper and still seeded per process, so
//! clients cannot choose keys that collide.

/// The hasher of [`FastMap`] and [`FastSet`].
pub type FastHash = foldhash::fast::RandomState;
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHash>;
pub type FastSet<K> = std::collections::HashSet<K, FastHash>;
