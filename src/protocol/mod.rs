//! The JSON text-frame protocol: inbound messages, outbound events and client-facing errors.

pub mod error;
pub mod inbound;
pub mod outbound;

pub use error::{ClientError, ErrorCode};
pub use inbound::{Inbound, ListRequest, StartRequest, parse_frame};
pub use outbound::{Envelope, EventType};
