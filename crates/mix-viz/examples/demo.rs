//! Renders an example grid (mixed pairs from the bundled sample dataset) and an example curves
//! plot, to look at the pictures mix-viz makes.
//!
//! usage: `cargo run -p mix-viz --example demo [-- OUT_DIR]` (default: the system temp folder);
//! writes `OUT_DIR/mix-viz-grid.png` and `OUT_DIR/mix-viz-curves.png`.

use std::path::{Path, PathBuf};

use mix_viz::grid::{grid_png, Tile};
use mix_viz::plot::{curves_png, Panel, Series};
use ndarray::Array3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/images");
    let pairs = [
        ("cat_1", "coffee_2", 0.71),
        ("rocket_3", "galaxy_4", 0.55),
        ("retina_5", "astronaut_6", 0.93),
        ("coffee_7", "cat_8", 0.62),
        ("astronaut_9", "rocket_10", 0.50),
        ("galaxy_11", "retina_12", 0.81),
        ("cat_13", "astronaut_14", 0.66),
        ("rocket_15", "coffee_16", 0.77),
        ("retina_17", "galaxy_18", 0.58),
    ];
    let mut tiles = Vec::new();
    for (a, b, lam) in pairs {
        let (xa, xb) = (
            load(&images.join(format!("{a}.jpg")))?,
            load(&images.join(format!("{b}.jpg")))?,
        );
        let image = Array3::from_shape_fn(xa.dim(), |i| {
            (lam * f64::from(xa[i]) + (1.0 - lam) * f64::from(xb[i])).round() as u8
        });
        let label = |s: &str| s.split('_').next().unwrap_or(s).to_owned();
        let (pa, pb) = ((lam * 100.0).round(), 100.0 - (lam * 100.0).round());
        tiles.push(Tile {
            image,
            caption: format!("{} {pa}% / {} {pb}%", label(a), label(b)),
        });
    }
    let grid = out.join("mix-viz-grid.png");
    grid_png(&grid, &tiles, 3)?;

    // Made-up curves shaped like a short training run.
    let steps = 300;
    let train: Vec<(f64, f64)> = (0..steps)
        .map(|i| {
            let t = f64::from(i) / f64::from(steps);
            (
                3.0 * t,
                1.8 * (-2.0 * t).exp() + 0.15 + 0.08 * (f64::from(i) * 1.7).sin(),
            )
        })
        .collect();
    let valid = vec![(1.0, 0.62), (2.0, 0.41), (3.0, 0.37)];
    let error = vec![(1.0, 0.21), (2.0, 0.12), (3.0, 0.09)];
    let panels = [
        Panel {
            title: "loss".into(),
            x_label: "epoch".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: train,
                },
                Series {
                    name: "valid".into(),
                    points: valid,
                },
            ],
            x_log: false,
        },
        Panel {
            title: "error rate".into(),
            x_label: "epoch".into(),
            series: vec![Series {
                name: "valid".into(),
                points: error,
            }],
            x_log: false,
        },
    ];
    let curves = out.join("mix-viz-curves.png");
    curves_png(&curves, &panels)?;
    println!("{}\n{}", grid.display(), curves.display());
    Ok(())
}

/// Decodes a picture, centre-crops it to a 224x224 square and returns it channels first.
fn load(path: &Path) -> Result<Array3<u8>, Box<dyn std::error::Error>> {
    let img = image::open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?
        .resize_to_fill(224, 224, image::imageops::FilterType::Triangle)
        .to_rgb8();
    Ok(Array3::from_shape_fn((3, 224, 224), |(c, y, x)| {
        img.get_pixel(x as u32, y as u32)[c]
    }))
}
