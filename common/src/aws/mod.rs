//! What every AWS client of scanfleet shares: one way to build the SDK
//! configuration and its HTTPS client ([`load`], [`configure`], [`https_client`])
//! and one answer to "should this failed call be tried again?" ([`inspect`],
//! [`classify`], [`ErrorClass`]), built on the SDK's own lists of throttling and
//! transient error codes rather than lists of our own.

mod client;
mod error;

pub use client::{CONNECT_TIMEOUT, ClientSettings, configure, https_client, load};
pub use error::{AwsErrorInfo, EXTRA_TRANSIENT_CODES, ErrorClass, classify, inspect};
