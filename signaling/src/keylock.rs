//! One async lock per key, made when first wanted and dropped when nobody holds or waits for
//! it: a node sets up or lets go of one room at a time per room, while different rooms' follows
//! run at once. (Written here: it is a map of tokio's own mutexes; no well-kept crate offers
//! just this.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// Async locks by key.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds the lock of one key until dropped.
#[derive(Debug)]
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits until nobody else holds `key`'s lock and takes it.
    pub(crate) async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone();
        KeyGuard {
            locks: self,
            key: key.to_owned(),
            guard: Some(lock.lock_owned().await),
        }
    }

    /// How many keys have a lock now (held or waited for).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let mut locks = self
            .locks
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let lock = OwnedMutexGuard::mutex(&guard).clone();
        drop(guard);
        // The map's and this one: nobody else holds or waits (a waiter clones it under the
        // map's lock, held here). A waiter given up drops its clone without that lock, which
        // can only leave an unused entry, removed by the key's next holder.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_key_and_none_across_keys() {
        let locks = Arc::new(KeyLocks::default());
        let a = locks.lock("a").await;
        // Another key is free while "a" is held.
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock("b")).await;
        assert!(b.is_ok(), "a different key waits for nobody");
        drop(b);
        // The same key waits until the holder lets go.
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move {
                let _g = locks.lock("a").await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second holder of a key waits");
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiter gets the lock once it is let go")
            .expect("the waiter ran");
        assert_eq!(locks.len(), 0, "no lock is kept for keys nobody holds");
    }

    #[tokio::test]
    async fn a_waiter_given_up_leaves_nothing_held() {
        let locks = KeyLocks::default();
        let a = locks.lock("a").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), locks.lock("a")).await;
        assert!(gave_up.is_err(), "the key was held");
        drop(a);
        let again = tokio::time::timeout(Duration::from_secs(1), locks.lock("a")).await;
        assert!(again.is_ok(), "the key can be taken again");
        drop(again);
        assert_eq!(locks.len(), 0);
    }
}
