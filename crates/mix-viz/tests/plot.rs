//! Curve pictures: size, series colours, line direction, legend, edge cases, errors, the PNG file.

mod common;

use common::pixels_of;
use mix_viz::plot::{
    curves_image, curves_png, series_colour, Panel, Series, PALETTE, PANEL_HEIGHT, PANEL_WIDTH,
};
use mix_viz::Error;
use proptest::prelude::*;

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
    }
}

fn panel(series: Vec<Series>) -> Panel {
    Panel {
        title: "loss".into(),
        x_label: "epoch".into(),
        series,
        x_log: false,
    }
}

/// `n` points of `f` on x in 0..=10.
fn curve(n: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| i as f64 * 10.0 / (n - 1) as f64)
        .map(|x| (x, f(x)))
        .collect()
}

#[test]
fn png_decodes_back_with_one_panel_width_per_panel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    let panels = [
        panel(vec![series("train", curve(50, |x| (-x).exp()))]),
        panel(vec![]),
    ];
    curves_png(&path, &panels).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (2 * PANEL_WIDTH, PANEL_HEIGHT));
    assert_eq!(img, curves_image(&panels).unwrap());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["curves.png"], "no temporary file is left behind");
}

#[test]
fn each_series_is_drawn_in_its_own_colour() {
    // No names, so no legend: every coloured pixel belongs to a line.
    let p = panel(vec![
        series("", curve(100, |x| x)),
        series("", curve(100, |x| 10.0 - x)),
        series("", curve(100, |x| 5.0 + (x * 2.0).sin())),
    ]);
    let img = curves_image(&[p]).unwrap();
    for i in 0..3 {
        let n = pixels_of(&img, series_colour(i)).len();
        // A line crossing the plot is at least as many pixels as the plot is wide.
        assert!(n > 400, "series {i} has {n} pixels of its colour");
    }
    assert!(
        pixels_of(&img, PALETTE[3]).is_empty(),
        "no fourth series, no fourth colour"
    );
    assert_eq!(
        series_colour(10),
        PALETTE[0],
        "colours cycle after ten series"
    );
}

#[test]
fn y_grows_upwards_and_x_to_the_right() {
    let img = curves_image(&[panel(vec![series("", curve(100, |x| x * x))])]).unwrap();
    let px = pixels_of(&img, PALETTE[0]);
    let leftmost = px.iter().min_by_key(|p| p.0).unwrap();
    let rightmost = px.iter().max_by_key(|p| p.0).unwrap();
    assert!(
        leftmost.1 > rightmost.1,
        "rising data go up: {leftmost:?} -> {rightmost:?}"
    );
    assert!(
        rightmost.0 - leftmost.0 > PANEL_WIDTH / 2,
        "the curve spans the plot"
    );
    assert!(
        leftmost.1 - rightmost.1 > PANEL_HEIGHT / 2,
        "the curve spans the plot"
    );
}

#[test]
fn a_constant_series_is_a_flat_line_in_the_middle() {
    let img = curves_image(&[panel(vec![series("", curve(100, |_| 0.37))])]).unwrap();
    let px = pixels_of(&img, PALETTE[0]);
    let (min_y, max_y) = (
        px.iter().map(|p| p.1).min().unwrap(),
        px.iter().map(|p| p.1).max().unwrap(),
    );
    assert!(max_y - min_y < 3, "flat: rows {min_y}..={max_y}");
    let mid = f64::from(min_y) / f64::from(PANEL_HEIGHT);
    assert!(
        (0.35..0.65).contains(&mid),
        "centred vertically, found at {mid}"
    );
}

