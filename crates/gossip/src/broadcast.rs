//! The transmit-limited broadcast queue: each message is piggy-backed on
//! outgoing packets until it has gone out `retransmit_mult * ceil(log10(n+1))`
//! times, least-sent first and newest first among equals. A message about a
//! node replaces (invalidates) any queued older message about the same node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// What a queued message is about; a newer message with the same key
/// replaces the older one. `None` never invalidates anything.
pub type Topic = Option<String>;

#[derive(Debug, Clone)]
struct Item {
    topic: Topic,
    msg: Vec<u8>,
    /// Set when the owner wants to know the message is done.
    notify: bool,
}

/// Ordering key: fewest transmits first, then newest.
type Slot = (usize, Reverse<u64>);

#[derive(Debug, Default, Clone)]
pub struct BroadcastQueue {
    items: BTreeMap<Slot, Item>,
    by_topic: HashMap<String, Slot>,
    /// How many queued messages have each length, so `take` can stop
    /// once no message could fit the space left.
    lens: BTreeMap<usize, usize>,
    next_id: u64,
    /// Topics of `notify` messages that finished (sent enough or replaced).
    finished: Vec<Topic>,
}

/// How many times each message goes out in a cluster of `n` nodes.
pub fn retransmit_limit(mult: usize, n: usize) -> usize {
    let scale = ((n + 1) as f64).log10().ceil() as usize;
    mult * scale
}

