//! Line plots of training curves: panels side by side, each with axes, ticks, a legend and a title.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::output::{white_canvas, write_png_atomic};
use crate::text;
use crate::{Error, Result};

/// Width of one panel, in pixels; the picture is `PANEL_WIDTH * panels.len()` wide.
pub const PANEL_WIDTH: u32 = 640;
/// Height of the picture, in pixels.
pub const PANEL_HEIGHT: u32 = 440;
/// Line colours, in series order (matplotlib's tab10); series past the tenth reuse them.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];
/// Series with at most this many drawable points also get a square marker on each point, so
/// that short curves (a few epochs) show where the measurements are; a lone point is a marker.
pub const MARKER_MAX_POINTS: usize = 30;

const PAD: i64 = 14;
const TITLE_SCALE: u32 = 2;
const LABEL_SCALE: u32 = 2;
const TICK_SCALE: u32 = 2;
const LEGEND_SCALE: u32 = 2;
const TICK_LEN: i64 = 5;
const LINE_WIDTH: i64 = 2;
const MARKER: i64 = 7;
const INSET: i64 = MARKER / 2 + 2;
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const FRAME: Rgb<u8> = Rgb([60, 60, 60]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);
const LEGEND_BORDER: Rgb<u8> = Rgb([180, 180, 180]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// One named curve: `(x, y)` points joined in order. Points with a NaN or infinite coordinate
/// are skipped (their neighbours are joined directly).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Name shown in the legend.
    pub name: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// One plot: several series sharing axes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Panel {
    /// Text above the plot.
    pub title: String,
    /// Text under the x axis.
    pub x_label: String,
    /// The curves, coloured in order from [`PALETTE`].
    pub series: Vec<Series>,
    /// A logarithmic x axis (ticks at powers of ten, labelled `1e-3`); points with `x <= 0` are
    /// skipped.
    pub x_log: bool,
}

/// The colour of series number `index` of a panel.
pub fn series_colour(index: usize) -> [u8; 3] {
    PALETTE[index % PALETTE.len()]
}

/// Renders `panels` side by side, each [`PANEL_WIDTH`] x [`PANEL_HEIGHT`].
///
/// The x axis spans the finite x values exactly; the y axis spans the finite y values plus 5% on
/// each side. A constant coordinate gets a range of 10% around its value (or -1..1 around 0) and
/// a panel with no drawable point gets 0..1. Ticks fall on round numbers (1, 2 or 5 times a power
/// of ten).
pub fn curves_image(panels: &[Panel]) -> Result<RgbImage> {
    if panels.is_empty() {
        return Err(Error::NoPanels);
    }
    let width = u64::from(PANEL_WIDTH) * panels.len() as u64;
    let mut canvas = white_canvas(width, u64::from(PANEL_HEIGHT))?;
    for (i, panel) in panels.iter().enumerate() {
        draw_panel(&mut canvas, i as i64 * i64::from(PANEL_WIDTH), panel);
    }
    Ok(canvas)
}

/// Renders `panels` with [`curves_image`] and writes the picture as a PNG at `path` (atomically:
/// through a temporary file in the same folder, then a rename). The folder must exist.
pub fn curves_png(path: &Path, panels: &[Panel]) -> Result<()> {
    write_png_atomic(path, &curves_image(panels)?)
}

/// A closed interval of data values and the ticks on it.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

impl Axis {
    /// Position of `v` between `lo` (0) and `hi` (1); halves avoid overflow for huge values.
    fn frac(&self, v: f64) -> f64 {
        let span = self.hi / 2.0 - self.lo / 2.0;
        ((v / 2.0 - self.lo / 2.0) / span).clamp(0.0, 1.0)
    }

    fn label_width(&self) -> i64 {
        self.labels
            .iter()
            .map(|l| text::width(l, TICK_SCALE) as i64)
            .max()
            .unwrap_or(0)
    }
}

