//! The crowd, drawn from a seed before the burst: what each buyer does
//! beyond buying once, and which SKU (which size of the model) each buyer
//! wants. The same seed draws the same crowd; nothing here sends anything.

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};

/// Who in the crowd does what beyond buying once.
#[derive(Debug, Clone)]
pub struct Crowd {
    /// Share of buyers (0–1) who double-click: the same purchase, same key,
    /// twice at once.
    pub retry_share: f64,
    /// Share of buyers (0–1) who buy in two tabs: two keys at once.
    pub twice_share: f64,
    /// Seed choosing who does what; random when `None`.
    pub seed: Option<u64>,
}

impl Crowd {
    /// Every buyer buys once (the comparisons: the reference designs do not
    /// all keep per-user limits).
    pub fn plain() -> Self {
        Self {
            retry_share: 0.0,
            twice_share: 0.0,
            seed: Some(0),
        }
    }
}

/// What a buyer does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Habit {
    /// One purchase, one key.
    #[default]
    Once,
    /// The same purchase twice at once, same key.
    DoubleClick,
    /// Two purchases at once, two keys, same user.
    TwoTabs,
}

/// Each buyer's habit, drawn from `seed`: the same seed, the same crowd.
pub fn draw_habits(crowd: &Crowd, buyers: usize, seed: u64) -> Vec<Habit> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..buyers)
        .map(|_| {
            let draw: f64 = rng.gen();
            if draw < crowd.retry_share {
                Habit::DoubleClick
            } else if draw < crowd.retry_share + crowd.twice_share {
                Habit::TwoTabs
            } else {
                Habit::Once
            }
        })
        .collect()
}

/// Mixed into the seed for the SKU picks: they come from a stream of their
/// own, so the habits a seed draws are the same with any number of SKUs
/// (a single-SKU run draws the crowd it drew before SKUs were picked).
const SKU_PICK_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// The SKU (an index into `skus` SKUs) each of `buyers` buyers wants,
/// drawn from `seed`.
///
/// Each buyer's SKU is uniform over the SKUs, and the SKUs are dealt out
/// like cards (every SKU gets `buyers / skus` buyers, give or take one)
/// before the deck is shuffled: independent picks would leave some sizes
/// with a third fewer buyers than others at a hundred buyers a SKU, and
/// how much load each SKU bears would depend on the seed's luck.
pub fn draw_skus(buyers: usize, skus: usize, seed: u64) -> Vec<usize> {
    assert!(skus >= 1, "a crowd buys from at least one SKU");
    let mut picks: Vec<usize> = (0..buyers).map(|i| i % skus).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ SKU_PICK_STREAM);
    picks.shuffle(&mut rng);
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_crowd() {
        let crowd = Crowd {
            retry_share: 0.1,
            twice_share: 0.2,
            seed: None,
        };
        let a = draw_habits(&crowd, 10_000, 42);
        assert_eq!(a, draw_habits(&crowd, 10_000, 42));
        assert_ne!(a, draw_habits(&crowd, 10_000, 43));
        let count = |h| a.iter().filter(|x| **x == h).count() as f64 / 10_000.0;
        assert!(
            (count(Habit::DoubleClick) - 0.1).abs() < 0.02,
            "{}",
            count(Habit::DoubleClick)
        );
        assert!(
            (count(Habit::TwoTabs) - 0.2).abs() < 0.02,
            "{}",
            count(Habit::TwoTabs)
        );
    }

    #[test]
    fn the_sku_pick_spreads_buyers_evenly_and_the_same_seed_picks_the_same_skus() {
        for seed in [0, 7, 42, u64::MAX] {
            let picks = draw_skus(20_000, 20, seed);
            let mut per_sku = [0usize; 20];
            for sku in &picks {
                per_sku[*sku] += 1;
            }
            // 1,000 buyers a SKU, within 3%.
            assert!(
                per_sku.iter().all(|n| n.abs_diff(1_000) <= 30),
                "seed {seed}: {per_sku:?}"
            );
            assert_eq!(picks, draw_skus(20_000, 20, seed), "seed {seed}");
        }
        assert_ne!(draw_skus(20_000, 20, 1), draw_skus(20_000, 20, 2));
    }

    #[test]
    fn the_sku_pick_is_a_random_order_not_a_round_robin() {
        let picks = draw_skus(1_000, 10, 3);
        let round_robin: Vec<usize> = (0..1_000).map(|i| i % 10).collect();
        assert_ne!(picks, round_robin);
        // Neighbours in line want the same size about a tenth of the time.
        let same = picks.windows(2).filter(|w| w[0] == w[1]).count();
        assert!((50..150).contains(&same), "{same} neighbours alike");
    }

    #[test]
    fn one_sku_takes_every_buyer() {
        assert!(draw_skus(500, 1, 9).iter().all(|sku| *sku == 0));
    }
}
