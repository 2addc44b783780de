//! A Zipf sampler over `n` items (item 0 the most popular), by inverse CDF.

/// Zipf exponent: 1.0 is the classic "a few streams are hot" shape.
pub const ZIPF_EXPONENT: f64 = 1.0;

pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(ZIPF_EXPONENT);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_zero_is_the_most_frequent() {
        let zipf = Zipf::new(10_000);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..100_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[100]);
        // H(10000) ≈ 9.79, so item 0 gets about 10% of samples.
        assert!((8_000..12_000).contains(&counts[0]), "{}", counts[0]);
    }
}
