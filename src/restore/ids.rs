//! etcd's member and cluster IDs, derived as etcd derives them when a cluster is bootstrapped (or
//! restored) without a start time:
//!
//! - member ID: the first 8 bytes, big-endian, of SHA-1 over the member's peer URLs sorted and
//!   concatenated, followed by the cluster token;
//! - cluster ID: the first 8 bytes, big-endian, of SHA-1 over the member IDs sorted ascending, each as
//!   8 big-endian bytes.
//!
//! etcd prints and stores an ID as lowercase hex without leading zeros ([`id_hex`]).

use sha1::{Digest, Sha1};

/// The ID etcd gives a member with `peer_urls` in a cluster bootstrapped with `token`.
/// The URLs are sorted here; pass them in their canonical (URL-string) form.
pub fn member_id<S: AsRef<str>>(peer_urls: &[S], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(AsRef::as_ref).collect();
    urls.sort_unstable();
    let mut h = Sha1::new();
    for u in urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

/// The ID of a cluster made of `member_ids` (in any order).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

/// An ID as etcd writes it in keys and paths: lowercase hex, no padding (`8e9e05c52164694d`, `1f`).
pub fn id_hex(id: u64) -> String {
    format!("{id:x}")
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_vector_default_member() {
        let id = member_id(&["http://localhost:2380"], "etcd-cluster");
        assert_eq!(id, 0x8e9e_05c5_2164_694d);
        assert_eq!(cluster_id(&[id]), 0xcdf8_1819_4e3a_8c32);
    }

    #[test]
    fn member_id_sorts_urls_and_cluster_id_sorts_ids() {
        let a = member_id(&["https://b:2380", "https://a:2380"], "t");
        let b = member_id(&["https://a:2380", "https://b:2380"], "t");
        assert_eq!(a, b);
        assert_eq!(cluster_id(&[1, 2, 3]), cluster_id(&[3, 1, 2]));
    }

    #[test]
    fn hex_has_no_padding() {
        assert_eq!(id_hex(0x1f), "1f");
        assert_eq!(id_hex(0x8e9e_05c5_2164_694d), "8e9e05c52164694d");
    }
}