#[test]
fn non_finite_points_are_skipped() {
    let with = vec![
        (0.0, 0.0),
        (1.0, f64::NAN),
        (2.0, f64::INFINITY),
        (f64::NEG_INFINITY, 5.0),
        (3.0, 1.0),
    ];
    let without = vec![(0.0, 0.0), (3.0, 1.0)];
    let a = curves_image(&[panel(vec![series("a", with)])]).unwrap();
    let b = curves_image(&[panel(vec![series("a", without)])]).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_single_point_is_a_small_marker() {
    let img = curves_image(&[panel(vec![series("", vec![(2.0, 3.0)])])]).unwrap();
    let px = pixels_of(&img, PALETTE[0]);
    assert!(!px.is_empty());
    let xs = px.iter().map(|p| p.0);
    let ys = px.iter().map(|p| p.1);
    assert!(xs.clone().max().unwrap() - xs.min().unwrap() < 10);
    assert!(ys.clone().max().unwrap() - ys.min().unwrap() < 10);
}

#[test]
fn empty_panels_and_series_still_draw_axes_and_text() {
    let empty = [
        Panel::default(),
        panel(vec![series("", vec![])]),
        panel(vec![]),
    ];
    let img = curves_image(&empty).unwrap();
    assert!(pixels_of(&img, PALETTE[0]).is_empty());
    assert!(
        !pixels_of(&img, [0; 3]).is_empty(),
        "tick labels and titles are black"
    );
    let framed =
        |x0: u32| (x0..x0 + PANEL_WIDTH).any(|x| img.get_pixel(x, PANEL_HEIGHT / 2).0 != [255; 3]);
    assert!(framed(0) && framed(PANEL_WIDTH) && framed(2 * PANEL_WIDTH));
}

#[test]
fn the_legend_shows_a_swatch_per_named_series_top_right() {
    let p = panel(vec![series("train", vec![]), series("valid", vec![])]);
    let img = curves_image(&[p]).unwrap();
    for i in 0..2 {
        let px = pixels_of(&img, series_colour(i));
        assert!(!px.is_empty(), "series {i} has a swatch");
        assert!(
            px.iter()
                .all(|&(x, y)| x > PANEL_WIDTH / 2 && y < PANEL_HEIGHT / 3),
            "{:?}",
            px[0]
        );
    }
}

#[test]
fn the_legend_moves_out_of_the_way_of_the_curves() {
    // A rising diagonal crosses the top-right and bottom-left corners; the top left is free.
    let img = curves_image(&[panel(vec![series("train", curve(100, |x| x))])]).unwrap();
    let px = pixels_of(&img, PALETTE[0]);
    let top_left = px
        .iter()
        .filter(|&&(x, y)| x < PANEL_WIDTH / 3 && y < PANEL_HEIGHT / 4)
        .count();
    let top_right = px
        .iter()
        .filter(|&&(x, y)| x > PANEL_WIDTH * 2 / 3 && y < PANEL_HEIGHT / 4)
        .count();
    // The swatch is 24x3 pixels; the line near the top right is what remains there.
    assert_eq!(top_left, 72, "the swatch is in the top left");
    assert!(
        top_right > 72,
        "the curve is in the top right, not hidden by the legend"
    );
}

#[test]
fn titles_are_drawn_and_differ_by_text() {
    let a = curves_image(&[Panel {
        title: "loss".into(),
        ..Panel::default()
    }])
    .unwrap();
    let b = curves_image(&[Panel {
        title: "error rate".into(),
        ..Panel::default()
    }])
    .unwrap();
    let top = |img: &image::RgbImage| {
        (0..40)
            .flat_map(|y| (0..PANEL_WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0 == [0; 3])
            .count()
    };
    assert!(top(&a) > 0 && top(&b) > top(&a));
}

#[test]
fn bad_inputs_give_their_errors() {
    assert!(matches!(curves_image(&[]), Err(Error::NoPanels)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("curves.png");
    let err = curves_png(&path, &[Panel::default()]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(!path.exists());
    let many = vec![Panel::default(); 1000];
    assert!(matches!(curves_image(&many), Err(Error::TooLarge { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_series_renders_without_panicking(all in proptest::collection::vec(common::any_series(), 0..4)) {
        let img = curves_image(&[panel(all)]).unwrap();
        prop_assert_eq!(img.dimensions(), (PANEL_WIDTH, PANEL_HEIGHT));
    }

    #[test]
    fn any_finite_series_draws_in_its_colour(s in common::finite_series()) {
        let drawn = !s.points.is_empty() || !s.name.trim().is_empty();
        let img = curves_image(&[panel(vec![s])]).unwrap();
        prop_assert_eq!(img.dimensions(), (PANEL_WIDTH, PANEL_HEIGHT));
        prop_assert_eq!(!pixels_of(&img, PALETTE[0]).is_empty(), drawn);
    }
}

#[test]
fn a_log_x_axis_spreads_decades_evenly_and_skips_non_positive_x() {
    let lrs: Vec<f64> = (0..=60)
        .map(|i| 1e-7 * 10f64.powf(i as f64 / 10.0))
        .collect();
    let points: Vec<(f64, f64)> = lrs.iter().map(|&lr| (lr, -lr.log10())).collect();
    let log = curves_image(&[Panel {
        title: "lr_find".into(),
        x_label: "learning rate".into(),
        series: vec![Series {
            name: "loss".into(),
            points: points.clone(),
        }],
        x_log: true,
    }])
    .unwrap();
    // On a log axis y = -log10(x) is a straight line; on a linear one it is not. Take the curve's
    // lowest coloured pixel in a few columns (the legend's swatch, in a top corner, is above it) and
    // check they fall on one line.
    let [r, g, b] = series_colour(0);
    let lowest = |x: u32| {
        (0..log.height())
            .rev()
            .find(|&y| log.get_pixel(x, y).0 == [r, g, b])
    };
    let cols: Vec<(f64, f64)> = [200u32, 300, 400, 500]
        .iter()
        .filter_map(|&x| lowest(x).map(|y| (f64::from(x), f64::from(y))))
        .collect();
    assert_eq!(cols.len(), 4, "the curve crosses every sampled column");
    let slope = |a: (f64, f64), b: (f64, f64)| (b.1 - a.1) / (b.0 - a.0);
    let (s1, s2) = (slope(cols[0], cols[1]), slope(cols[2], cols[3]));
    assert!(
        (s1 - s2).abs() < 0.05,
        "slopes {s1} and {s2} differ: not a log axis"
    );
    // Zero and negative x are skipped rather than drawn at -inf.
    let mut with_zero = points;
    with_zero.insert(0, (0.0, 100.0));
    with_zero.insert(0, (-1.0, 100.0));
    let again = curves_image(&[Panel {
        title: "lr_find".into(),
        x_label: "learning rate".into(),
        series: vec![Series {
            name: "loss".into(),
            points: with_zero,
        }],
        x_log: true,
    }])
    .unwrap();
    assert_eq!(log, again);
}
