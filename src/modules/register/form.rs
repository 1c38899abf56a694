//! The `jabber:iq:register` payloads (XEP-0077 §3): what a client asks, and the replies.

use crate::xml::escape::escape_attr_into;
use crate::xml::Element;
use crate::xml::StanzaType;
use crate::xmpp::StanzaErrorCondition;

/// `jabber:iq:register`.
pub const NS: &str = crate::c2s::NS_REGISTER;

/// A registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `type='get'`: which fields to fill in.
    Form,
    /// `<remove/>`: cancel the registration (delete the account).
    Remove,
    /// `<username/>` and `<password/>`: register, or change the password.
    Set {
        /// The username as sent.
        username: String,
        /// The password as sent.
        password: String,
    },
}

/// Parses a request; XEP-0077 §3.1 asks for `not-acceptable` when a required field is missing,
/// §3.2 for `bad-request` when `<remove/>` is not the only child (nothing is removed).
pub fn parse(type_: StanzaType, query: &Element) -> Result<Request, StanzaErrorCondition> {
    match type_ {
        StanzaType::Get => Ok(Request::Form),
        StanzaType::Set if query.get_child("remove", NS).is_some() => {
            if query.child_elements().count() == 1 {
                Ok(Request::Remove)
            } else {
                Err(StanzaErrorCondition::BadRequest)
            }
        }
        StanzaType::Set => {
            let field = |name| query.get_child(name, NS).map(|e| e.text());
            match (field("username"), field("password")) {
                (Some(username), Some(password))
                    if !username.is_empty() && !password.is_empty() =>
                {
                    Ok(Request::Set { username, password })
                }
                _ => Err(StanzaErrorCondition::NotAcceptable),
            }
        }
        _ => Err(StanzaErrorCondition::BadRequest),
    }
}

/// The form for a client that is not registered yet.
pub fn blank_form() -> Element {
    Element::new("query", NS)
        .with_child(
            Element::new("instructions", NS)
                .with_text("Choose a username and password to register with this server."),
        )
        .with_child(Element::new("username", NS))
        .with_child(Element::new("password", NS))
}

/// The form for a registered, authenticated client (XEP-0077 §3.2).
pub fn registered_form(username: &str) -> Element {
    Element::new("query", NS)
        .with_child(Element::new("registered", NS))
        .with_child(Element::new("username", NS).with_text(username))
        .with_child(Element::new("password", NS))
}

/// A whole `<iq/>` answer before authentication (no addresses: the stream has none yet).
pub fn iq_bytes(
    id: Option<&str>,
    answer: Result<Option<Element>, StanzaErrorCondition>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match answer {
        Ok(body) => {
            let mut iq = Element::new("iq", crate::xmpp::ns::CLIENT).with_attr("type", "result");
            if let Some(id) = id {
                iq = iq.with_attr("id", id);
            }
            if let Some(body) = body {
                iq = iq.with_child(body);
            }
            iq.write_to(&mut out);
        }
        Err(cond) => {
            out.extend_from_slice(b"<iq type='error'");
            if let Some(id) = id {
                out.extend_from_slice(b" id='");
                escape_attr_into(id, &mut out);
                out.push(b'\'');
            }
            out.push(b'>');
            cond.write_error_element(&mut out);
            out.extend_from_slice(b"</iq>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(children: &[(&str, &str)]) -> Element {
        children
            .iter()
            .fold(Element::new("query", NS), |q, (n, t)| {
                q.with_child(Element::new(*n, NS).with_text(t))
            })
    }

    #[test]
    fn requests() {
        assert_eq!(parse(StanzaType::Get, &q(&[])), Ok(Request::Form));
        assert_eq!(
            parse(StanzaType::Set, &q(&[("remove", "")])),
            Ok(Request::Remove)
        );
        // XEP-0077 §3.2: `<remove/>` with anything else removes nothing.
        assert_eq!(
            parse(
                StanzaType::Set,
                &q(&[("remove", ""), ("username", "a"), ("password", "b")])
            ),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(StanzaType::Set, &q(&[("username", "a"), ("remove", "")])),
            Err(StanzaErrorCondition::BadRequest)
        );
        assert_eq!(
            parse(StanzaType::Set, &q(&[("username", "a"), ("password", "b")])),
            Ok(Request::Set {
                username: "a".into(),
                password: "b".into()
            })
        );
        assert_eq!(
            parse(StanzaType::Set, &q(&[("username", "a")])),
            Err(StanzaErrorCondition::NotAcceptable)
        );
        assert_eq!(
            parse(StanzaType::Set, &q(&[("username", ""), ("password", "b")])),
            Err(StanzaErrorCondition::NotAcceptable)
        );
    }

    #[test]
    fn replies() {
        let ok = String::from_utf8(iq_bytes(Some("a'1"), Ok(None))).unwrap_or_default();
        assert_eq!(ok, "<iq type='result' id='a&apos;1'/>");
        let err = iq_bytes(None, Err(StanzaErrorCondition::Conflict));
        assert_eq!(
            String::from_utf8(err).unwrap_or_default(),
            "<iq type='error'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }
}
