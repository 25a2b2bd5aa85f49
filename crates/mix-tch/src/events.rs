//! The run's event log, `<run>/events.jsonl`: one JSON object per line for every training step, every
//! epoch, and every fit's start, resume and end, flushed line by line so that `tail -f` and other tools
//! can follow a run while it trains.

use crate::callback::{Callback, Event};
use crate::learner::Learn;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The event log's file name in the run folder.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Writes `<run>/events.jsonl`. A fresh run starts the file anew; a resumed run, and the later fits of
/// the same run (`fine_tune`'s unfrozen phase), append to it, a resume with a `resume` line.
///
/// Step lines are written when the learner reads the losses back from the device (every
/// `LearnerConfig::sync_every` steps, and at the end of every training pass), never by waiting for the
/// device on every step; each carries the time its step was queued. Lines (`"event"` names the kind):
/// `fit_start` (`n_epoch`, `epoch_offset`, `unix_time`), `resume` (`checkpoint`, `epochs_done`), `step`
/// (`epoch`, `iter`, `lr`, `lrs`, `mom`, `loss`, `smooth_loss`, `elapsed_s`), `epoch` (`epoch`,
/// `train_loss`, `valid_loss`, `error_rate`, `seconds`, `best`: whether it is the best-model callback's
/// best so far, `null` without one), `fit_end` (`cancelled`, `elapsed_s`). Non-finite numbers are `null`.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: Option<File>,
    fit_start: Instant,
    cancelled: bool,
}

impl EventLog {
    /// Logs into run folder `dir`.
    pub fn new(dir: &Path) -> Self {
        EventLog {
            path: dir.join(EVENTS_FILE),
            file: None,
            fit_start: Instant::now(),
            cancelled: false,
        }
    }

    fn line(&mut self, value: &Value) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let mut line = value.to_string();
        line.push('\n');
        // One write per line on an unbuffered file: a reader never sees half a line from a live run.
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| Error::io("appending to", &self.path, e))
    }

    fn open(&mut self, fresh: bool) -> Result<()> {
        let mut options = OpenOptions::new();
        options.create(true);
        if fresh {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        let file = options
            .open(&self.path)
            .map_err(|e| Error::io("opening", &self.path, e))?;
        self.file = Some(file);
        Ok(())
    }

    /// Writes the steps read back since the last call.
    fn steps(&mut self, learn: &mut Learn) -> Result<()> {
        if learn.history.fresh_steps.is_empty() {
            return Ok(());
        }
        let fresh = std::mem::take(&mut learn.history.fresh_steps);
        for s in fresh {
            let elapsed = s.at.saturating_duration_since(self.fit_start).as_secs_f64();
            self.line(&json!({
                "event": "step",
                "epoch": s.row.epoch,
                "iter": s.row.step,
                "lr": s.row.lr,
                "lrs": s.lrs,
                "mom": s.row.mom,
                "loss": s.row.loss,
                "smooth_loss": s.row.smooth_loss,
                "elapsed_s": elapsed,
            }))?;
        }
        Ok(())
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Callback for EventLog {
    fn name(&self) -> &str {
        "EventLog"
    }

    fn order(&self) -> i32 {
        crate::recorder::order::EVENTS
    }

    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()> {
        if event == Event::BeforeFit {
            // lr_find and validate() log nothing.
            if !learn.logging {
                self.file = None;
                return Ok(());
            }
            self.open(learn.is_fresh())?;
            self.fit_start = Instant::now();
            self.cancelled = false;
            learn.history.fresh_steps.clear();
            self.line(&json!({
                "event": "fit_start",
                "n_epoch": learn.n_epoch,
                "epoch_offset": learn.epoch_offset,
                "unix_time": unix_time(),
            }))?;
            if let Some(dir) = learn.history.resumed_from.take() {
                let done = learn.history.epochs.len();
                self.line(&json!({
                    "event": "resume",
                    "checkpoint": dir.display().to_string(),
                    "epochs_done": done,
                }))?;
            }
            return Ok(());
        }
        if self.file.is_none() {
            return Ok(());
        }
        self.steps(learn)?;
        match event {
            Event::AfterEpoch => {
                if let Some(row) = learn.epoch_row {
                    let best = learn.history.best.map(|b| b.epoch == row.epoch);
                    self.line(&json!({
                        "event": "epoch",
                        "epoch": row.epoch,
                        "train_loss": row.train_loss,
                        "valid_loss": row.valid_loss,
                        "error_rate": row.error_rate,
                        "seconds": row.seconds,
                        "best": best,
                    }))?;
                }
            }
            Event::AfterCancelFit => self.cancelled = true,
            Event::AfterFit => {
                let elapsed = self.fit_start.elapsed().as_secs_f64();
                let cancelled = self.cancelled;
                self.line(&json!({
                    "event": "fit_end",
                    "cancelled": cancelled,
                    "elapsed_s": elapsed,
                }))?;
                self.file = None;
            }
            _ => {}
        }
        Ok(())
    }
}
