//! Deterministic input mutation for the fuzz targets' plain tests (the same bodies libFuzzer runs):
//! a xorshift generator and one mutation step — a bit flip, an inserted special byte, a truncation,
//! or a repeated run. Test-only; never part of the binary.

/// The committed seed inputs of fuzz target `target` (`fuzz/corpus/<target>/`), sorted so the
/// mutations that follow them are the same on every run.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds
}

/// A xorshift64 generator: the same sequence on every run, so a failure reproduces.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `seed` with one to three mutations; `specials` are the bytes worth inserting for the format.
pub fn mutate(seed: &[u8], specials: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut input = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(input.len());
        match rng.below(4) {
            0 if !input.is_empty() => {
                let bit = rng.below(8);
                let i = at.min(input.len() - 1);
                input[i] ^= 1 << bit;
            }
            1 => {
                let b = specials[rng.below(specials.len())];
                input.insert(at.min(input.len()), b);
            }
            2 => input.truncate(at),
            _ => {
                let start = at.min(input.len());
                let end = (start + 60).min(input.len());
                let run = input[start..end].to_vec();
                input.splice(start..start, run);
            }
        }
    }
    input
}
