//! The member table: every known member, found by name or by slot.
//!
//! A 5,000-node simulation holds 25 million members, so the table is kept
//! lean: each member lives once in a slab (its name stored only in its
//! [`Node`]), the probe order and random picks refer to members by slot
//! number, and the name index is an open-addressing table of 8-byte cells
//! (slot and a hash tag) with a fixed, fast hash, so that a lookup touches
//! the member only when the tag matches.

use crate::node::Member;

/// Where a member lives in the table; stable until it is removed.
pub(super) type Slot = u32;

/// Members by name (self included).
#[derive(Debug, Default)]
pub(super) struct Members {
    entries: Vec<Option<Member>>,
    /// Slots of removed members, reused first.
    free: Vec<Slot>,
    /// `tag << 32 | (slot + 1)` per cell, 0 for an empty cell; linear
    /// probing, at most three quarters full.
    index: Vec<u64>,
    len: usize,
}

/// FNV-1a, then a multiply-xorshift finish so the low bits are usable.
fn hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

fn cell(tag: u32, slot: Slot) -> u64 {
    u64::from(tag) << 32 | u64::from(slot + 1)
}

fn cell_slot(c: u64) -> Slot {
    (c as u32).wrapping_sub(1)
}

impl Members {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// The index cell holding `name`, if present.
    fn find(&self, name: &str) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let h = hash(name);
        let tag = (h >> 32) as u32;
        let mask = self.mask();
        let mut i = h as usize & mask;
        loop {
            let c = self.index[i];
            if c == 0 {
                return None;
            }
            if (c >> 32) as u32 == tag {
                let slot = cell_slot(c) as usize;
                if self.entries[slot]
                    .as_ref()
                    .is_some_and(|m| m.node.name == name)
                {
                    return Some(i);
                }
            }
            i = (i + 1) & mask;
        }
    }

    pub(super) fn slot_of(&self, name: &str) -> Option<Slot> {
        self.find(name).map(|i| cell_slot(self.index[i]))
    }

    pub(super) fn get(&self, name: &str) -> Option<&Member> {
        let slot = self.slot_of(name)?;
        self.entries[slot as usize].as_ref()
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Member> {
        let slot = self.slot_of(name)?;
        self.entries[slot as usize].as_mut()
    }

    /// The member in `slot`, if the slot is taken.
    pub(super) fn at(&self, slot: Slot) -> Option<&Member> {
        self.entries.get(slot as usize)?.as_ref()
    }

    pub(super) fn at_mut(&mut self, slot: Slot) -> Option<&mut Member> {
        self.entries.get_mut(slot as usize)?.as_mut()
    }

    /// Adds a member whose name is not in the table yet; returns its slot.
    pub(super) fn insert(&mut self, member: Member) -> Slot {
        debug_assert!(self.find(&member.node.name).is_none());
        if (self.len + 1) * 4 > self.index.len() * 3 {
            self.grow();
        }
        let h = hash(&member.node.name);
        let slot = match self.free.pop() {
            Some(s) => {
                self.entries[s as usize] = Some(member);
                s
            }
            None => {
                self.entries.push(Some(member));
                (self.entries.len() - 1) as Slot
            }
        };
        self.place(h, slot);
        self.len += 1;
        slot
    }

    fn place(&mut self, h: u64, slot: Slot) {
        let mask = self.mask();
        let mut i = h as usize & mask;
        while self.index[i] != 0 {
            i = (i + 1) & mask;
        }
        self.index[i] = cell((h >> 32) as u32, slot);
    }

    fn grow(&mut self) {
        let cap = (self.index.len() * 2).max(16);
        let old = std::mem::replace(&mut self.index, vec![0; cap]);
        for c in old.into_iter().filter(|&c| c != 0) {
            let slot = cell_slot(c);
            if let Some(m) = &self.entries[slot as usize] {
                let h = hash(&m.node.name);
                self.place(h, slot);
            }
        }
    }

    /// Removes the member in `slot`; its slot may be handed out again.
    pub(super) fn remove(&mut self, slot: Slot) -> Option<Member> {
        let name = &self.entries.get(slot as usize)?.as_ref()?.node.name;
        let mut hole = self.find(name)?;
        let m = self.entries[slot as usize].take();
        self.free.push(slot);
        self.len -= 1;
        // Backward-shift deletion: pull later cells of the same run into
        // the hole if their home is at or before it.
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let c = self.index[i];
            if c == 0 {
                break;
            }
            let home = self.entries[cell_slot(c) as usize]
                .as_ref()
                .map_or(i, |m| hash(&m.node.name) as usize & mask);
            // Does `home` lie cyclically in (hole, i]? Then it stays.
            let stays = if hole <= i {
                hole < home && home <= i
            } else {
                hole < home || home <= i
            };
            if !stays {
                self.index[hole] = c;
                hole = i;
            }
        }
        self.index[hole] = 0;
        m
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Member> {
        self.entries.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{Node, State};
    use std::collections::HashMap;
    use std::time::Instant;

    fn member(name: &str, inc: u32) -> Member {
        Member {
            node: Node {
                name: name.to_string(),
                addr: "10.0.0.1:7946".parse().unwrap(),
                meta: Vec::new(),
                vsn: [1, 5, 2, 2, 5, 4],
                state: State::Alive,
                incarnation: inc,
            },
            state_change: Instant::now(),
        }
    }

    #[test]
    fn inserts_finds_and_removes_like_a_map() {
        let mut t = Members::default();
        let mut model: HashMap<String, (Slot, u32)> = HashMap::new();
        // A fixed pseudo-random walk of inserts and removals.
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let name = format!("n{}", (x >> 33) % 700);
            match (model.get(&name).copied(), (x >> 20) % 3) {
                (Some((slot, _)), 0) => {
                    let m = t.remove(slot).expect("present");
                    assert_eq!(m.node.name, name);
                    model.remove(&name);
                }
                (Some((slot, inc)), _) => {
                    assert_eq!(t.slot_of(&name), Some(slot));
                    assert_eq!(t.get(&name).map(|m| m.node.incarnation), Some(inc));
                }
                (None, _) => {
                    assert!(t.get(&name).is_none());
                    let slot = t.insert(member(&name, step));
                    model.insert(name, (slot, step));
                }
            }
            assert_eq!(t.len(), model.len());
        }
        for (name, (slot, inc)) in &model {
            assert_eq!(t.slot_of(name), Some(*slot));
            assert_eq!(t.at(*slot).map(|m| m.node.incarnation), Some(*inc));
        }
        assert_eq!(t.values().count(), model.len());
    }
}
