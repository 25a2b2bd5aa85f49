//! What fastai's `Recorder` reports: the smoothed training loss, validation loss and error rate, epoch time;
//! the run's [`History`], and the callbacks that show and write it: the per-epoch table, `metrics.csv`,
//! `steps.csv`, the loss-curve picture and `timings.json`.

use crate::callback::{Callback, Event};
use crate::learner::Learn;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// One training step as the learner read it back from the device, with what the event log adds to its
/// [`StepRow`]: every parameter group's learning rate and when the step was queued.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedStep {
    /// The step's row, loss and smoothed loss filled in.
    pub row: StepRow,
    /// The learning rate of every parameter group.
    pub lrs: Vec<f64>,
    /// When the host queued the step (its loss was read back later, every `sync_every` steps).
    pub at: Instant,
}

/// The best value of the monitored metric so far (fastai's `TrackerCallback.best`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Epoch of the run, 0-based, that reached it.
    pub epoch: usize,
    /// The value.
    pub value: f64,
}

/// What the learner recorded in the current run (fastai's `Recorder` values): read by the recording
/// callbacks, restored from a checkpoint on resume.
#[derive(Debug, Default)]
pub struct History {
    /// Every training step of the run, read back from the device.
    pub steps: Vec<StepRow>,
    /// Every finished epoch of the run.
    pub epochs: Vec<EpochRow>,
    /// Every closed epoch's timing.
    pub timings: Vec<EpochTiming>,
    /// The current epoch's timing, filled while it runs.
    pub timing: EpochTiming,
    /// Steps read back since the event log last took them (cleared at every epoch's start).
    pub fresh_steps: Vec<LoggedStep>,
    /// The last checkpoint written or loaded.
    pub last_checkpoint: Option<PathBuf>,
    /// The checkpoint the run was resumed from, until the event log reports it.
    pub resumed_from: Option<PathBuf>,
    /// The monitored metric's best epoch, when a best-model callback watches one.
    pub best: Option<Best>,
    /// When the current epoch started.
    pub epoch_start: Option<Instant>,
    /// When the current epoch's validation ended and its end-of-epoch work began.
    pub end_epoch_start: Option<Instant>,
    /// Whether the current epoch's timing is closed (pushed to `timings`).
    pub timing_closed: bool,
}

impl History {
    /// Closes the current epoch's timing once: the end-of-epoch and whole-epoch seconds up to now, and
    /// the timing in `timings` (replacing one of the same epoch left by a run resumed before it).
    pub fn close_timing(&mut self) {
        if self.timing_closed {
            return;
        }
        let since = |t: Option<Instant>| t.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.timing.end_epoch_s = since(self.end_epoch_start);
        self.timing.epoch_s = since(self.epoch_start);
        let epoch = self.timing.epoch;
        self.timings.retain(|t| t.epoch < epoch);
        self.timings.push(self.timing.clone());
        self.timing_closed = true;
    }
}

/// Orders of the recording callbacks: before every user callback (order 0 and up), so that the files
/// and the checkpoint of an epoch are written even when a user callback cancels the fit at `after_epoch`,
/// and in the order the learner always wrote them (table, CSVs and curves, checkpoint, best model,
/// event log, timings last so that its end-of-epoch time covers the others).
pub mod order {
    /// [`super::ProgressTable`].
    pub const TABLE: i32 = -60;
    /// [`super::CsvLogger`].
    pub const CSV: i32 = -50;
    /// [`crate::checkpoint::Checkpointer`].
    pub const CHECKPOINT: i32 = -40;
    /// [`crate::checkpoint::SaveBest`].
    pub const BEST: i32 = -30;
    /// [`crate::events::EventLog`].
    pub const EVENTS: i32 = -20;
    /// [`super::TimingsFile`].
    pub const TIMINGS: i32 = -10;
}

/// The per-epoch table on the console (fastai's `ProgressCallback` table): the header at every fit's
/// start, one row per finished epoch.
#[derive(Debug, Default)]
pub struct ProgressTable;

impl Callback for ProgressTable {
    fn name(&self) -> &str {
        "ProgressTable"
    }

    fn order(&self) -> i32 {
        order::TABLE
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        match event {
            Event::BeforeFit if learn.logging => println!("{}", table_header()),
            Event::AfterEpoch => {
                if let Some(row) = &learn.epoch_row {
                    println!("{}", table_row(row));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// fastai's `CSVLogger` and the recorder's plot: after every finished epoch, `metrics.csv`, `steps.csv`
/// and `curves.png` in the run folder, each written whole and durably.
#[derive(Debug)]
pub struct CsvLogger {
    dir: PathBuf,
}

impl CsvLogger {
    /// Writes into run folder `dir`.
    pub fn new(dir: &Path) -> Self {
        CsvLogger {
            dir: dir.to_path_buf(),
        }
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &str {
        "CSVLogger"
    }

    fn order(&self) -> i32 {
        order::CSV
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        let (Event::AfterEpoch, Some(row)) = (event, learn.epoch_row) else {
            return Ok(());
        };
        let h = &learn.history;
        mix_io::write_atomic(
            &self.dir.join("metrics.csv"),
            metrics_csv(&h.epochs).as_bytes(),
        )?;
        mix_io::write_atomic(&self.dir.join("steps.csv"), steps_csv(&h.steps).as_bytes())?;
        let per_epoch = h.steps.iter().filter(|s| s.epoch == row.epoch).count();
        curves_png(&self.dir.join("curves.png"), &h.steps, &h.epochs, per_epoch)
    }
}

/// The run folder's file of [`EpochTiming`]s.
pub const TIMINGS_FILE: &str = "timings.json";

/// After every finished epoch, closes its [`EpochTiming`] and writes every epoch's to `timings.json`.
#[derive(Debug)]
pub struct TimingsFile {
    dir: PathBuf,
}

impl TimingsFile {
    /// Writes into run folder `dir`.
    pub fn new(dir: &Path) -> Self {
        TimingsFile {
            dir: dir.to_path_buf(),
        }
    }
}

impl Callback for TimingsFile {
    fn name(&self) -> &str {
        "TimingsFile"
    }

    fn order(&self) -> i32 {
        order::TIMINGS
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event != Event::AfterEpoch || learn.epoch_row.is_none() {
            return Ok(());
        }
        learn.history.close_timing();
        let json = timings_json(&learn.history.timings)?;
        Ok(mix_io::write_atomic(
            &self.dir.join(TIMINGS_FILE),
            json.as_bytes(),
        )?)
    }
}
