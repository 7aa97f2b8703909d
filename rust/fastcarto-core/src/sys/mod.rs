//! What the engine asks of the machine: big allocations in mappings of their own ([`bigvec`]),
//! handing memory back ([`alloc`]), software prefetch and streaming stores ([`prefetch`]), and
//! the thread pools every parallel step runs on ([`pool`]).

pub(crate) mod alloc;
pub(crate) mod bigvec;
pub mod mapped;
pub mod pool;
pub(crate) mod prefetch;
