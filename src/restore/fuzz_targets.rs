//! Bodies of the restore's fuzz targets (`fuzz/`, cargo-fuzz), kept in the library so that a plain
//! test runs them over the seed corpus and mutations too. Each must never panic, whatever the input.

use super::membership::{InitialCluster, Membership};

/// `restore_input`: the text a user gives a restore: `--initial-cluster` (and a token), parsed and
/// turned into a membership; whatever parses must give every member a distinct non-zero ID, an
/// ID in the membership, and JSON that is valid.
pub fn restore_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (cluster, token) = text.split_once('\n').unwrap_or((&text, "etcd-cluster"));
    let Ok(ic) = InitialCluster::parse(cluster) else {
        return;
    };
    let Ok(m) = Membership::new(&ic, token) else {
        return;
    };
    let mut ids: Vec<u64> = m.members().iter().map(|x| x.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), m.members().len());
    assert!(ids.iter().all(|&id| id != 0));
    for member in m.members() {
        assert!(m.member(member.name()).is_some());
        let parsed = serde_json::from_slice::<serde_json::Value>(&member.json());
        assert!(
            matches!(&parsed, Ok(v) if v["name"].as_str() == Some(member.name())),
            "member JSON must parse and name the member"
        );
    }
    let _ = crate::snapshot::encoding_of(data);
}

#[cfg(test)]
mod tests {
    use super::restore_input;

    /// Seeds plus deterministic mutations (byte flips, separators inserted, truncation).
    #[test]
    fn restore_input_survives_seeds_and_mutations() {
        let seeds = crate::mutate::seeds("restore_input");
        assert!(!seeds.is_empty());
        let mut rng = crate::mutate::XorShift::new(0x9E37_79B9_7F4A_7C15);
        let specials = b"=,:/\n\\\"%@[]?# \0\xff";
        for seed in &seeds {
            restore_input(seed);
        }
        for i in 0..5000 {
            let input = crate::mutate::mutate(&seeds[i % seeds.len()], specials, &mut rng);
            restore_input(&input);
        }
    }
}
