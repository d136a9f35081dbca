//! veil: a recording worker for sessions that carry protected health information.
//! See `docs/ARCHITECTURE.md` for the data flow and the invariants.

pub mod compose;
pub mod job;
pub mod live;
pub mod notify;
pub mod policy;
pub mod privacy;
pub mod recording;
pub mod session;
pub mod spill;
pub mod upload;
pub mod webhook;
