//! The one vocabulary of inputs is the core's own, [`clutch_proto::Input`]: the
//! simulator, the fuzz decoder and the checkers speak it as the driver does.

pub use clutch_proto::Input;
