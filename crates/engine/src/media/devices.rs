//! Cameras (through `nokhwa`, Video4Linux here), microphones and speakers (through `cpal`).
//!
//! Device ids are stable across restarts and re-plugging: they are built from the name the
//! system gives the device (`camera:…`, `mic:…`, `speaker:…`), with `#2`, `#3` appended when two
//! devices share a name. A device that is missing or cannot be opened is reported as a
//! [`DeviceError`] with a sentence for a person; the call goes on without it.

use cpal::traits::{DeviceTrait, HostTrait};

use crate::events::DeviceKind;

/// One device the system offers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// Stable id, to choose it in `RoomOptions`.
    pub id: String,
    /// The name to show a person.
    pub name: String,
    /// Camera, microphone or speaker.
    #[serde(serialize_with = "kind_name")]
    pub kind: DeviceKind,
}

fn kind_name<S: serde::Serializer>(k: &DeviceKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match k {
        DeviceKind::Camera => "camera",
        DeviceKind::Microphone => "microphone",
        DeviceKind::Speaker => "speaker",
    })
}

/// A device that could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeviceError {
    /// Which kind of device.
    pub kind: DeviceKind,
    /// A sentence for a person.
    pub message: String,
}

fn ids(prefix: &str, names: Vec<String>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    names
        .into_iter()
        .map(|name| {
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            let id = if *n == 1 {
                format!("{prefix}:{name}")
            } else {
                format!("{prefix}:{name}#{n}")
            };
            (id, name)
        })
        .collect()
}

/// Cameras, in the order the system lists them, with the index `nokhwa` opens them by.
pub(crate) fn cameras() -> Vec<(DeviceInfo, nokhwa::utils::CameraIndex)> {
    let found = match nokhwa::query(nokhwa::utils::ApiBackend::Auto) {
        Ok(list) => list,
        Err(e) => {
            tracing::debug!(error = %e, "no camera list");
            Vec::new()
        }
    };
    let names = found.iter().map(|c| c.human_name()).collect();
    ids("camera", names)
        .into_iter()
        .zip(found)
        .map(|((id, name), info)| {
            (
                DeviceInfo {
                    id,
                    name,
                    kind: DeviceKind::Camera,
                },
                info.index().clone(),
            )
        })
        .collect()
}

fn audio_devices(input: bool) -> Vec<(DeviceInfo, cpal::Device)> {
    let host = cpal::default_host();
    let devices: Vec<cpal::Device> = match if input {
        host.input_devices().map(|d| d.collect())
    } else {
        host.output_devices().map(|d| d.collect())
    } {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "no audio device list");
            Vec::new()
        }
    };
    let names = devices
        .iter()
        .map(|d| d.name().unwrap_or_else(|_| "unnamed".to_owned()))
        .collect();
    let (prefix, kind) = if input {
        ("mic", DeviceKind::Microphone)
    } else {
        ("speaker", DeviceKind::Speaker)
    };
    ids(prefix, names)
        .into_iter()
        .zip(devices)
        .map(|((id, name), device)| (DeviceInfo { id, name, kind }, device))
        .collect()
}

/// Microphones with their `cpal` handles.
pub(crate) fn microphones() -> Vec<(DeviceInfo, cpal::Device)> {
    audio_devices(true)
}

/// Speakers with their `cpal` handles.
pub(crate) fn speakers() -> Vec<(DeviceInfo, cpal::Device)> {
    audio_devices(false)
}

/// Every camera, microphone and speaker the system offers now.
pub fn list() -> Vec<DeviceInfo> {
    let mut all: Vec<DeviceInfo> = cameras().into_iter().map(|(d, _)| d).collect();
    all.extend(audio_devices(true).into_iter().map(|(d, _)| d));
    all.extend(audio_devices(false).into_iter().map(|(d, _)| d));
    all
}

/// The camera to use: the one with `id`, or the first one when `id` is `None`.
pub(crate) fn find_camera(
    id: Option<&str>,
) -> Result<(DeviceInfo, nokhwa::utils::CameraIndex), DeviceError> {
    let mut all = cameras();
    let pos = match id {
        Some(id) => all.iter().position(|(d, _)| d.id == id),
        None => (!all.is_empty()).then_some(0),
    };
    match pos {
        Some(i) => Ok(all.swap_remove(i)),
        None => Err(DeviceError {
            kind: DeviceKind::Camera,
            message: match id {
                Some(_) => {
                    "The chosen camera is not connected. The call continues without your picture."
                        .to_owned()
                }
                None => "No camera was found. The call continues without your picture.".to_owned(),
            },
        }),
    }
}

/// The microphone to use: the one with `id`, or the system default when `id` is `None`.
pub(crate) fn find_microphone(id: Option<&str>) -> Result<(DeviceInfo, cpal::Device), DeviceError> {
    let missing = |chosen: bool| DeviceError {
        kind: DeviceKind::Microphone,
        message: if chosen {
            "The chosen microphone is not connected. The call continues, but the others cannot hear you.".to_owned()
        } else {
            "No microphone was found. The call continues, but the others cannot hear you."
                .to_owned()
        },
    };
    match id {
        Some(id) => microphones()
            .into_iter()
            .find(|(d, _)| d.id == id)
            .ok_or_else(|| missing(true)),
        None => {
            let device = cpal::default_host()
                .default_input_device()
                .ok_or_else(|| missing(false))?;
            let name = device.name().unwrap_or_else(|_| "default".to_owned());
            Ok((
                DeviceInfo {
                    id: format!("mic:{name}"),
                    name,
                    kind: DeviceKind::Microphone,
                },
                device,
            ))
        }
    }
}

/// The kernel's device nodes for cameras (`video*`) and sound devices (`snd/pcm*`) under
/// `dev`. They appear and disappear as devices are plugged in and out, and reading them costs
/// a directory listing, so the room watches these and lists devices again only when they
/// change.
pub(crate) fn device_nodes(dev: &std::path::Path) -> Vec<String> {
    let mut nodes = Vec::new();
    for (dir, prefix) in [(dev.to_path_buf(), "video"), (dev.join("snd"), "pcm")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    nodes.push(format!("{}/{name}", dir.display()));
                }
            }
        }
    }
    nodes.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugging_a_device_changes_the_nodes() {
        let dir = std::env::temp_dir().join(format!("hearth-dev-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("snd")).unwrap();
        std::fs::write(dir.join("snd/pcmC0D0p"), "").unwrap();
        std::fs::write(dir.join("null"), "").unwrap();
        let before = device_nodes(&dir);
        assert_eq!(before.len(), 1);
        std::fs::write(dir.join("video0"), "").unwrap();
        let after = device_nodes(&dir);
        assert_eq!(after.len(), 2);
        assert_ne!(before, after);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ids_are_names_with_duplicates_numbered() {
        let got = ids("mic", vec!["USB".into(), "Built-in".into(), "USB".into()]);
        let ids: Vec<_> = got.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(ids, ["mic:USB", "mic:Built-in", "mic:USB#2"]);
    }

    #[test]
    fn a_missing_device_is_a_plain_sentence() {
        let e = find_camera(Some("camera:no such camera")).unwrap_err();
        assert_eq!(e.kind, DeviceKind::Camera);
        assert!(e.message.contains("not connected"), "{}", e.message);
        let Err(e) = find_microphone(Some("mic:no such microphone")) else {
            panic!("found a microphone that does not exist")
        };
        assert_eq!(e.kind, DeviceKind::Microphone);
    }
}