/// The range to show for `values` (finite ones only), with `pad` of the span added each side.
fn data_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    if min > max {
        return (0.0, 1.0);
    }
    let half_span = max / 2.0 - min / 2.0;
    let bound = |v: f64| v.clamp(f64::MIN, f64::MAX);
    // Spans lost in rounding (relative 1e-9) would make ticks meaningless: treat them as constant.
    if half_span <= 0.5e-9 * min.abs().max(max.abs()) {
        let mid = min / 2.0 + max / 2.0;
        let half = if mid == 0.0 { 1.0 } else { mid.abs() * 0.1 };
        return (bound(mid - half), bound(mid + half));
    }
    let p = half_span * (2.0 * pad);
    let (lo, hi) = (bound(min - p), bound(max + p));
    (lo, hi)
}

/// The round step (1, 2 or 5 times a power of ten) giving about `target` intervals on lo..hi.
fn nice_step(lo: f64, hi: f64, target: usize) -> f64 {
    let raw = (hi / 2.0 - lo / 2.0) / (target.max(1) as f64 / 2.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    // The round number nearest `raw` (thresholds halfway between candidates, geometrically).
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Builds the axis lo..hi with about `target` tick intervals.
fn axis(lo: f64, hi: f64, target: usize) -> Axis {
    let step = nice_step(lo, hi, target);
    let mut ticks = Vec::new();
    if step.is_finite() && step > 0.0 {
        let mut k = (lo / step - 1e-9).ceil();
        while ticks.len() < 64 {
            let v = k * step;
            if !v.is_finite() || (v > hi && v - hi > step * 1e-9) {
                break;
            }
            ticks.push(if v.abs() < step * 1e-6 { 0.0 } else { v });
            k += 1.0;
        }
    }
    let max_abs = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    let labels = ticks
        .iter()
        .map(|&v| tick_label(v, step, max_abs))
        .collect();
    Axis {
        lo,
        hi,
        ticks,
        labels,
    }
}

/// Formats tick value `v` with just enough digits to tell ticks `step` apart; scientific
/// notation, with the same number of digits on every tick, when the largest tick `max_abs` is very
/// large or the step very small.
fn tick_label(v: f64, step: f64, max_abs: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let e_step = (step.log10() + 1e-9).floor();
    if max_abs >= 1e6 || e_step < -4.0 {
        let e_max = (max_abs.log10() + 1e-9).floor();
        let prec = (e_max - e_step).clamp(0.0, 6.0) as usize;
        format!("{v:.prec$e}")
    } else {
        let decimals = (-e_step).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// Pixel rectangle `x0..x1` by `y0..y1` (half-open).
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

impl Rect {
    /// Fills the part of the `w` x `h` rectangle at (`x`, `y`) that lies inside `self`.
    fn fill_clipped(&self, img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, c: Rgb<u8>) {
        let (cx0, cy0) = (x.max(self.x0), y.max(self.y0));
        let (cx1, cy1) = ((x + w).min(self.x1), (y + h).min(self.y1));
        if cx1 > cx0 && cy1 > cy0 {
            text::fill_rect(img, cx0, cy0, cx1 - cx0, cy1 - cy0, c);
        }
    }
}

/// The axis for log10 values lo..hi: ticks on whole exponents (every one, or every second, fifth...
/// so that about `target` intervals show), labelled as powers of ten. Falls back to a linear axis
/// with power-of-ten labels when fewer than two whole exponents fall in the range.
fn log_axis(lo: f64, hi: f64, target: usize) -> Axis {
    let step = nice_step(lo, hi, target).max(1.0).round();
    let mut ticks = Vec::new();
    let mut k = (lo / step - 1e-9).ceil() * step;
    while k <= hi + 1e-9 && ticks.len() < 64 {
        ticks.push(k);
        k += step;
    }
    if ticks.len() < 2 {
        let mut lin = axis(lo, hi, target);
        lin.labels = lin
            .ticks
            .iter()
            .map(|&t| format!("{:.1e}", 10f64.powf(t)))
            .collect();
        return lin;
    }
    let labels = ticks.iter().map(|&k| format!("1e{}", k as i64)).collect();
    Axis {
        lo,
        hi,
        ticks,
        labels,
    }
}

fn draw_panel(img: &mut RgbImage, x_off: i64, panel: &Panel) {
    if panel.x_log {
        // Draw log10(x) on a linear axis whose ticks are labelled as powers of ten.
        let logged = Panel {
            series: panel
                .series
                .iter()
                .map(|s| Series {
                    name: s.name.clone(),
                    points: s
                        .points
                        .iter()
                        .map(|&(x, y)| (if x > 0.0 { x.log10() } else { f64::NAN }, y))
                        .collect(),
                })
                .collect(),
            ..panel.clone()
        };
        draw_panel_with(img, x_off, &logged, log_axis);
    } else {
        draw_panel_with(img, x_off, panel, axis);
    }
}

fn draw_panel_with(
    img: &mut RgbImage,
    x_off: i64,
    panel: &Panel,
    make_x_axis: fn(f64, f64, usize) -> Axis,
) {
    let (pw, ph) = (i64::from(PANEL_WIDTH), i64::from(PANEL_HEIGHT));
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let points = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter(finite))
    };
    let (xlo, xhi) = data_range(points().map(|p| p.0), 0.0);
    let (ylo, yhi) = data_range(points().map(|p| p.1), 0.05);

    // Vertical layout: title, plot, tick labels, x label.
    let title_h = i64::from(text::GLYPH * TITLE_SCALE);
    let tick_h = i64::from(text::GLYPH * TICK_SCALE);
    let label_h = i64::from(text::GLYPH * LABEL_SCALE);
    let top = PAD + title_h + 14;
    let bottom = ph - PAD - label_h - 8 - tick_h - 6 - TICK_LEN;
    let yaxis = axis(ylo, yhi, ((bottom - top) / 55).clamp(2, 8) as usize);

    // Horizontal layout: y tick labels, plot, room for half of the last x tick label.
    let left = x_off + PAD + yaxis.label_width() + 6 + TICK_LEN;
    let mut target = ((x_off + pw - PAD - 24 - left) / 80).clamp(2, 10) as usize;
    let mut xaxis = make_x_axis(xlo, xhi, target);
    let right = loop {
        let right = x_off + pw - PAD - (xaxis.label_width() / 2).max(8);
        let gaps = xaxis.ticks.len().saturating_sub(1).max(1) as i64;
        let room = (right - left) as f64
            * (xaxis.ticks.last().map_or(1.0, |&t| xaxis.frac(t))
                - xaxis.ticks.first().map_or(0.0, |&t| xaxis.frac(t)));
        if target <= 2 || xaxis.label_width() + 16 <= (room / gaps as f64) as i64 {
            break right;
        }
        target -= 1;
        xaxis = make_x_axis(xlo, xhi, target);
    };
    let area = Rect {
        x0: left,
        y0: top,
        x1: right,
        y1: bottom,
    };
    // Data stop INSET pixels short of the frame, so markers on the extremes show whole.
    let to_px = |x: f64, y: f64| {
        let px = (left + INSET) as f64 + xaxis.frac(x) * (right - 1 - left - 2 * INSET) as f64;
        let py =
            (bottom - 1 - INSET) as f64 - yaxis.frac(y) * (bottom - 1 - top - 2 * INSET) as f64;
        (px, py)
    };

    // Grid lines and ticks.
    for (&t, label) in yaxis.ticks.iter().zip(&yaxis.labels) {
        let y = to_px(xlo, t).1.round() as i64;
        text::fill_rect(img, left, y, right - left, 1, GRID);
        text::fill_rect(img, left - TICK_LEN, y, TICK_LEN, 1, FRAME);
        let w = text::width(label, TICK_SCALE) as i64;
        text::draw(
            img,
            left - TICK_LEN - 4 - w,
            y - tick_h / 2,
            label,
            TICK_SCALE,
            BLACK,
        );
    }
    for (&t, label) in xaxis.ticks.iter().zip(&xaxis.labels) {
        let x = to_px(t, ylo).0.round() as i64;
        text::fill_rect(img, x, top, 1, bottom - top, GRID);
        text::fill_rect(img, x, bottom, 1, TICK_LEN, FRAME);
        let w = text::width(label, TICK_SCALE) as i64;
        text::draw(
            img,
            x - w / 2,
            bottom + TICK_LEN + 4,
            label,
            TICK_SCALE,
            BLACK,
        );
    }
    // Frame.
    text::fill_rect(img, left - 1, top - 1, right - left + 2, 1, FRAME);
    text::fill_rect(img, left - 1, bottom, right - left + 2, 1, FRAME);
    text::fill_rect(img, left - 1, top - 1, 1, bottom - top + 2, FRAME);
    text::fill_rect(img, right, top - 1, 1, bottom - top + 2, FRAME);

    // Title and x label, centred and cut to the panel width.
    let centred = |img: &mut RgbImage, s: &str, y: i64, scale: u32, x0: i64, x1: i64| {
        let max_chars = ((x1 - x0).max(0) as u64 / u64::from(text::GLYPH * scale)) as usize;
        let s = text::truncate(s.trim(), max_chars);
        let w = text::width(&s, scale) as i64;
        text::draw(img, x0 + (x1 - x0 - w) / 2, y, &s, scale, BLACK);
    };
    centred(
        img,
        &panel.title,
        PAD,
        TITLE_SCALE,
        x_off + PAD,
        x_off + pw - PAD,
    );
    centred(
        img,
        &panel.x_label,
        ph - PAD - label_h,
        LABEL_SCALE,
        left,
        right,
    );

    // Curves.
    for (i, series) in panel.series.iter().enumerate() {
        let [r, g, b] = series_colour(i);
        let colour = Rgb([r, g, b]);
        let pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| to_px(x, y))
            .collect();
        for seg in pts.windows(2) {
            draw_segment(img, area, seg[0], seg[1], colour);
        }
        if pts.len() <= MARKER_MAX_POINTS {
            for &(x, y) in &pts {
                let (x, y) = (x.round() as i64, y.round() as i64);
                area.fill_clipped(img, x - MARKER / 2, y - MARKER / 2, MARKER, MARKER, colour);
            }
        }
    }
    draw_legend(img, area, &panel.series);
}

/// Draws a straight segment `LINE_WIDTH` pixels thick between two pixel positions.
fn draw_segment(img: &mut RgbImage, area: Rect, a: (f64, f64), b: (f64, f64), c: Rgb<u8>) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let n = dx.abs().max(dy.abs()).ceil().max(1.0) as i64;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let x = (a.0 + dx * t).round() as i64;
        let y = (a.1 + dy * t).round() as i64;
        area.fill_clipped(
            img,
            x - LINE_WIDTH / 2,
            y - LINE_WIDTH / 2,
            LINE_WIDTH,
            LINE_WIDTH,
            c,
        );
    }
}

