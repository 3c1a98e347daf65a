//! What every AWS client of scanfleet shares: one way to build the SDK
//! configuration and its HTTPS client ([`load`], [`configure`], [`https_client`])
//! and one answer to "should this failed call be tried again?" ([`inspect`],
//! [`classify`], [`ErrorClass`]), built on the SDK's own lists of throttling and
//! transient error codes rather than lists of our own.

mod client;
mod error;

/// The traits [`inspect`] and [`classify`] ask of an operation's error (every
/// SDK operation error has both), re-exported so callers need no smithy crate.
pub use aws_smithy_types::error::metadata::ProvideErrorMetadata;
pub use aws_smithy_types::retry::ProvideErrorKind;
pub use client::{CONNECT_TIMEOUT, ClientSettings, configure, https_client, load};
pub use error::{AwsErrorInfo, EXTRA_TRANSIENT_CODES, ErrorClass, classify, inspect};
pub(crate) use error::{chain, credentials_error};
