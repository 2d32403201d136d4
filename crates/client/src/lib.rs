//! What every Hearth front end uses, with no window toolkit in it: the device's settings and
//! invitation, its session on the server (contacts with presence, calls, reconnection), and
//! the [`AppState`] the screens are drawn from. The desktop app registers these as Tauri
//! commands; the clinician, staff and browser screens to come use the same types.

mod backoff;
mod contacts;
mod error;
mod invitation;
mod precheck;
mod session;
mod settings;
mod state;
pub mod video;

pub use backoff::Backoff;
pub use contacts::{RoomPeer, contacts};
pub use error::{ClientError, ErrorCode};
pub use hearth_engine::{EncodedVideoFrame, I420Frame, VideoCodec};
pub use hearth_proto::Role;
pub use invitation::{Identity, Invitation};
pub use precheck::{CheckItem, CheckStatus, PrecheckReport};
pub use session::{NO_SPEAKER, SYNTHETIC, Session, SessionOptions, VideoSink, devices};
pub use settings::{
    DeviceChoice, KnownContact, Language, ResidentOptions, Settings, SettingsStore,
};
pub use state::{
    AppState, CallPeer, CallView, Connection, Contact, Device, DeviceKind, EndReason, Me, Notice,
    Presence, Quality, VideoState,
};
