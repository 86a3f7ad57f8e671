//! The master engine: the event loop ([`driver`]) that feeds the `clutch_proto` core
//! with facts from the OS toolkit and carries out its actions, the control socket's
//! server side ([`control_server`]) and its event stream's lines ([`events`]), the
//! `/metrics` endpoint ([`metrics_server`]), the messages to the service manager
//! ([`service`]), and the workers' output read through pipes ([`output`]).

pub(crate) mod control_server;
pub(crate) mod driver;
pub(crate) mod events;
pub(crate) mod handle;
pub(crate) mod metrics_server;
pub(crate) mod output;
pub(crate) mod service;
