//! fastai's callback events (fastai/callback/core.py) and cancellation (its `Cancel*Exception`s).

use crate::learner::Learn;
use crate::Result;

/// A point in the fit where callbacks run, in fastai's names and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Event {
    BeforeFit,
    BeforeEpoch,
    BeforeTrain,
    BeforeBatch,
    AfterPred,
    AfterLoss,
    BeforeBackward,
    AfterCancelBackward,
    AfterBackward,
    BeforeStep,
    AfterCancelStep,
    AfterStep,
    AfterCancelBatch,
    AfterBatch,
    AfterCancelTrain,
    AfterTrain,
    BeforeValidate,
    AfterCancelValidate,
    AfterValidate,
    AfterCancelEpoch,
    AfterEpoch,
    AfterCancelFit,
    AfterFit,
}

impl Event {
    /// fastai's `_inner_loop`: events a callback with `run_valid = false` skips during validation (and one
    /// with `run_train = false` skips during training).
    pub fn is_inner_loop(self) -> bool {
        use Event::*;
        matches!(
            self,
            BeforeBatch
                | AfterPred
                | AfterLoss
                | BeforeBackward
                | AfterCancelBackward
                | AfterBackward
                | BeforeStep
                | AfterCancelStep
                | AfterStep
                | AfterCancelBatch
                | AfterBatch
        )
    }
}

/// Which part of the fit a callback cancels by returning `Err(Error::Cancel(..))` (fastai's
/// `CancelFitException`, `CancelEpochException`, ...). The learner catches it at that level, sends
/// `after_cancel_<level>` and then `after_<level>`, and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cancel {
    /// Stop the whole fit.
    Fit,
    /// Skip the rest of this epoch.
    Epoch,
    /// Skip the rest of this epoch's training.
    Train,
    /// Skip the rest of this epoch's validation.
    Validate,
    /// Skip the rest of this batch.
    Batch,
    /// Skip this optimizer step.
    Step,
    /// Skip this backward pass.
    Backward,
}

impl Cancel {
    /// The `(before, after_cancel, after)` events framing this level.
    pub fn events(self) -> (Event, Event, Event) {
        use Event::*;
        match self {
            Cancel::Fit => (BeforeFit, AfterCancelFit, AfterFit),
            Cancel::Epoch => (BeforeEpoch, AfterCancelEpoch, AfterEpoch),
            Cancel::Train => (BeforeTrain, AfterCancelTrain, AfterTrain),
            Cancel::Validate => (BeforeValidate, AfterCancelValidate, AfterValidate),
            Cancel::Batch => (BeforeBatch, AfterCancelBatch, AfterBatch),
            Cancel::Step => (BeforeStep, AfterCancelStep, AfterStep),
            Cancel::Backward => (BeforeBackward, AfterCancelBackward, AfterBackward),
        }
    }

    /// The error a callback returns to cancel this level.
    pub fn err<T>(self) -> Result<T> {
        Err(crate::Error::Cancel(self))
    }
}

/// Something that runs at fastai's events with full access to the learner's state.
pub trait Callback: Send {
    /// A short name for messages.
    fn name(&self) -> &str;

    /// Callbacks run in ascending order (fastai's `order`; ties keep insertion order).
    fn order(&self) -> i32 {
        0
    }

    /// Whether inner-loop events run during training.
    fn run_train(&self) -> bool {
        true
    }

    /// Whether inner-loop events run during validation (fastai's `run_valid`).
    fn run_valid(&self) -> bool {
        true
    }

    /// Handles one event. Return `Cancel::X.err()` to cancel a level, any other error to fail the fit.
    fn on(&mut self, event: Event, learn: &mut Learn) -> Result<()>;
}
