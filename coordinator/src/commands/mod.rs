//! One module per command, each thin glue over the pipeline steps
//! ([`crate::plan`], [`crate::publish`], [`crate::follow`], [`crate::report`]).

pub mod embedded;
pub mod fleet;
pub mod queues;
pub mod status;
pub mod watch;
