//! The presence subscription state machine of RFC 6121 Appendix A, as pure functions of the
//! (user, contact) state: one table per stanza type and direction.

/// What the user's server knows about one contact: RFC 6121's nine states plus pre-approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SubState {
    /// The user receives the contact's presence ("To"/"Both").
    pub to: bool,
    /// The contact receives the user's presence ("From"/"Both").
    pub from: bool,
    /// The user asked the contact and has no answer yet ("Pending Out", `ask='subscribe'`).
    pub pending_out: bool,
    /// The contact asked the user and has no answer yet ("Pending In"; not shown in the roster).
    pub pending_in: bool,
    /// The user pre-approved a request from the contact (RFC 6121 §3.4, `approved='true'`).
    pub approved: bool,
}

/// The four subscription stanza types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubKind {
    /// `type='subscribe'`.
    Subscribe,
    /// `type='subscribed'`.
    Subscribed,
    /// `type='unsubscribe'`.
    Unsubscribe,
    /// `type='unsubscribed'`.
    Unsubscribed,
}

impl SubKind {
    /// The kind for a presence `type` value, if it is a subscription type.
    pub fn of(ty: crate::xml::StanzaType) -> Option<SubKind> {
        use crate::xml::StanzaType as T;
        Some(match ty {
            T::Subscribe => SubKind::Subscribe,
            T::Subscribed => SubKind::Subscribed,
            T::Unsubscribe => SubKind::Unsubscribe,
            T::Unsubscribed => SubKind::Unsubscribed,
            _ => return None,
        })
    }

    /// The presence `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SubKind::Subscribe => "subscribe",
            SubKind::Subscribed => "subscribed",
            SubKind::Unsubscribe => "unsubscribe",
            SubKind::Unsubscribed => "unsubscribed",
        }
    }
}

/// The outcome of one stanza on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state afterwards (equal to the state before when nothing changes).
    pub state: SubState,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user.
    pub forward: bool,
    /// Inbound subscribe the server answers itself with `subscribed` (already approved or
    /// pre-approved), then sends the user's presence to the contact.
    pub auto_approve: bool,
    /// The contact lost its subscription to the user's presence: it must get `unavailable` from
    /// the user's available resources (RFC 6121 §3.2.2, §3.3.3).
    pub revoke_presence: bool,
}

