//! The master engine: the event loop ([`driver`]) that feeds the `clutch_proto` core
//! with facts from the OS toolkit and carries out its actions, the control socket's
//! server side ([`control_server`]), the `/metrics` endpoint ([`metrics_server`]), and
//! the messages to the service manager
//! ([`service`]).

pub(crate) mod control_server;
pub(crate) mod driver;
pub(crate) mod handle;
pub(crate) mod metrics_server;
pub(crate) mod service;
