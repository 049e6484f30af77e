//! A stable hash of names: probe phases and shard membership are derived from it, so it must
//! give the same value on every platform, release and restart (std's hasher does not promise to).

/// FNV-1a over `bytes`, then a final mix so that names differing only in their last characters
/// spread over the whole range.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}
