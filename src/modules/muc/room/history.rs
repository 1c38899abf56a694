//! The last messages of a room, replayed to newcomers with `<delay/>` (XEP-0045 §7.2.13-14).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::util::parse_stamp;
use crate::xml::{Element, Stanza};

/// One kept message, ready to send (its `from` is `room/nick`, its `<delay/>` added).
#[derive(Debug, Clone)]
struct Entry {
    stanza: Stanza,
    at: SystemTime,
}

/// The kept messages, oldest first.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
}

/// What a joining client asked for in `<history/>` (all absent: the room's default).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRequest {
    /// `maxstanzas`.
    pub max_stanzas: Option<usize>,
    /// `maxchars` (counted over the whole stanza as sent).
    pub max_chars: Option<usize>,
    /// `seconds`.
    pub seconds: Option<u64>,
    /// `since`.
    pub since: Option<SystemTime>,
}

impl HistoryRequest {
    /// Reads `<history/>` from a join's `<x xmlns='…muc'/>`; malformed attributes are ignored.
    pub fn from_x(x: Option<&Element>) -> HistoryRequest {
        let Some(h) = x.and_then(|x| x.get_child("history", super::types::NS_MUC)) else {
            return HistoryRequest::default();
        };
        HistoryRequest {
            max_stanzas: h.attr("maxstanzas").and_then(|v| v.parse().ok()),
            max_chars: h.attr("maxchars").and_then(|v| v.parse().ok()),
            seconds: h.attr("seconds").and_then(|v| v.parse().ok()),
            since: h.attr("since").and_then(parse_stamp),
        }
    }
}

impl History {
    /// Keeps `stanza`, dropping the oldest past `cap`.
    pub fn push(&mut self, stanza: Stanza, at: SystemTime, cap: usize) {
        if cap == 0 {
            return;
        }
        self.entries.push_back(Entry { stanza, at });
        self.truncate(cap);
    }

    /// Appends `child` (serialized) to the newest message.
    pub fn stamp_newest(&mut self, child: &[u8]) {
        if let Some(e) = self.entries.back_mut() {
            e.stanza.append_child(child);
        }
    }

    /// Drops the oldest messages past `cap`.
    pub fn truncate(&mut self, cap: usize) {
        while self.entries.len() > cap {
            self.entries.pop_front();
        }
    }

    /// The messages `req` selects at `now`, oldest first.
    pub fn select(&self, req: &HistoryRequest, now: SystemTime) -> Vec<&Stanza> {
        let oldest = req
            .seconds
            .and_then(|s| now.checked_sub(Duration::from_secs(s)));
        let mut chars = 0usize;
        let mut out = Vec::new();
        for e in self.entries.iter().rev() {
            if req.max_stanzas.is_some_and(|m| out.len() >= m) {
                break;
            }
            if oldest.is_some_and(|o| e.at < o) || req.since.is_some_and(|s| e.at <= s) {
                break;
            }
            chars += e.stanza.bytes().len();
            if req.max_chars.is_some_and(|m| chars > m) {
                break;
            }
            out.push(&e.stanza);
        }
        out.reverse();
        out
    }
}
