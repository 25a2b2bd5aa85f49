//! Statistical tests with fixed seeds: sampled lambdas against the Beta law (Kolmogorov-Smirnov),
//! MixUp's folded lambdas against the law of max(B, 1 - B), and box centres against the uniform
//! law (chi-square). Seeds are fixed, so a result never changes between runs; thresholds are at
//! p = 1e-6, so a correct sampler would fail with a new seed about once in a million.

use mix_core::{BatchShape, CutMix, ImageSize, MixConfig, MixMode, MixUp, Mixer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ALPHAS: [f64; 5] = [0.2, 0.4, 1.0, 2.0, 5.0];
const N: usize = 20_000;
const P: f64 = 1e-6;

/// ln Gamma by the Lanczos approximation (g = 7, n = 9), accurate to about 1e-15.
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    d = if d.abs() < tiny { tiny } else { d };
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularized incomplete beta function I_x(a, b): the CDF of Beta(a, b) at x.
fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// CDF of max(B, 1 - B) for B ~ Beta(a, a): P(1 - m <= B <= m) = 2 I_m(a, a) - 1 on [0.5, 1].
fn folded_cdf(m: f64, a: f64) -> f64 {
    if m < 0.5 {
        0.0
    } else {
        (2.0 * beta_cdf(m, a, a) - 1.0).clamp(0.0, 1.0)
    }
}

/// The Kolmogorov-Smirnov statistic of f32 `samples` against the law of a continuous variable with
/// `cdf` rounded to the nearest f32. The rounding matters: with alpha = 0.2 about 1.6% of the Beta
/// mass lies within half an f32 step of 1 and becomes exactly 1.0, a tie the continuous law does
/// not have. So each distinct value `v` is compared with the mass of its rounding cell.
fn ks_statistic(samples: &[f32], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut xs = samples.to_vec();
    xs.sort_by(f32::total_cmp);
    let n = xs.len() as f64;
    let cell_edge = |a: f32, b: f32| (f64::from(a) + f64::from(b)) / 2.0;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < xs.len() {
        let v = xs[i];
        let j = i + xs[i..].iter().take_while(|&&u| u == v).count();
        let below = cdf(cell_edge(next_down(v), v));
        let upto = cdf(cell_edge(v, next_up(v)));
        d = d
            .max((i as f64 / n - below).abs())
            .max((j as f64 / n - upto).abs());
        i = j;
    }
    d
}

/// The next f32 above `v` (for v >= 0).
fn next_up(v: f32) -> f32 {
    f32::from_bits(v.to_bits() + 1)
}

/// The next f32 below `v` (for v >= 0; 0 stays 0).
fn next_down(v: f32) -> f32 {
    if v == 0.0 {
        0.0
    } else {
        f32::from_bits(v.to_bits() - 1)
    }
}

/// The KS statistic above which the fit is rejected at level `p` (asymptotic Kolmogorov law).
fn ks_critical(n: usize, p: f64) -> f64 {
    (-(p / 2.0).ln() / (2.0 * n as f64)).sqrt()
}

/// Raw Beta(a, a) draws through the public API: timm-style per-element MixUp (no folding).
fn raw_lambdas(alpha: f64, seed: u64) -> Vec<f32> {
    let mixer = Mixer::new(MixConfig {
        mixup_alpha: Some(alpha as f32),
        mode: MixMode::Elem,
        ..MixConfig::default()
    })
    .unwrap();
    let shape = BatchShape::new(N, 1, ImageSize::new(1, 1));
    mixer
        .draw(shape, &mut ChaCha8Rng::seed_from_u64(seed))
        .unwrap()
        .lam
}

#[test]
fn the_reference_cdf_is_right() {
    // Closed forms: Beta(1, 1) is uniform, Beta(0.5, 0.5) is the arcsine law, Beta(2, 2) is
    // 3x^2 - 2x^3.
    for x in [0.01, 0.1, 0.3, 0.5, 0.77, 0.99] {
        assert!((beta_cdf(x, 1.0, 1.0) - x).abs() < 1e-12);
        let arcsine = 2.0 / std::f64::consts::PI * x.sqrt().asin();
        assert!((beta_cdf(x, 0.5, 0.5) - arcsine).abs() < 1e-10, "{x}");
        assert!((beta_cdf(x, 2.0, 2.0) - (3.0 * x * x - 2.0 * x * x * x)).abs() < 1e-12);
    }
}

#[test]
fn lambdas_follow_beta_alpha_alpha() {
    for (k, &a) in ALPHAS.iter().enumerate() {
        let d = ks_statistic(&raw_lambdas(a, 100 + k as u64), |x| beta_cdf(x, a, a));
        assert!(
            d < ks_critical(N, P),
            "alpha {a}: KS {d} >= {}",
            ks_critical(N, P)
        );
    }
}

#[test]
fn cutmix_lambdas_follow_beta_alpha_alpha_before_correction() {
    // CutMix's lambda is corrected to the box; with correct_lam off, timm keeps the raw draw.
    for (k, &a) in ALPHAS.iter().enumerate() {
        let mixer = Mixer::new(MixConfig {
            mixup_alpha: None,
            cutmix_alpha: Some(a as f32),
            correct_lam: false,
            mode: MixMode::Elem,
            ..MixConfig::default()
        })
        .unwrap();
        let lam = mixer
            .draw(
                BatchShape::new(N, 1, ImageSize::new(3, 3)),
                &mut ChaCha8Rng::seed_from_u64(200 + k as u64),
            )
            .unwrap()
            .lam;
        let d = ks_statistic(&lam, |x| beta_cdf(x, a, a));
        assert!(d < ks_critical(N, P), "alpha {a}: KS {d}");
    }
}

#[test]
fn mixup_lambdas_follow_the_law_of_max_b_one_minus_b() {
    for (k, &a) in ALPHAS.iter().enumerate() {
        let params = MixUp::new(a as f32)
            .unwrap()
            .draw(N, &mut ChaCha8Rng::seed_from_u64(300 + k as u64))
            .unwrap();
        let d = ks_statistic(&params.lam, |m| folded_cdf(m, a));
        assert!(d < ks_critical(N, P), "alpha {a}: KS {d}");
    }
}

#[test]
fn the_ks_test_rejects_a_wrong_alpha() {
    // The test has power: the same samples are far outside the threshold for a nearby alpha and
    // for the unfolded law.
    let lam = raw_lambdas(0.4, 7);
    let d = ks_statistic(&lam, |x| beta_cdf(x, 0.6, 0.6));
    assert!(d > 2.0 * ks_critical(N, P), "alpha 0.4 vs 0.6: KS {d}");
    let folded = MixUp::new(0.4)
        .unwrap()
        .draw(N, &mut ChaCha8Rng::seed_from_u64(8))
        .unwrap();
    let d = ks_statistic(&folded.lam, |x| beta_cdf(x, 0.4, 0.4));
    assert!(d > 2.0 * ks_critical(N, P), "folded vs unfolded: KS {d}");
}

/// Upper `p` quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty), for
/// p = 1e-6 (z = 4.753).
fn chi_square_critical(df: f64) -> f64 {
    let z = 4.753_424_308_822_899;
    let t = 2.0 / (9.0 * df);
    df * (1.0 - t + z * t.sqrt()).powi(3)
}

fn centre_counts(size: ImageSize, draws: usize, seed: u64) -> Vec<usize> {
    let cutmix = CutMix::new(1.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = vec![0usize; size.area()];
    for _ in 0..draws {
        let p = cutmix.draw(1, size, &mut rng).unwrap();
        counts[p.cy * size.width + p.cx] += 1;
    }
    counts
}

fn chi_square_uniform(counts: &[usize]) -> f64 {
    let total: usize = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn box_centres_are_uniform_over_the_image() {
    // A non-square image: 7 columns, 5 rows, every pixel a cell.
    let (w, h) = (7, 5);
    let counts = centre_counts(ImageSize::new(h, w), 35_000, 400);
    let stat = chi_square_uniform(&counts);
    let crit = chi_square_critical((w * h - 1) as f64);
    assert!(stat < crit, "chi-square {stat} >= {crit}: {counts:?}");
    // Power: folding the columns onto the left half of the image is rejected.
    let skewed: Vec<usize> = counts
        .chunks(w)
        .flat_map(|row| {
            let mut row = row.to_vec();
            row[0] += row[w - 1];
            row[w - 1] = 0;
            row
        })
        .collect();
    assert!(chi_square_uniform(&skewed) > crit);
}
