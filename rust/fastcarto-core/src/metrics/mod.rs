//! What fastcarto measures: the observation one epoch gives of one example ([`Observation`]), the
//! fixed-size state that accumulates them ([`ExampleState`], its running sums in [`Sums`]), and
//! what the caller declares about the input and which published convention to follow
//! ([`Kind`], [`NanPolicy`], [`Task`], [`Compat`]). The columns computed from a state are
//! listed once, in `crate::table`.

mod example;
mod options;

pub(crate) use example::later_learned;
pub use example::{ExampleState, NONE, Observation, Sums};
pub use options::{Compat, Kind, NanPolicy, Task};
