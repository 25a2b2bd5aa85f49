//! What fastai's `Recorder` reports: the smoothed training loss, validation loss and error rate, epoch time;
//! the per-epoch table, `metrics.csv`, `steps.csv` and the loss-curve picture.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// fastai's `AvgSmoothLoss(beta=0.98)`: an exponential moving average debiased by `1 - beta^count`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SmoothLoss {
    /// Smoothing factor.
    pub beta: f64,
    /// Losses seen.
    pub count: u64,
    /// The biased average.
    pub val: f64,
}

impl Default for SmoothLoss {
    fn default() -> Self {
        SmoothLoss {
            beta: 0.98,
            count: 0,
            val: 0.0,
        }
    }
}

impl SmoothLoss {
    /// Adds one batch loss: `val = lerp(loss, val, beta)`.
    pub fn accumulate(&mut self, loss: f64) {
        self.count += 1;
        self.val = loss + self.beta * (self.val - loss);
    }

    /// The debiased value (NaN before any loss).
    pub fn value(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.val / (1.0 - self.beta.powi(self.count as i32))
        }
    }
}

/// One training step as written to `steps.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Global training step, 0-based.
    pub step: usize,
    /// Epoch, 0-based.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Momentum (Adam's beta1) used.
    pub mom: f64,
    /// The batch's (mixed) training loss.
    pub loss: f64,
    /// The smoothed training loss after this step.
    pub smooth_loss: f64,
}

/// One epoch as fastai's table shows it and `metrics.csv` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// Epoch, 0-based.
    pub epoch: usize,
    /// Smoothed training loss at the end of the epoch.
    pub train_loss: f64,
    /// Mean validation loss (weighted by batch size).
    pub valid_loss: f64,
    /// Fraction of validation samples misclassified.
    pub error_rate: f64,
    /// Wall-clock seconds for the epoch (training and validation).
    pub seconds: f64,
}

/// Where one epoch's time went, written to `timings.json` in the run folder (one object per epoch).
///
/// The training phases add up to about `train_s`; validation is one figure. On CUDA the phases are host
/// times (kernels run asynchronously and their time lands where the host next waits, usually `logging_s`
/// when the losses are read back) unless `LearnerConfig::sync_timing` synchronises at every boundary.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochTiming {
    /// Epoch of the run, 0-based.
    pub epoch: usize,
    /// The device, as `cpu` or `cuda:N`.
    pub device: String,
    /// Images in the training batches run.
    pub train_items: usize,
    /// Images in the validation batches run.
    pub valid_items: usize,
    /// Wall-clock seconds of the training pass.
    pub train_s: f64,
    /// Wall-clock seconds of the validation pass.
    pub valid_s: f64,
    /// Wall-clock seconds of the whole epoch, end-of-epoch writing included.
    pub epoch_s: f64,
    /// Training: waiting for the loader's next batch.
    pub data_wait_s: f64,
    /// Training: the `u8` batch to a float tensor on the device.
    pub h2d_s: f64,
    /// Training: batch augmentation, normalisation and target encoding.
    pub augment_s: f64,
    /// Training: the `before_batch` callbacks (the mix).
    pub mixing_s: f64,
    /// Training: forward, loss and backward.
    pub forward_backward_s: f64,
    /// Training: the optimizer step and zeroing the gradients.
    pub optimizer_s: f64,
    /// Training: reading losses back, the history and the progress bar.
    pub logging_s: f64,
    /// After validation: the epoch's table row, CSVs, curves, checkpoint and this file.
    pub end_epoch_s: f64,
}

/// `timings.json`: every epoch's [`EpochTiming`].
pub fn timings_json(rows: &[EpochTiming]) -> Result<String> {
    serde_json::to_string_pretty(rows)
        .map_err(|e| Error::Invalid(format!("cannot write timings: {e}")))
}

/// fastai's `format_time`: `mm:ss`, or `h:mm:ss` past an hour.
pub fn format_time(seconds: f64) -> String {
    let t = seconds.max(0.0) as u64;
    let (h, m, s) = (t / 3600, (t / 60) % 60, t % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// The header line of the per-epoch table.
pub fn table_header() -> String {
    format!(
        "{:<6}{:<12}{:<12}{:<12}{}",
        "epoch", "train_loss", "valid_loss", "error_rate", "time"
    )
}

/// One line of the per-epoch table, numbers with six decimals as fastai prints them.
pub fn table_row(r: &EpochRow) -> String {
    format!(
        "{:<6}{:<12.6}{:<12.6}{:<12.6}{}",
        r.epoch,
        r.train_loss,
        r.valid_loss,
        r.error_rate,
        format_time(r.seconds)
    )
}

/// Writes `path` whole through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("renaming into", path, e.error))?;
    // The rename is durable only once the folder itself is synced.
    crate::checkpoint::sync_dir(dir)
}

/// `metrics.csv`: `epoch,train_loss,valid_loss,error_rate,time`.
pub fn metrics_csv(rows: &[EpochRow]) -> String {
    let mut s = String::from("epoch,train_loss,valid_loss,error_rate,time\n");
    for r in rows {
        s += &format!(
            "{},{},{},{},{}\n",
            r.epoch,
            r.train_loss,
            r.valid_loss,
            r.error_rate,
            format_time(r.seconds)
        );
    }
    s
}

/// `steps.csv`: `step,epoch,lr,mom,loss,smooth_loss`, one row per training step.
pub fn steps_csv(rows: &[StepRow]) -> String {
    let mut s = String::from("step,epoch,lr,mom,loss,smooth_loss\n");
    for r in rows {
        s += &format!(
            "{},{},{},{},{},{}\n",
            r.step, r.epoch, r.lr, r.mom, r.loss, r.smooth_loss
        );
    }
    s
}

/// Draws the loss and error-rate curves (x = training step) into `path` with mix-viz.
pub fn curves_png(
    path: &Path,
    steps: &[StepRow],
    epochs: &[EpochRow],
    steps_per_epoch: usize,
) -> Result<()> {
    use mix_viz::plot::{Panel, Series};
    let at_end = |e: usize| ((e + 1) * steps_per_epoch) as f64;
    let finite = |v: f64| v.is_finite();
    let loss = Panel {
        title: "loss".into(),
        x_label: "step".into(),
        series: vec![
            Series {
                name: "train (smoothed)".into(),
                points: steps
                    .iter()
                    .filter(|r| finite(r.smooth_loss))
                    .map(|r| (r.step as f64, r.smooth_loss))
                    .collect(),
            },
            Series {
                name: "valid".into(),
                points: epochs
                    .iter()
                    .filter(|r| finite(r.valid_loss))
                    .map(|r| (at_end(r.epoch), r.valid_loss))
                    .collect(),
            },
        ],
        x_log: false,
    };
    let error = Panel {
        title: "error rate".into(),
        x_label: "step".into(),
        series: vec![Series {
            name: "valid".into(),
            points: epochs
                .iter()
                .filter(|r| finite(r.error_rate))
                .map(|r| (at_end(r.epoch), r.error_rate))
                .collect(),
        }],
        x_log: false,
    };
    Ok(mix_viz::plot::curves_png(path, &[loss, error])?)
}
