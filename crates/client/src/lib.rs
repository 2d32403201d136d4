//! What every Hearth front end uses, with no window toolkit in it: the device's settings and
//! invitation, its session on the server (contacts with presence, calls, reconnection), and
//! the [`AppState`] the screens are drawn from, and the server's HTTP API for staff and
//! clinicians. The desktop app registers these as Tauri commands.

mod api;
mod contacts;
mod error;
mod invitation;
mod precheck;
mod session;
mod settings;
mod state;
pub mod video;

pub use api::{Api, redeem};
pub use contacts::{RoomPeer, contacts};
pub use error::{ClientError, ErrorCode};
pub use hearth_engine::Backoff;
pub use hearth_engine::{EncodedVideoFrame, I420Frame, VideoCodec};
pub use hearth_proto::Role;
pub use hearth_proto::care;
pub use invitation::{Identity, Invitation, Pasted, http_base};
pub use precheck::{CheckItem, CheckStatus, PrecheckReport};
pub use session::{NO_SPEAKER, SYNTHETIC, Session, SessionOptions, VideoSink, devices};
pub use settings::{
    DeviceChoice, KnownContact, Language, ResidentOptions, SeenResident, Settings, SettingsStore,
};
pub use state::{
    AppState, CallPeer, CallView, Connection, Contact, Device, DeviceKind, EndReason, Me, Notice,
    Presence, Quality, VideoState, WaitingPatient,
};
