//! A stanza's `type` attribute as an enum: handlers match on it instead of comparing strings.

/// The `type` of a message, presence or IQ (RFC 6120 §8.2.3, RFC 6121 §4.7.1 and §5.2.2), read
/// once from the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaType {
    /// No `type` attribute: a `normal` message, an available presence (an IQ must have one).
    Absent,
    /// `normal` (message).
    Normal,
    /// `chat` (message).
    Chat,
    /// `groupchat` (message).
    Groupchat,
    /// `headline` (message).
    Headline,
    /// `error` (any kind).
    Error,
    /// `get` (IQ).
    Get,
    /// `set` (IQ).
    Set,
    /// `result` (IQ).
    Result,
    /// `unavailable` (presence).
    Unavailable,
    /// `subscribe` (presence).
    Subscribe,
    /// `subscribed` (presence).
    Subscribed,
    /// `unsubscribe` (presence).
    Unsubscribe,
    /// `unsubscribed` (presence).
    Unsubscribed,
    /// `probe` (presence).
    Probe,
    /// A value no RFC defines.
    Unknown,
}

impl StanzaType {
    /// The type named by the attribute's (unescaped) value, `None` when there is none.
    pub fn parse(value: Option<&str>) -> StanzaType {
        value.map_or(StanzaType::Absent, |v| StanzaType::of_value(v.as_bytes()))
    }

    /// The type named by an unescaped value that is present (`Unknown` for any other value).
    pub fn of_value(v: &[u8]) -> StanzaType {
        use StanzaType::*;
        match v {
            b"normal" => Normal,
            b"chat" => Chat,
            b"groupchat" => Groupchat,
            b"headline" => Headline,
            b"error" => Error,
            b"get" => Get,
            b"set" => Set,
            b"result" => Result,
            b"unavailable" => Unavailable,
            b"subscribe" => Subscribe,
            b"subscribed" => Subscribed,
            b"unsubscribe" => Unsubscribe,
            b"unsubscribed" => Unsubscribed,
            b"probe" => Probe,
            _ => Unknown,
        }
    }

    /// `get` or `set`: an IQ request, which must be answered.
    pub fn is_request(self) -> bool {
        matches!(self, StanzaType::Get | StanzaType::Set)
    }

    /// `result` or `error`: an IQ response (or an error of any kind), never answered with an error.
    pub fn is_response(self) -> bool {
        matches!(self, StanzaType::Result | StanzaType::Error)
    }

    /// A message type the server handles as a one-to-one message (absent, `normal`, `chat`): stored
    /// offline, archived, pushed.
    pub fn is_one_to_one_message(self) -> bool {
        matches!(
            self,
            StanzaType::Absent | StanzaType::Normal | StanzaType::Chat
        )
    }

    /// A presence that announces availability or its end (absent or `unavailable`), not a
    /// subscription request or a probe.
    pub fn is_availability(self) -> bool {
        matches!(self, StanzaType::Absent | StanzaType::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::StanzaType;

    #[test]
    fn every_defined_value_round_trips_and_others_are_unknown() {
        assert_eq!(StanzaType::parse(None), StanzaType::Absent);
        assert_eq!(StanzaType::parse(Some("get")), StanzaType::Get);
        assert_eq!(
            StanzaType::parse(Some("unsubscribed")),
            StanzaType::Unsubscribed
        );
        // Values are case-sensitive (RFC 6120 §8.2.3 lists them in lower case).
        assert_eq!(StanzaType::parse(Some("GET")), StanzaType::Unknown);
        assert_eq!(StanzaType::parse(Some("")), StanzaType::Unknown);
        assert!(StanzaType::Set.is_request() && !StanzaType::Result.is_request());
        assert!(StanzaType::Error.is_response() && !StanzaType::Get.is_response());
        assert!(StanzaType::Absent.is_one_to_one_message());
        assert!(!StanzaType::Groupchat.is_one_to_one_message());
    }
}