/// Draws the legend box in the corner of the plot area that hides the fewest curve pixels
/// (top right when there is a tie); nothing when no series has a name.
fn draw_legend(img: &mut RgbImage, area: Rect, series: &[Series]) {
    if series.iter().all(|s| s.name.trim().is_empty()) {
        return;
    }
    let char_w = i64::from(text::GLYPH * LEGEND_SCALE);
    let row_h = i64::from(text::GLYPH * LEGEND_SCALE) + 6;
    let swatch = 24;
    let max_chars = (((area.x1 - area.x0) * 2 / 3 - swatch - 24) / char_w).max(1) as usize;
    let names: Vec<String> = series
        .iter()
        .map(|s| text::truncate(s.name.trim(), max_chars))
        .collect();
    let text_w = names
        .iter()
        .map(|n| text::width(n, LEGEND_SCALE) as i64)
        .max()
        .unwrap_or(0);
    let w = 8 + swatch + 8 + text_w + 8;
    let max_rows = ((area.y1 - area.y0 - 16) / row_h).max(0) as usize;
    let rows = names.len().min(max_rows);
    let h = 6 + rows as i64 * row_h;
    let (left, right) = (area.x0 + 8, area.x1 - 8 - w);
    let (top, bottom) = (area.y0 + 8, area.y1 - 8 - h);
    let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
    let hidden = |&(x, y): &(i64, i64)| {
        let (x0, y0) = (x.max(area.x0), y.max(area.y0));
        let (x1, y1) = ((x + w).min(area.x1), (y + h).min(area.y1));
        (y0..y1)
            .flat_map(|yy| (x0..x1).map(move |xx| (xx, yy)))
            // Both coordinates lie inside `area`, which lies inside the image.
            .filter(|&(xx, yy)| ![WHITE, GRID].contains(img.get_pixel(xx as u32, yy as u32)))
            .count()
    };
    // min_by_key keeps the first of equal corners, so ties go to the top right.
    let (x, y) = corners
        .iter()
        .copied()
        .min_by_key(hidden)
        .unwrap_or((right, top));
    area.fill_clipped(img, x - 1, y - 1, w + 2, h + 2, LEGEND_BORDER);
    area.fill_clipped(img, x, y, w, h, WHITE);
    for (i, name) in names.iter().take(rows).enumerate() {
        let [r, g, b] = series_colour(i);
        let ry = y + 6 + i as i64 * row_h;
        let mid = ry + (row_h - 6) / 2;
        area.fill_clipped(img, x + 8, mid - 1, swatch, 3, Rgb([r, g, b]));
        text::draw(img, x + 8 + swatch + 8, ry, name, LEGEND_SCALE, BLACK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        let a = axis(0.0, 1.0, 5);
        assert_eq!(a.ticks, vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(a.labels, vec!["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let a = axis(0.31, 2.96, 5);
        assert_eq!(a.labels, vec!["0.5", "1.0", "1.5", "2.0", "2.5"]);
        let a = axis(-3.0, 117.0, 6);
        assert_eq!(a.labels, vec!["0", "20", "40", "60", "80", "100"]);
        let a = axis(0.0, 3e7, 3);
        assert_eq!(a.labels, vec!["0", "1e7", "2e7", "3e7"]);
        let a = axis(1e-6, 5e-6, 4);
        assert_eq!(a.labels, vec!["1e-6", "2e-6", "3e-6", "4e-6", "5e-6"]);
    }

    #[test]
    fn ranges_survive_constants_empties_and_extremes() {
        assert_eq!(data_range([].into_iter(), 0.05), (0.0, 1.0));
        assert_eq!(
            data_range([f64::NAN, f64::INFINITY].into_iter(), 0.05),
            (0.0, 1.0)
        );
        assert_eq!(data_range([0.0, 0.0].into_iter(), 0.05), (-1.0, 1.0));
        let (lo, hi) = data_range([2.0, 2.0].into_iter(), 0.05);
        assert!((lo - 1.8).abs() < 1e-12 && (hi - 2.2).abs() < 1e-12);
        let (lo, hi) = data_range([0.0, 10.0].into_iter(), 0.05);
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
        let extremes = [f64::MIN, f64::MAX];
        assert_eq!(data_range(extremes.into_iter(), 0.0), (f64::MIN, f64::MAX));
        let (lo, hi) = data_range(extremes.into_iter(), 0.05);
        assert_eq!((lo, hi), (f64::MIN, f64::MAX));
        let a = axis(lo, hi, 5);
        assert_eq!(a.ticks, vec![-1e308, 0.0, 1e308]);
        assert_eq!(a.labels, vec!["-1e308", "0", "1e308"]);
        assert!((a.frac(0.0) - 0.5).abs() < 1e-12);
    }
}
