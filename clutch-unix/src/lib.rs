//! clutch-unix: the production driver (work in progress).
#![deny(unsafe_code)]

pub mod listen;
pub mod notify;
pub mod process;
pub mod spawn;
mod sys;
#[cfg(test)]
mod testutil;
