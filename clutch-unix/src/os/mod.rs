//! The OS toolkit: the operating-system pieces a cluster master is built from. Each
//! module does one thing with real processes and sockets and knows nothing of the
//! others' policy; [`crate::engine`] puts them together.

pub(crate) mod contain;
pub mod credentials;
pub mod listen;
pub(crate) mod memory;
pub mod notify;
pub(crate) mod pin;
pub mod process;
pub mod rlimit;
pub mod spawn;
mod sys;
pub mod title;
pub(crate) mod usage;
