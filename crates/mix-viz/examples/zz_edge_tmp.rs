use mix_viz::plot::{curves_png, Panel, Series};
fn main() {
    let s = |n: &str, p: Vec<(f64, f64)>| Series { name: n.into(), points: p };
    curves_png(std::path::Path::new("/tmp/vizcheck/edge.png"), &[
        Panel { title: "constant + one point".into(), x_label: "step".into(), series: vec![s("flat", (0..50).map(|i| (i as f64, 0.37)).collect()), s("single", vec![(20.0, 0.37)]), s("empty", vec![])] },
        Panel { title: "nan gaps, big numbers".into(), x_label: "iteration".into(), series: vec![s("with a rather long series name here", (0..200).map(|i| (i as f64 * 1e5, if i % 17 == 0 { f64::NAN } else { (i as f64).sqrt() * 1e4 })).collect())] },
        Panel::default(),
    ]).unwrap();
}
