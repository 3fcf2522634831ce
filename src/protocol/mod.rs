//! The JSON text-frame protocol: inbound messages, outbound events and client-facing errors.

pub mod error;
pub mod fit;
pub mod inbound;
pub mod outbound;
pub mod refusal;
pub mod view;

pub use error::{ClientError, ErrorCode};
pub use inbound::{Fields, Frame, FrameError, parse_frame};
pub use outbound::{DiscardReason, Envelope, Event, EventType, Reply, RunRef};
pub use view::{ExecutionView, ExecutionsView};