impl BroadcastQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `msg`, replacing any queued message on the same topic.
    pub fn push(&mut self, topic: Topic, msg: Vec<u8>) {
        self.push_item(topic, msg, false);
    }

    /// Like [`push`](Self::push), and reports the topic in
    /// [`take_finished`](Self::take_finished) once it is done.
    pub fn push_notify(&mut self, topic: Topic, msg: Vec<u8>) {
        self.push_item(topic, msg, true);
    }

    fn push_item(&mut self, topic: Topic, msg: Vec<u8>, notify: bool) {
        if let Some(t) = &topic {
            if let Some(slot) = self.by_topic.remove(t) {
                if let Some(old) = self.items.remove(&slot) {
                    self.forget_len(old.msg.len());
                    if old.notify {
                        self.finished.push(old.topic);
                    }
                }
            }
        }
        self.next_id += 1;
        let slot = (0, Reverse(self.next_id));
        if let Some(t) = &topic {
            self.by_topic.insert(t.clone(), slot);
        }
        *self.lens.entry(msg.len()).or_default() += 1;
        self.items.insert(slot, Item { topic, msg, notify });
    }

    fn forget_len(&mut self, len: usize) {
        if let Some(c) = self.lens.get_mut(&len) {
            *c -= 1;
            if *c == 0 {
                self.lens.remove(&len);
            }
        }
    }

    /// Takes messages that fit in `limit` bytes, counting `overhead` bytes
    /// per message, and counts a transmit for each; messages that reach
    /// `transmit_limit` leave the queue.
    pub fn take(&mut self, overhead: usize, limit: usize, transmit_limit: usize) -> Vec<Vec<u8>> {
        let mut used = 0;
        let mut picked: Vec<Slot> = Vec::new();
        let mut out = Vec::new();
        let shortest = self.lens.keys().next().copied().unwrap_or(0);
        for (slot, item) in &self.items {
            if used + overhead + shortest > limit {
                break;
            }
            let cost = overhead + item.msg.len();
            if used + cost > limit {
                continue;
            }
            used += cost;
            out.push(item.msg.clone());
            picked.push(*slot);
        }
        for slot in picked {
            let Some(item) = self.items.remove(&slot) else {
                continue;
            };
            let sent = slot.0 + 1;
            if let Some(t) = &item.topic {
                self.by_topic.remove(t);
            }
            if sent >= transmit_limit.max(1) {
                self.forget_len(item.msg.len());
                if item.notify {
                    self.finished.push(item.topic);
                }
                continue;
            }
            let new_slot = (sent, slot.1);
            if let Some(t) = &item.topic {
                self.by_topic.insert(t.clone(), new_slot);
            }
            self.items.insert(new_slot, item);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops all but the `keep` newest messages.
    pub fn prune(&mut self, keep: usize) {
        while self.items.len() > keep {
            // Oldest = highest transmit count, then lowest id: the last slot.
            let Some((_, item)) = self.items.pop_last() else {
                break;
            };
            self.forget_len(item.msg.len());
            if let Some(t) = &item.topic {
                self.by_topic.remove(t);
            }
            if item.notify {
                self.finished.push(item.topic);
            }
        }
    }

    /// Topics of finished `notify` messages since the last call.
    pub fn take_finished(&mut self) -> Vec<Topic> {
        std::mem::take(&mut self.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Some(s.to_string())
    }

    #[test]
    fn limit_follows_log10() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 1000), 16);
    }

    #[test]
    fn newer_message_replaces_older_on_same_topic() {
        let mut q = BroadcastQueue::new();
        q.push(t("a"), b"old".to_vec());
        q.push(t("b"), b"other".to_vec());
        q.push(t("a"), b"new".to_vec());
        assert_eq!(q.len(), 2);
        let got = q.take(0, 100, 3);
        assert_eq!(got, vec![b"new".to_vec(), b"other".to_vec()]);
    }

    #[test]
    fn least_sent_go_first_and_retire_at_limit() {
        let mut q = BroadcastQueue::new();
        q.push(t("a"), vec![1; 10]);
        assert_eq!(q.take(0, 100, 2).len(), 1);
        q.push(t("b"), vec![2; 10]);
        // Room for one: the unsent one wins.
        assert_eq!(q.take(0, 12, 2), vec![vec![2; 10]]);
        assert_eq!(q.take(0, 100, 2).len(), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn overhead_counts_and_big_messages_are_skipped() {
        let mut q = BroadcastQueue::new();
        q.push(None, vec![0; 50]);
        q.push(None, vec![0; 5]);
        let got = q.take(3, 20, 5);
        assert_eq!(got, vec![vec![0; 5]]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn notify_reports_when_done_or_replaced() {
        let mut q = BroadcastQueue::new();
        q.push_notify(t("me"), b"dead".to_vec());
        q.take(0, 100, 1);
        assert_eq!(q.take_finished(), vec![t("me")]);
        q.push_notify(t("x"), b"1".to_vec());
        q.push(t("x"), b"2".to_vec());
        assert_eq!(q.take_finished(), vec![t("x")]);
    }

    #[test]
    fn length_index_follows_the_queue() {
        let mut q = BroadcastQueue::new();
        q.push(t("a"), vec![0; 30]);
        q.push(t("b"), vec![0; 8]);
        q.push(t("a"), vec![0; 12]);
        q.push(None, vec![0; 40]);
        let lens = |q: &BroadcastQueue| q.lens.iter().map(|(l, c)| (*l, *c)).collect::<Vec<_>>();
        assert_eq!(lens(&q), vec![(8, 1), (12, 1), (40, 1)]);
        // 45 bytes: the 40 goes first (newest), then only 5 are left; the
        // shortest (8) cannot fit, so the scan stops.
        assert_eq!(q.take(0, 45, 2), vec![vec![0; 40]]);
        assert_eq!(q.take(0, 100, 2).len(), 3);
        assert_eq!(lens(&q), vec![(8, 1), (12, 1)], "the 40 went out twice");
        q.prune(1);
        assert_eq!(lens(&q).iter().map(|x| x.1).sum::<usize>(), q.len());
    }

    #[test]
    fn prune_keeps_newest() {
        let mut q = BroadcastQueue::new();
        for i in 0..10u8 {
            q.push(None, vec![i]);
        }
        q.prune(3);
        let got = q.take(0, 100, 10);
        assert_eq!(got, vec![vec![9], vec![8], vec![7]]);
    }
}
