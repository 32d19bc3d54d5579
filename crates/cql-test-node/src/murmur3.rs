//! Cassandra's `Murmur3Partitioner` token function.
//!
//! Role: map a serialized partition key to its ring token, exactly as Cassandra
//! does, so that rows are served in the order a real node serves them and token
//! ranges select the same rows.
//!
//! Invariants (all copied from Cassandra's behaviour, not from the reference
//! MurmurHash3):
//! - The hash is MurmurHash3 x64 128 with seed 0; the token is the first 64 bits
//!   read as a signed `i64`.
//! - In the tail (the last `len % 16` bytes) Cassandra reads bytes as *signed*
//!   Java bytes, so a byte >= 0x80 is sign-extended before it is shifted and
//!   XORed. Full 16-byte blocks are read unsigned.
//! - `i64::MIN` is the ring's minimum token and never a key's token: a hash equal
//!   to `i64::MIN` is mapped to `i64::MAX`.
//! - The empty key maps to the minimum token (`i64::MIN`); CQL rejects empty
//!   partition keys anyway, so the node never stores one.

/// The minimum token of the Murmur3 ring; no partition ever has it.
pub const MIN_TOKEN: i64 = i64::MIN;

/// Token of a serialized (single-column) partition key.
pub fn token(key: &[u8]) -> i64 {
    if key.is_empty() {
        return MIN_TOKEN;
    }
    let (h1, _) = hash3_x64_128(key, 0);
    let t = h1 as i64;
    if t == i64::MIN {
        i64::MAX
    } else {
        t
    }
}

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// MurmurHash3 x64 128 with Cassandra's signed-byte tail handling.
pub fn hash3_x64_128(data: &[u8], seed: u64) -> (u64, u64) {
    let len = data.len();
    let nblocks = len / 16;
    let mut h1 = seed;
    let mut h2 = seed;

    for block in data.chunks_exact(16) {
        let mut k1 = u64::from_le_bytes(block[0..8].try_into().expect("8 bytes"));
        let mut k2 = u64::from_le_bytes(block[8..16].try_into().expect("8 bytes"));

        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1.rotate_left(27).wrapping_add(h2);
        h1 = h1.wrapping_mul(5).wrapping_add(0x52dc_e729);

        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2.rotate_left(31).wrapping_add(h1);
        h2 = h2.wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }

    let tail = &data[nblocks * 16..];
    // Java's `(long) key.get(i)` sign-extends the byte: that is the quirk.
    let signed = |i: usize| tail[i] as i8 as i64 as u64;
    let mut k1: u64 = 0;
    let mut k2: u64 = 0;
    let rem = tail.len();
    if rem > 8 {
        for i in (8..rem).rev() {
            k2 ^= signed(i) << ((i - 8) * 8);
        }
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    if rem > 0 {
        for i in (0..rem.min(8)).rev() {
            k1 ^= signed(i) << (i * 8);
        }
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }

    h1 ^= len as u64;
    h2 ^= len as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text keys with tokens from scylla-rust-driver's `routing/partitioner.rs`
    /// test `test_murmur3_partitioner` (values checked against Cassandra there).
    #[test]
    fn text_keys_match_driver_vectors() {
        for (key, want) in [
            ("test", -6017608668500074083_i64),
            ("xd", 4507812186440344727),
            ("primary_key", -1632642444691073360),
            ("kremówki", 4354931215268080151),
        ] {
            assert_eq!(token(key.as_bytes()), want, "key {key:?}");
        }
    }

    /// Byte keys with tokens "from Cassandra": the 16/17/4/2/7-byte vectors are
    /// published in DataStax csharp-driver `src/Cassandra.Tests/TokenTests.cs`
    /// (MurmurHashTest); `123`, `fe*8`, `10*8`, `i64::MAX as text` and the
    /// 50-byte pattern in DataStax python-driver `tests/unit/test_metadata.py`
    /// (`_verify_hash`). The 0xFE/0xFF/0xE2 tails exercise the signed-byte quirk.
    #[test]
    fn byte_keys_match_cassandra_vectors() {
        let seq = |start: u8| (start..start + 16).collect::<Vec<u8>>();
        let cases: Vec<(Vec<u8>, i64)> = vec![
            (seq(1), -5563837382979743776),
            (seq(2), -1513403162740402161),
            (seq(3), -495360443712684655),
            (seq(4), 1734091135765407943),
            (seq(5), -3199412112042527988),
            (seq(6), -6316563938475080831),
            (seq(7), 8228893370679682632),
            (vec![0; 16], 5457549051747178710),
            (vec![0xff; 16], -2824192546314762522),
            (vec![0xfe; 16], -833317529301936754),
            ([vec![0, 1, 2, 3], vec![0xff; 12]].concat(), 6463632673159404390),
            (vec![0xfe; 17], -1672437813826982685),
            (vec![0xfe; 4], 4566408979886474012),
            (vec![0; 4], -3485513579396041028),
            (vec![0, 1, 0x7f, 0x7f], 6573459401642635627),
            (vec![0, 0xff, 0xff, 0xff], 123573637386978882),
            (vec![0xff, 1, 2, 3], -2839127690952877842),
            (vec![0xe2, 0xe7], -8582699461035929883),
            (vec![0xe2, 0xe7, 0xe2, 0xe7, 0xe2, 0xe7, 0x01], 2222373981930033306),
            (b"123".to_vec(), -7468325962851647638),
            (vec![0xfe; 8], -8927430733708461935),
            (vec![0x10; 8], 1446172840243228796),
            (b"9223372036854775807".to_vec(), 7162290910810015547),
            ([0x00, 0xff, 0x10, 0xfa, 0x99].repeat(10), 5837342703291459765),
        ];
        for (key, want) in cases {
            assert_eq!(token(&key), want, "key {key:02x?}");
        }
    }

    #[test]
    fn empty_key_is_minimum_token() {
        assert_eq!(token(b""), MIN_TOKEN);
    }

    #[test]
    fn tokens_never_equal_minimum() {
        for i in 0u32..10_000 {
            assert_ne!(token(&i.to_be_bytes()), MIN_TOKEN);
        }
    }
}
