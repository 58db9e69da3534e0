//! Members as Serf reports them.

use std::net::IpAddr;
use std::time::Instant;

use crate::clock::LamportTime;
use crate::tags::Tags;

/// A member's status. Serf's order (`StatusNone` = 0 ... `StatusFailed` = 4)
/// is also its wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    None,
    Alive,
    Leaving,
    Left,
    Failed,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::None => "none",
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }

    pub fn wire(self) -> i64 {
        match self {
            MemberStatus::None => 0,
            MemberStatus::Alive => 1,
            MemberStatus::Leaving => 2,
            MemberStatus::Left => 3,
            MemberStatus::Failed => 4,
        }
    }
}

impl std::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub tags: Tags,
    pub status: MemberStatus,
    /// `[pmin, pmax, pcur, dmin, dmax, dcur]`
    pub vsn: [u8; 6],
}

/// A member plus what only the core needs.
#[derive(Debug, Clone)]
pub(crate) struct MemberState {
    pub member: Member,
    /// Lamport time of the last join or leave intent applied.
    pub status_ltime: LamportTime,
    /// When it failed or left (for reaping).
    pub leave_time: Option<Instant>,
}