impl SubState {
    /// The roster `subscription` attribute.
    pub fn subscription(&self) -> &'static str {
        match (self.to, self.from) {
            (false, false) => "none",
            (true, false) => "to",
            (false, true) => "from",
            (true, true) => "both",
        }
    }

    /// Sets `to`/`from` from a stored `subscription` value (unknown values read as "none").
    pub fn with_subscription(mut self, sub: &str) -> SubState {
        self.to = matches!(sub, "to" | "both");
        self.from = matches!(sub, "from" | "both");
        self
    }

    fn unchanged(self) -> Transition {
        Transition {
            state: self,
            forward: false,
            auto_approve: false,
            revoke_presence: false,
        }
    }

    /// RFC 6121 Appendix A.2: the user sends `kind` to the contact.
    pub fn outbound(self, kind: SubKind) -> Transition {
        let mut s = self;
        match kind {
            // A.2.1: always routed (the contact's server may have lost state); Pending Out unless
            // the subscription already exists.
            SubKind::Subscribe => {
                if !s.to {
                    s.pending_out = true;
                }
                Transition {
                    forward: true,
                    ..s.unchanged()
                }
            }
            // A.2.2: always routed.
            SubKind::Unsubscribe => {
                s.to = false;
                s.pending_out = false;
                Transition {
                    forward: true,
                    ..s.unchanged()
                }
            }
            // A.2.3 and §3.4: approve a pending request, else pre-approve (not routed).
            SubKind::Subscribed => {
                if s.pending_in {
                    s.pending_in = false;
                    s.from = true;
                    s.approved = false;
                    Transition {
                        forward: true,
                        ..s.unchanged()
                    }
                } else if !s.from {
                    s.approved = true;
                    s.unchanged()
                } else {
                    s.unchanged()
                }
            }
            // A.2.4: deny a pending request or cancel the contact's subscription; without either,
            // only a pre-approval is withdrawn (§3.4) and nothing is routed.
            SubKind::Unsubscribed => {
                if s.pending_in || s.from {
                    let revoke = s.from;
                    s.pending_in = false;
                    s.from = false;
                    s.approved = false;
                    Transition {
                        forward: true,
                        revoke_presence: revoke,
                        ..s.unchanged()
                    }
                } else {
                    s.approved = false;
                    s.unchanged()
                }
            }
        }
    }

    /// RFC 6121 Appendix A.3: the contact's `kind` reaches the user's server.
    pub fn inbound(self, kind: SubKind) -> Transition {
        let mut s = self;
        match kind {
            // A.3.1 ("no *": the server answers `subscribed` itself) and §3.4 pre-approval.
            SubKind::Subscribe => {
                if s.from {
                    Transition {
                        auto_approve: true,
                        ..s.unchanged()
                    }
                } else if s.pending_in {
                    s.unchanged()
                } else if s.approved {
                    s.approved = false;
                    s.from = true;
                    Transition {
                        auto_approve: true,
                        ..s.unchanged()
                    }
                } else {
                    s.pending_in = true;
                    Transition {
                        forward: true,
                        ..s.unchanged()
                    }
                }
            }
            // A.3.3: only an outstanding request becomes a subscription.
            SubKind::Subscribed => {
                if s.pending_out {
                    s.pending_out = false;
                    s.to = true;
                    Transition {
                        forward: true,
                        ..s.unchanged()
                    }
                } else {
                    s.unchanged()
                }
            }
            // A.3.2.
            SubKind::Unsubscribe => {
                if s.pending_in || s.from {
                    let revoke = s.from;
                    s.pending_in = false;
                    s.from = false;
                    Transition {
                        forward: true,
                        revoke_presence: revoke,
                        ..s.unchanged()
                    }
                } else {
                    s.unchanged()
                }
            }
            // A.3.4.
            SubKind::Unsubscribed => {
                if s.to || s.pending_out {
                    s.to = false;
                    s.pending_out = false;
                    Transition {
                        forward: true,
                        ..s.unchanged()
                    }
                } else {
                    s.unchanged()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubKind::*;

    /// The nine states of Appendix A by their RFC names.
    fn st(name: &str) -> SubState {
        let mut s = SubState::default();
        for part in name.split(" + ") {
            match part {
                "None" => {}
                "To" => s.to = true,
                "From" => s.from = true,
                "Both" => {
                    s.to = true;
                    s.from = true
                }
                "Pending Out" => s.pending_out = true,
                "Pending In" => s.pending_in = true,
                "Pending Out/In" => {
                    s.pending_out = true;
                    s.pending_in = true
                }
                other => panic!("unknown state part {other}"),
            }
        }
        s
    }

    const STATES: [&str; 9] = [
        "None",
        "None + Pending Out",
        "None + Pending In",
        "None + Pending Out/In",
        "To",
        "To + Pending In",
        "From",
        "From + Pending Out",
        "Both",
    ];

    /// Checks one Appendix A table: (state, forwarded?, new state or "" for no change).
    fn table(
        dir: fn(SubState, SubKind) -> Transition,
        kind: SubKind,
        rows: [(&str, bool, &str); 9],
    ) {
        for (i, (from, fwd, to)) in rows.iter().enumerate() {
            assert_eq!(*from, STATES[i], "table rows in RFC order");
            let t = dir(st(from), kind);
            let want = if to.is_empty() { st(from) } else { st(to) };
            assert_eq!(t.state, want, "{kind:?} in {from}");
            assert_eq!(t.forward, *fwd, "{kind:?} in {from}: forward");
        }
    }

    #[test]
    fn outbound_subscribe_a21() {
        table(
            SubState::outbound,
            Subscribe,
            [
                ("None", true, "None + Pending Out"),
                ("None + Pending Out", true, ""),
                ("None + Pending In", true, "None + Pending Out/In"),
                ("None + Pending Out/In", true, ""),
                ("To", true, ""),
                ("To + Pending In", true, ""),
                ("From", true, "From + Pending Out"),
                ("From + Pending Out", true, ""),
                ("Both", true, ""),
            ],
        );
    }

    #[test]
    fn outbound_unsubscribe_a22() {
        table(
            SubState::outbound,
            Unsubscribe,
            [
                ("None", true, ""),
                ("None + Pending Out", true, "None"),
                ("None + Pending In", true, ""),
                ("None + Pending Out/In", true, "None + Pending In"),
                ("To", true, "None"),
                ("To + Pending In", true, "None + Pending In"),
                ("From", true, ""),
                ("From + Pending Out", true, "From"),
                ("Both", true, "From"),
            ],
        );
    }

    #[test]
    fn outbound_subscribed_a23_with_preapproval() {
        // Rows without Pending In are not routed; states without From become pre-approved (§3.4).
        let pre = |s: &str| SubState {
            approved: true,
            ..st(s)
        };
        let rows = [
            ("None", false, Some(pre("None"))),
            ("None + Pending Out", false, Some(pre("None + Pending Out"))),
            ("None + Pending In", true, Some(st("From"))),
            (
                "None + Pending Out/In",
                true,
                Some(st("From + Pending Out")),
            ),
            ("To", false, Some(pre("To"))),
            ("To + Pending In", true, Some(st("Both"))),
            ("From", false, None),
            ("From + Pending Out", false, None),
            ("Both", false, None),
        ];
        for (from, fwd, to) in rows {
            let t = st(from).outbound(Subscribed);
            assert_eq!(t.state, to.unwrap_or(st(from)), "{from}");
            assert_eq!(t.forward, fwd, "{from}");
        }
    }

    #[test]
    fn outbound_unsubscribed_a24() {
        table(
            SubState::outbound,
            Unsubscribed,
            [
                ("None", false, ""),
                ("None + Pending Out", false, ""),
                ("None + Pending In", true, "None"),
                ("None + Pending Out/In", true, "None + Pending Out"),
                ("To", false, ""),
                ("To + Pending In", true, "To"),
                ("From", true, "None"),
                ("From + Pending Out", true, "None + Pending Out"),
                ("Both", true, "To"),
            ],
        );
        assert!(st("From").outbound(Unsubscribed).revoke_presence);
        assert!(
            !st("None + Pending In")
                .outbound(Unsubscribed)
                .revoke_presence
        );
        // Withdrawing a pre-approval: not routed, flag cleared.
        let pre = SubState {
            approved: true,
            ..st("To")
        };
        let t = pre.outbound(Unsubscribed);
        assert_eq!(t.state, st("To"));
        assert!(!t.forward);
    }

    #[test]
    fn inbound_subscribe_a31() {
        table(
            SubState::inbound,
            Subscribe,
            [
                ("None", true, "None + Pending In"),
                ("None + Pending Out", true, "None + Pending Out/In"),
                ("None + Pending In", false, ""),
                ("None + Pending Out/In", false, ""),
                ("To", true, "To + Pending In"),
                ("To + Pending In", false, ""),
                ("From", false, ""),
                ("From + Pending Out", false, ""),
                ("Both", false, ""),
            ],
        );
        for s in ["From", "From + Pending Out", "Both"] {
            assert!(st(s).inbound(Subscribe).auto_approve, "{s}");
        }
        assert!(!st("None").inbound(Subscribe).auto_approve);
    }

    #[test]
    fn inbound_subscribe_with_preapproval() {
        for (from, to) in [
            ("None", "From"),
            ("None + Pending Out", "From + Pending Out"),
            ("To", "Both"),
        ] {
            let pre = SubState {
                approved: true,
                ..st(from)
            };
            let t = pre.inbound(Subscribe);
            assert_eq!(t.state, st(to), "{from}");
            assert!(t.auto_approve && !t.forward, "{from}");
        }
    }

    #[test]
    fn inbound_unsubscribe_a32() {
        table(
            SubState::inbound,
            Unsubscribe,
            [
                ("None", false, ""),
                ("None + Pending Out", false, ""),
                ("None + Pending In", true, "None"),
                ("None + Pending Out/In", true, "None + Pending Out"),
                ("To", false, ""),
                ("To + Pending In", true, "To"),
                ("From", true, "None"),
                ("From + Pending Out", true, "None + Pending Out"),
                ("Both", true, "To"),
            ],
        );
        assert!(st("Both").inbound(Unsubscribe).revoke_presence);
        assert!(!st("To + Pending In").inbound(Unsubscribe).revoke_presence);
    }

    #[test]
    fn inbound_subscribed_a33() {
        table(
            SubState::inbound,
            Subscribed,
            [
                ("None", false, ""),
                ("None + Pending Out", true, "To"),
                ("None + Pending In", false, ""),
                ("None + Pending Out/In", true, "To + Pending In"),
                ("To", false, ""),
                ("To + Pending In", false, ""),
                ("From", false, ""),
                ("From + Pending Out", true, "Both"),
                ("Both", false, ""),
            ],
        );
    }

    #[test]
    fn inbound_unsubscribed_a34() {
        table(
            SubState::inbound,
            Unsubscribed,
            [
                ("None", false, ""),
                ("None + Pending Out", true, "None"),
                ("None + Pending In", false, ""),
                ("None + Pending Out/In", true, "None + Pending In"),
                ("To", true, "None"),
                ("To + Pending In", true, "None + Pending In"),
                ("From", false, ""),
                ("From + Pending Out", true, "From"),
                ("Both", true, "From"),
            ],
        );
    }

    #[test]
    fn subscription_attribute_round_trips() {
        for s in ["none", "to", "from", "both"] {
            assert_eq!(SubState::default().with_subscription(s).subscription(), s);
        }
        for k in [Subscribe, Subscribed, Unsubscribe, Unsubscribed] {
            assert_eq!(
                SubKind::of(crate::xml::StanzaType::parse(Some(k.as_str()))),
                Some(k)
            );
        }
        assert_eq!(SubKind::of(crate::xml::StanzaType::Probe), None);
    }
}
