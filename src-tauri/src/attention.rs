//! Getting a person's attention: the screen wakes and the window comes forward for an incoming
//! call, the screen stays awake during calls, and every new patient in a clinician's waiting
//! room asks for the taskbar's attention.

use std::time::Duration;

use hearth_client::{AppState, CallView};
use tauri::{UserAttentionType, WebviewWindow};
use tokio::sync::watch;

use crate::screen::Screen;

/// How often the screen saver's idle timer is reset during a call.
const KEEP_AWAKE_EVERY: Duration = Duration::from_secs(20);

/// Waiting patients not seen before, in arrival order; `seen` learns them. A patient who
/// drops and reconnects keeps their id, so they are not announced twice.
pub(crate) fn new_arrivals(
    seen: &mut std::collections::HashSet<String>,
    lobby: &[hearth_client::WaitingPatient],
) -> Vec<String> {
    lobby
        .iter()
        .filter(|w| seen.insert(w.peer.clone()))
        .map(|w| w.peer.clone())
        .collect()
}

/// On an incoming call the screen wakes and the window comes forward (out of minimised,
/// focused, asking for attention); during any call the screen is kept from blanking. Every
/// new patient in a clinician's waiting room asks for attention too (the taskbar flashes),
/// not only the first.
pub(crate) fn watch_calls(window: WebviewWindow, mut state: watch::Receiver<AppState>) {
    tauri::async_runtime::spawn(async move {
        let screen = match Screen::open(None) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::info!(error = %e, "the screen cannot be kept awake or woken here");
                None
            }
        };
        let mut was_incoming = false;
        let mut seen = std::collections::HashSet::new();
        let mut keep_awake = tokio::time::interval(KEEP_AWAKE_EVERY);
        loop {
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let (incoming, arrived) = {
                        let s = state.borrow_and_update();
                        (
                            matches!(s.call, CallView::Incoming { .. }),
                            new_arrivals(&mut seen, &s.lobby),
                        )
                    };
                    if !arrived.is_empty() {
                        tracing::info!(count = arrived.len(), "a patient is waiting");
                        let _ = window.request_user_attention(Some(UserAttentionType::Critical));
                    }
                    if incoming && !was_incoming {
                        if let Some(s) = &screen
                            && let Err(e) = s.wake()
                        {
                            tracing::warn!(error = %e, "could not wake the screen");
                        }
                        let _ = window.unminimize();
                        let _ = window.show();
                        let _ = window.set_focus();
                        let _ = window.request_user_attention(Some(UserAttentionType::Critical));
                    }
                    was_incoming = incoming;
                }
                _ = keep_awake.tick() => {
                    let in_call =
                        !matches!(state.borrow().call, CallView::Idle | CallView::Ended { .. });
                    if in_call
                        && let Some(s) = &screen
                        && let Err(e) = s.keep_awake()
                    {
                        tracing::debug!(error = %e, "could not keep the screen awake");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(peer: &str) -> hearth_client::WaitingPatient {
        hearth_client::WaitingPatient {
            peer: peer.into(),
            name: peer.to_uppercase(),
            role: hearth_client::Role::Patient,
            since_ms: 0.0,
            connected: true,
            check: None,
        }
    }

    #[test]
    fn every_new_patient_is_announced_once() {
        let mut seen = std::collections::HashSet::new();
        assert_eq!(new_arrivals(&mut seen, &[waiting("a")]), ["a"]);
        // The second arrival is announced too, not only the first.
        assert_eq!(
            new_arrivals(&mut seen, &[waiting("a"), waiting("b")]),
            ["b"]
        );
        // Admitted and back again with the same id (a reconnect): not announced twice.
        assert!(new_arrivals(&mut seen, &[waiting("b")]).is_empty());
        assert_eq!(
            new_arrivals(&mut seen, &[waiting("b"), waiting("c"), waiting("d")]),
            ["c", "d"]
        );
    }
}
