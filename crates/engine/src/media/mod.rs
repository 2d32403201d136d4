//! Media sources and the synthetic test signals.
//!
//! A source runs on its own thread while at least one call uses it and hands out frames to
//! every call's sender; synthetic sources feed exactly the path a camera or microphone does.

pub(crate) mod apm;
mod camera;
pub mod check;
pub mod devices;
pub(crate) mod jitter;
pub mod pattern;
pub(crate) mod playout;
pub(crate) mod resample;
pub(crate) mod source;
pub mod tone;
