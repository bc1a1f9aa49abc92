//! Named groups of WebSocket clients with bounded per-client queues: the hub behind WS chat
//! (one group), rooms and pub/sub topics.
//!
//! Delivery never blocks the sender: a full client queue drops the message for that client,
//! counts it, and the client is told how many it missed before its next message.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::mpsc;

use crate::metrics::ScenarioMetrics;

/// Longest accepted group (room, topic) name in bytes.
pub(crate) const MAX_GROUP_NAME: usize = 128;
/// Most groups one client may be in at once.
pub(crate) const MAX_GROUPS_PER_CLIENT: usize = 64;

/// A client's inbox: the sending side the hub uses.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    tx: mpsc::Sender<Arc<str>>,
    missed: Arc<AtomicU64>,
}

/// The receiving side, owned by the client's session.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) rx: mpsc::Receiver<Arc<str>>,
    missed: Arc<AtomicU64>,
}

impl Outbox {
    /// Messages dropped for this client since the last call.
    pub(crate) fn take_missed(&self) -> u64 {
        self.missed.swap(0, Ordering::Relaxed)
    }
}

/// A new inbox/outbox pair holding at most `capacity` (> 0) queued messages.
pub(crate) fn mailbox(capacity: usize) -> (Inbox, Outbox) {
    let (tx, rx) = mpsc::channel(capacity);
    let missed = Arc::new(AtomicU64::new(0));
    (
        Inbox {
            tx,
            missed: Arc::clone(&missed),
        },
        Outbox { rx, missed },
    )
}

/// Groups of clients keyed by name.
#[derive(Debug)]
pub(crate) struct Groups {
    members: Mutex<HashMap<String, HashMap<u64, Inbox>>>,
    next_client: AtomicU64,
    metrics: Arc<ScenarioMetrics>,
    /// Set when instances share this hub (`--redis-url`): messages go up to the backplane
    /// and come back, to every instance, through [`Groups::deliver_shared`].
    uplink: OnceLock<mpsc::Sender<Shared>>,
}

/// A message on its way to every instance's members of `group`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) group: String,
    /// The sending client (on the publishing instance), left out of the delivery.
    pub(crate) except: Option<u64>,
    pub(crate) message: Arc<str>,
}

impl Groups {
    pub(crate) fn new(metrics: Arc<ScenarioMetrics>) -> Self {
        Self {
            members: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            metrics,
            uplink: OnceLock::new(),
        }
    }

    /// From now on, messages go to `uplink` (the backplane) instead of straight to members.
    pub(crate) fn set_uplink(&self, uplink: mpsc::Sender<Shared>) {
        let _ = self.uplink.set(uplink);
    }

    /// Delivers a message that came back from the backplane; `except` is the sender when it
    /// is a client of this instance.
    pub(crate) fn deliver_shared(
        &self,
        group: &str,
        except: Option<u64>,
        message: &Arc<str>,
    ) -> usize {
        self.deliver(group, except, message)
    }

    /// Tells the members of `group` but `except` that one message for them was lost (the
    /// backplane could not publish it): each gets a `lagged` notice before its next message.
    pub(crate) fn missed_in(&self, group: &str, except: Option<u64>) {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, inbox) in members.get(group).into_iter().flatten() {
            if Some(*id) != except {
                inbox.missed.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped(1);
            }
        }
    }

    /// Tells every member of every group that `n` shared messages were lost on the way (the
    /// backplane trimmed them before this instance read them): each gets a `lagged` notice
    /// before its next message.
    pub(crate) fn missed_everywhere(&self, n: u64) {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        for inbox in members.values().flat_map(HashMap::values) {
            inbox.missed.fetch_add(n, Ordering::Relaxed);
            self.metrics.dropped(n);
        }
    }

    /// A fresh client id.
    pub(crate) fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `client` to `group`; returns the member count afterwards.
    pub(crate) fn join(&self, group: &str, client: u64, inbox: &Inbox) -> usize {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let group = members.entry(group.to_owned()).or_default();
        group.insert(client, inbox.clone());
        group.len()
    }

    /// Removes `client` from `group`; returns whether it was a member.
    pub(crate) fn leave(&self, group: &str, client: u64) -> bool {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(set) = members.get_mut(group) else {
            return false;
        };
        let was = set.remove(&client).is_some();
        if set.is_empty() {
            members.remove(group);
        }
        was
    }

    /// Delivers `message` to every member of `group` except `except`; returns how many
    /// queues accepted it.
    /// With a backplane the message is handed to it and the count is of this instance's
    /// members (the message reaches them, and every other instance's, when it comes back).
    pub(crate) fn publish(&self, group: &str, except: Option<u64>, message: &Arc<str>) -> usize {
        let Some(uplink) = self.uplink.get() else {
            return self.deliver(group, except, message);
        };
        let here = {
            let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
            members.get(group).map_or(0, |set| {
                set.keys().filter(|id| Some(**id) != except).count()
            })
        };
        let shared = Shared {
            group: group.to_owned(),
            except,
            message: Arc::clone(message),
        };
        if uplink.try_send(shared).is_err() {
            // The backplane is that far behind: lost for every member, counted here.
            self.metrics.dropped(here as u64);
        }
        here
    }

    fn deliver(&self, group: &str, except: Option<u64>, message: &Arc<str>) -> usize {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(set) = members.get(group) else {
            return 0;
        };
        let mut delivered = 0;
        for (id, inbox) in set {
            if Some(*id) == except {
                continue;
            }
            match inbox.tx.try_send(Arc::clone(message)) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    inbox.missed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.dropped(1);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }
}

