//! A deterministic English-like corpus for benchmarks and the demo: words drawn from a Zipf
//! distribution over `distinct` ranks (a long tail), built from syllables so frequent words
//! are short, 6–17 words a line. The same seed and size give the same bytes everywhere. And
//! the way back: a word count's output read as counts, to check a job's answer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// splitmix64: small, fast, seedable, the same on every platform.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SYLLABLES: [&str; 24] = [
    "ta", "ne", "ri", "so", "la", "me", "ki", "do", "ra", "se", "li", "no", "ha", "pe", "mi", "tu",
    "ga", "be", "vi", "ro", "an", "el", "in", "or",
];

/// The word of a rank: base-24 digits of rank+1 as syllables (rank 0 is the shortest).
pub fn word(rank: usize) -> String {
    let mut n = rank + 1;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYLLABLES[n % 24]);
        n /= 24;
    }
    w
}

/// Vose's alias table: O(1) sampling from a discrete distribution.
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn zipf(n: usize, s: f64) -> Alias {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Alias { prob, alias }
    }

    #[inline]
    fn sample(&self, rng: &mut Rng) -> usize {
        let i = (rng.next_u64() % self.prob.len() as u64) as usize;
        if rng.next_f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Write about `bytes` bytes of corpus (whole lines) to `path`.
pub fn generate(path: &Path, bytes: u64, distinct: usize, seed: u64) -> std::io::Result<()> {
    let words: Vec<String> = (0..distinct).map(word).collect();
    let table = Alias::zipf(distinct, 1.0);
    let mut rng = Rng::new(seed);
    let mut out = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path)?);
    let mut line = Vec::with_capacity(256);
    let mut written = 0u64;
    while written < bytes {
        line.clear();
        let n = 6 + rng.next_u64() % 12;
        for i in 0..n {
            if i > 0 {
                line.push(b' ');
            }
            line.extend_from_slice(words[table.sample(&mut rng)].as_bytes());
        }
        line.push(b'\n');
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    out.flush()
}

/// Word counts from `word<TAB>count` lines, or `uniq -c` lines (`  count word`), in every
/// regular file of `path` (a file or a directory of part files).
pub fn read_counts(path: &Path) -> anyhow::Result<BTreeMap<Vec<u8>, u64>> {
    let mut files = vec![];
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            let p = e?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
            {
                files.push(p);
            }
        }
    } else {
        files.push(path.to_owned());
    }
    let mut counts = BTreeMap::new();
    for f in files {
        let text = std::fs::read(&f)?;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let (word, n) = match line.iter().position(|&b| b == b'\t') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => {
                    let t = line.trim_ascii_start();
                    let i = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
                    (t.get(i + 1..).unwrap_or(b""), &t[..i])
                }
            };
            let n: u64 = std::str::from_utf8(n)?.trim().parse()?;
            *counts.entry(word.to_vec()).or_insert(0) += n;
        }
    }
    Ok(counts)
}
