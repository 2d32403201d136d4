//! The device's settings and identity, kept as one JSON file in the app's data directory.
//!
//! Writes are atomic (a temporary file renamed over the old one), so a crash or a full disk
//! never leaves half a file. A file that cannot be read is moved aside, not deleted, and setup
//! starts again: nothing is lost and the app never stops on it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::{ClientError, ErrorCode};
use crate::invitation::Invitation;

/// The languages the app speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Type)]
pub enum Language {
    /// English.
    #[default]
    #[serde(rename = "en")]
    English,
    /// Korean.
    #[serde(rename = "ko")]
    Korean,
}

/// Which camera, microphone and speaker to use; `None` is the system's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct DeviceChoice {
    /// A camera id from the device list, or `synthetic` for the test pattern.
    pub camera: Option<String>,
    /// A microphone id, or `synthetic` for the test tone.
    pub microphone: Option<String>,
    /// A speaker id, or `none` to play nothing.
    pub speaker: Option<String>,
}

/// Someone a resident's tablet knows by name: their photo and whether their calls are
/// answered without a tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct KnownContact {
    /// Their display name, as their invitation gives it.
    pub name: String,
    /// A picture file on this device, shown on their tile.
    #[serde(default)]
    pub photo: Option<String>,
    /// Their calls are answered after the countdown when auto-answer is on.
    #[serde(default)]
    pub trusted: bool,
    /// Their invitation's subject (`sub`, as the invitations API gives it). When given, only
    /// calls from that invitation are answered by themselves. Without it, a trusted name is
    /// answered only while nobody else connected has that name, and the first invitation
    /// answered by it is written here.
    #[serde(default)]
    pub sub: Option<String>,
}

/// What staff set on a resident's tablet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct ResidentOptions {
    /// Answer trusted contacts' calls by themselves after a countdown.
    pub auto_answer: bool,
    /// Seconds of countdown (with a chime) before an automatic answer.
    pub auto_answer_seconds: u32,
    /// Full screen, no window frame, started at login and restarted after a crash.
    pub kiosk: bool,
    /// The people the tablet knows.
    pub contacts: Vec<KnownContact>,
}

impl Default for ResidentOptions {
    fn default() -> Self {
        Self {
            auto_answer: false,
            auto_answer_seconds: 10,
            kiosk: false,
            contacts: Vec::new(),
        }
    }
}

/// Everything the app remembers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct Settings {
    /// The server and token this device signs in with; `None` until setup.
    pub invitation: Option<Invitation>,
    /// The language of the screens.
    pub language: Language,
    /// The chosen devices.
    pub devices: DeviceChoice,
    /// Options for a resident's tablet.
    pub resident: ResidentOptions,
    /// The residents this device has seen in its room (family and others, not a tablet), so
    /// that a resident whose tablet is off is still listed, as not available, rather than
    /// gone from the list. Forgotten with the invitation.
    pub residents: Vec<SeenResident>,
}

/// A resident seen in the device's room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SeenResident {
    /// Their name.
    pub name: String,
    /// Their token's subject.
    pub sub: String,
}

/// Where the settings live.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    path: PathBuf,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The settings (defaults when there were none or they were unreadable).
    pub settings: Settings,
    /// Set when a file was there but unreadable: it was kept aside under this name.
    pub set_aside: Option<PathBuf>,
}

impl SettingsStore {
    /// Settings in `dir/settings.json`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("settings.json"),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the settings. A missing file gives the defaults; an unreadable one is renamed to
    /// `settings.json.unreadable-<unix seconds>` and also gives the defaults.
    pub fn load(&self) -> Loaded {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Loaded {
                    settings: Settings::default(),
                    set_aside: None,
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "settings unreadable");
                return self.set_aside();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(settings) => Loaded {
                settings,
                set_aside: None,
            },
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "settings are not valid");
                self.set_aside()
            }
        }
    }

    fn set_aside(&self) -> Loaded {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = self
            .path
            .with_file_name(format!("settings.json.unreadable-{secs}"));
        let set_aside = match std::fs::rename(&self.path, &aside) {
            Ok(()) => Some(aside),
            Err(e) => {
                tracing::warn!(error = %e, "could not move the unreadable settings aside");
                None
            }
        };
        Loaded {
            settings: Settings::default(),
            set_aside,
        }
    }

    /// Saves the settings atomically.
    pub fn save(&self, settings: &Settings) -> Result<(), ClientError> {
        let unwritable = |e: std::io::Error| {
            tracing::warn!(error = %e, path = %self.path.display(), "settings not saved");
            ClientError::new(
                ErrorCode::SettingsUnwritable,
                "The settings could not be saved on this device. Check that its disk is not full.",
            )
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(unwritable)?;
        }
        let json = serde_json::to_vec_pretty(settings).map_err(|e| {
            tracing::error!(error = %e, "settings not serialisable");
            ClientError::new(ErrorCode::Internal, "The settings could not be saved.")
        })?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(unwritable)?;
        std::fs::rename(&tmp, &self.path).map_err(unwritable)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn saves_and_loads_and_sets_aside_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::in_dir(&dir.path().join("nested"));
        assert_eq!(store.load().settings, Settings::default());
        let mut s = Settings {
            language: Language::Korean,
            ..Settings::default()
        };
        s.resident.auto_answer = true;
        s.resident.contacts.push(KnownContact {
            name: "Ann".into(),
            photo: None,
            trusted: true,
            sub: Some("inv-ann".into()),
        });
        store.save(&s).unwrap();
        assert_eq!(store.load().settings, s);

        std::fs::write(store.path(), b"{ not json").unwrap();
        let loaded = store.load();
        assert_eq!(loaded.settings, Settings::default());
        let aside = loaded.set_aside.unwrap();
        assert_eq!(std::fs::read(&aside).unwrap(), b"{ not json");
        assert!(!store.path().exists());
    }

    #[test]
    fn reads_older_files_with_fields_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SettingsStore::in_dir(dir.path());
        std::fs::write(store.path(), br#"{"language":"ko"}"#).unwrap();
        let s = store.load().settings;
        assert_eq!(s.language, Language::Korean);
        assert_eq!(s.resident.auto_answer_seconds, 10);
    }
}
