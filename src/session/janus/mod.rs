//! The live Janus VideoRoom source: signaling (a hidden participant that learns who
//! publishes) and media subscriptions (webrtcbin) whose pads feed the compositor.

pub mod signaling;
pub mod source;
pub mod subscriber;

pub use source::JanusSource;
pub use signaling::{join_hidden, publishers, Client, Event, HiddenParticipant, JanusError, Publisher, HIDDEN_DISPLAY};
