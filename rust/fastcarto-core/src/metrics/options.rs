//! What the caller declares about the input and which published convention to follow.

use crate::error::{Error, Result};
use std::str::FromStr;

/// What the model outputs are. Declared by the caller, never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unnormalized scores; probabilities are `softmax(logits)` (or the sigmoid for one column).
    Logits,
    /// Probabilities that sum to one per row (or the positive-class probability for one column).
    Probs,
}

/// What to do with NaN and infinite outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NanPolicy {
    /// Fail, naming the first offending epoch and example.
    #[default]
    Raise,
    /// Skip the whole (epoch, example) observation; `n_epochs` counts only what was used.
    Omit,
}

/// Published implementations whose conventions and column names can be reproduced exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// allenai/cartography `td_metrics`: correctness as a count, forgetfulness 1000 if never learned.
    Cartography,
    /// The `aum` package (asappresearch/aum): mean margin per update call.
    Aum,
    /// Data-IQ: correctness as the fraction of epochs with p(gold) > 0.5, plus aleatoric uncertainty.
    DataIq,
    /// Toneva et al. (2019): never-learned examples count as forgotten once per epoch.
    Toneva,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Logits => "logits",
            Kind::Probs => "probs",
        }
    }
}

impl Compat {
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::Cartography => "cartography",
            Compat::Aum => "aum",
            Compat::DataIq => "dataiq",
            Compat::Toneva => "toneva",
        }
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logits" => Ok(Kind::Logits),
            "probs" => Ok(Kind::Probs),
            other => Err(Error::invalid(format!("kind must be \"logits\" or \"probs\", got {other:?}"))),
        }
    }
}

impl FromStr for NanPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raise" => Ok(NanPolicy::Raise),
            "omit" => Ok(NanPolicy::Omit),
            other => Err(Error::invalid(format!("nan_policy must be \"raise\" or \"omit\", got {other:?}"))),
        }
    }
}

impl FromStr for Compat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cartography" => Ok(Compat::Cartography),
            "aum" => Ok(Compat::Aum),
            "dataiq" => Ok(Compat::DataIq),
            "toneva" => Ok(Compat::Toneva),
            other => Err(Error::invalid(format!(
                "compat must be one of \"cartography\", \"aum\", \"dataiq\", \"toneva\", got {other:?}"
            ))),
        }
    }
}

/// How the examples of the state relate to the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One label per example among `n_classes` columns (`n_classes == 1`: binary, one column
    /// holding the positive class, labels 0/1).
    MultiClass { n_classes: u32 },
    /// `n_classes` independent binary problems per example (sigmoid outputs, 0/1 targets). The
    /// state holds one slot per (example, class) pair, example-major.
    MultiLabel { n_classes: u32 },
}

/// As messages name a task: `4 classes`, `multi-label, 4 classes`.
impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::MultiClass { n_classes: 1 } => write!(f, "binary, one output column"),
            Task::MultiClass { n_classes } => write!(f, "{n_classes} classes"),
            Task::MultiLabel { n_classes } => write!(f, "multi-label, {n_classes} classes"),
        }
    }
}

impl Task {
    /// Columns per row of model output.
    pub fn output_columns(self) -> u32 {
        match self {
            Task::MultiClass { n_classes } | Task::MultiLabel { n_classes } => n_classes,
        }
    }
    /// Columns the kernel sees per slot: one-column binary problems are read as one column.
    pub fn slot_columns(self) -> u32 {
        match self {
            Task::MultiClass { n_classes } => n_classes,
            Task::MultiLabel { .. } => 1,
        }
    }
    /// Slots of state per example.
    pub fn slots_per_example(self) -> u32 {
        match self {
            Task::MultiClass { .. } => 1,
            Task::MultiLabel { n_classes } => n_classes,
        }
    }
    /// Number of distinct label values a slot may carry.
    pub fn label_values(self) -> u32 {
        match self.slot_columns() {
            1 => 2,
            c => c,
        }
    }
}