/// One client's memberships in a [`Groups`] hub, bounded and left on drop.
#[derive(Debug)]
pub(crate) struct Membership {
    hub: Arc<Groups>,
    inbox: Inbox,
    id: u64,
    joined: HashSet<String>,
}

/// Joining would put the client in more than [`MAX_GROUPS_PER_CLIENT`] groups.
#[derive(Debug)]
pub(crate) struct TooManyGroups;

impl Membership {
    /// A new client of `hub` receiving through `inbox`.
    pub(crate) fn new(hub: Arc<Groups>, inbox: Inbox) -> Self {
        let id = hub.client_id();
        Self {
            hub,
            inbox,
            id,
            joined: HashSet::new(),
        }
    }

    /// This client's id in the hub.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The hub.
    pub(crate) fn hub(&self) -> &Groups {
        &self.hub
    }

    /// Whether the client is in `group`.
    pub(crate) fn is_in(&self, group: &str) -> bool {
        self.joined.contains(group)
    }

    /// Joins `group` (idempotent); returns its member count.
    pub(crate) fn join(&mut self, group: &str) -> Result<usize, TooManyGroups> {
        if !self.joined.contains(group) && self.joined.len() >= MAX_GROUPS_PER_CLIENT {
            return Err(TooManyGroups);
        }
        self.joined.insert(group.to_owned());
        Ok(self.hub.join(group, self.id, &self.inbox))
    }

    /// Leaves `group` (idempotent).
    pub(crate) fn leave(&mut self, group: &str) {
        self.hub.leave(group, self.id);
        self.joined.remove(group);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for group in &self.joined {
            self.hub.leave(group, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Scenario};

    #[test]
    fn full_queue_drops_and_counts_instead_of_growing() {
        let groups = Groups::new(Metrics::default().scenario(Scenario::Rooms));
        let (inbox, outbox) = mailbox(2);
        groups.join("r", 1, &inbox);
        let msg: Arc<str> = Arc::from("x");
        let delivered: usize = (0..5).map(|_| groups.publish("r", None, &msg)).sum();
        assert_eq!(delivered, 2);
        assert_eq!(outbox.take_missed(), 3);
        assert_eq!(outbox.take_missed(), 0);
        assert_eq!(groups.publish("r", Some(1), &msg), 0, "sender excluded");
        assert!(groups.leave("r", 1));
        assert!(!groups.leave("r", 1));
        assert_eq!(groups.publish("r", None, &msg), 0);
    }

    #[test]
    fn membership_is_bounded_and_left_on_drop() {
        let hub = Arc::new(Groups::new(Metrics::default().scenario(Scenario::PubSub)));
        let (inbox, _outbox) = mailbox(4);
        let mut member = Membership::new(Arc::clone(&hub), inbox);
        for i in 0..MAX_GROUPS_PER_CLIENT {
            assert_eq!(member.join(&format!("g{i}")).ok(), Some(1));
        }
        assert!(member.join("one-too-many").is_err());
        assert_eq!(
            member.join("g0").ok(),
            Some(1),
            "rejoining is not a new group"
        );
        member.leave("g0");
        assert!(member.join("now-fits").is_ok());
        drop(member);
        assert!(
            hub.members
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
    }
}
