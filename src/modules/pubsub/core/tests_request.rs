//! Unit tests of request parsing.

use super::*;
use crate::jid::Jid;
use crate::xml::{Element, Stanza};
use crate::xmpp::StanzaErrorCondition as C;

fn req(ty: &str, xml: &str) -> Result<Request, PubsubError> {
    let e: Element = Stanza::parse(xml.as_bytes().to_vec())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}: {xml}"));
    Request::parse(crate::xml::StanzaType::parse(Some(ty)), &e)
}

const PS: &str = "http://jabber.org/protocol/pubsub";
const OW: &str = "http://jabber.org/protocol/pubsub#owner";

fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn publish_with_options() {
    let r = req(
        "set",
        &format!(
            "<pubsub xmlns='{PS}'><publish node='urn:n'><item id='current'><p xmlns='urn:p'/></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'/></publish-options></pubsub>"
        ),
    );
    let Ok(Request::Publish {
        node,
        item,
        options,
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(node, "urn:n");
    assert_eq!(item.id.as_deref(), Some("current"));
    assert_eq!(item.payload.map(|p| p.ns), Some("urn:p".to_owned()));
    assert!(options.is_some());
    // No id, no options.
    let r = req("set", &format!("<pubsub xmlns='{PS}'><publish node='n'><item><p xmlns='urn:p'/></item></publish></pubsub>"));
    assert!(matches!(
        r,
        Ok(Request::Publish {
            item: PublishItem { id: None, .. },
            options: None,
            ..
        })
    ));
}

#[test]
fn user_requests() {
    assert_eq!(
        req(
            "get",
            &format!("<pubsub xmlns='{PS}'><items node='n' max_items='2'/></pubsub>")
        ),
        Ok(Request::Items {
            node: "n".into(),
            max: Some(2),
            ids: vec![]
        })
    );
    assert_eq!(
        req("get", &format!("<pubsub xmlns='{PS}'><items node='n'><item id='a'/><item id='b'/></items></pubsub>")),
        Ok(Request::Items { node: "n".into(), max: None, ids: vec!["a".into(), "b".into()] })
    );
    assert_eq!(
        req("set", &format!("<pubsub xmlns='{PS}'><retract node='n' notify='true'><item id='a'/></retract></pubsub>")),
        Ok(Request::Retract { node: "n".into(), ids: vec!["a".into()], notify: true })
    );
    assert_eq!(
        req(
            "set",
            &format!(
                "<pubsub xmlns='{PS}'><subscribe node='n' jid='bob@x/pc'/><options/></pubsub>"
            )
        ),
        Ok(Request::Subscribe {
            node: "n".into(),
            jid: jid("bob@x/pc")
        })
    );
    assert_eq!(
        req(
            "set",
            &format!("<pubsub xmlns='{PS}'><unsubscribe node='n' jid='bob@x' subid='s'/></pubsub>")
        ),
        Ok(Request::Unsubscribe {
            node: "n".into(),
            jid: jid("bob@x"),
            subid: Some("s".into())
        })
    );
    assert_eq!(
        req(
            "set",
            &format!("<pubsub xmlns='{PS}'><create node='n'/><configure/></pubsub>")
        ),
        Ok(Request::Create {
            node: Some("n".into()),
            config: None
        })
    );
    assert_eq!(
        req("set", &format!("<pubsub xmlns='{PS}'><create/></pubsub>")),
        Ok(Request::Create {
            node: None,
            config: None
        })
    );
    assert_eq!(
        req(
            "get",
            &format!("<pubsub xmlns='{PS}'><subscriptions/></pubsub>")
        ),
        Ok(Request::Subscriptions { node: None })
    );
    assert_eq!(
        req(
            "get",
            &format!("<pubsub xmlns='{PS}'><affiliations node='n'/></pubsub>")
        ),
        Ok(Request::Affiliations {
            node: Some("n".into())
        })
    );
    assert_eq!(
        req(
            "set",
            &format!("<pubsub xmlns='{PS}'><options node='n' jid='a@x'/></pubsub>")
        ),
        Ok(Request::Options { node: "n".into() })
    );
}

#[test]
fn owner_requests() {
    assert_eq!(
        req("get", &format!("<pubsub xmlns='{OW}'><default/></pubsub>")),
        Ok(Request::Default)
    );
    assert_eq!(
        req(
            "get",
            &format!("<pubsub xmlns='{OW}'><configure node='n'/></pubsub>")
        ),
        Ok(Request::ConfigureGet { node: "n".into() })
    );
    assert!(matches!(
        req("set", &format!("<pubsub xmlns='{OW}'><configure node='n'><x xmlns='jabber:x:data' type='submit'/></configure></pubsub>")),
        Ok(Request::ConfigureSet { .. })
    ));
    assert_eq!(
        req(
            "set",
            &format!(
                "<pubsub xmlns='{OW}'><delete node='n'><redirect uri='xmpp:x'/></delete></pubsub>"
            )
        ),
        Ok(Request::Delete {
            node: "n".into(),
            redirect: Some("xmpp:x".into())
        })
    );
    assert_eq!(
        req(
            "set",
            &format!("<pubsub xmlns='{OW}'><purge node='n'/></pubsub>")
        ),
        Ok(Request::Purge { node: "n".into() })
    );
    assert_eq!(
        req("set", &format!("<pubsub xmlns='{OW}'><affiliations node='n'><affiliation jid='b@x' affiliation='publisher'/></affiliations></pubsub>")),
        Ok(Request::SetAffiliations { node: "n".into(), changes: vec![(jid("b@x"), Affiliation::Publisher)] })
    );
    assert_eq!(
        req("set", &format!("<pubsub xmlns='{OW}'><subscriptions node='n'><subscription jid='b@x' subscription='none'/></subscriptions></pubsub>")),
        Ok(Request::SetSubscriptions { node: "n".into(), changes: vec![(jid("b@x"), SubState::None)] })
    );
    assert_eq!(
        req(
            "get",
            &format!("<pubsub xmlns='{OW}'><subscriptions node='n'/></pubsub>")
        ),
        Ok(Request::OwnerSubscriptions { node: "n".into() })
    );
}

#[test]
fn malformed_requests() {
    let app = |a| Err(Some(a));
    let bad = |ty: &str, x: String| req(ty, &x).map_err(|e| e.app);
    assert_eq!(
        bad(
            "set",
            format!("<pubsub xmlns='{PS}'><publish node='n'/></pubsub>")
        ),
        app(PubsubAppError::ItemRequired)
    );
    assert_eq!(
        bad(
            "set",
            format!("<pubsub xmlns='{PS}'><publish><item/></publish></pubsub>")
        ),
        app(PubsubAppError::NodeidRequired)
    );
    assert_eq!(
        bad("set", format!("<pubsub xmlns='{PS}'><publish node='n'><item><a xmlns='a'/><b xmlns='b'/></item></publish></pubsub>")),
        app(PubsubAppError::InvalidPayload)
    );
    assert_eq!(
        bad(
            "set",
            format!("<pubsub xmlns='{PS}'><retract node='n'/></pubsub>")
        ),
        app(PubsubAppError::ItemRequired)
    );
    assert_eq!(
        bad(
            "set",
            format!("<pubsub xmlns='{PS}'><subscribe node='n'/></pubsub>")
        ),
        app(PubsubAppError::JidRequired)
    );
    assert_eq!(
        bad(
            "set",
            format!("<pubsub xmlns='{PS}'><subscribe node='n' jid='a@@b'/></pubsub>")
        ),
        app(PubsubAppError::InvalidJid)
    );
    for (ty, x) in [
        (
            "get",
            format!("<pubsub xmlns='{PS}'><publish node='n'><item/></publish></pubsub>"),
        ),
        (
            "set",
            format!("<pubsub xmlns='{PS}'><items node='n'/></pubsub>"),
        ),
        (
            "get",
            format!("<pubsub xmlns='{PS}'><items node='n' max_items='x'/></pubsub>"),
        ),
        ("get", format!("<pubsub xmlns='{PS}'/>")),
        (
            "get",
            format!("<pubsub xmlns='{OW}'><purge node='n'/></pubsub>"),
        ),
        (
            "set",
            format!("<pubsub xmlns='{OW}'><configure node='n'/></pubsub>"),
        ),
        (
            "get",
            "<pubsub xmlns='urn:other'><items node='n'/></pubsub>".to_owned(),
        ),
        ("get", format!("<query xmlns='{PS}'/>")),
    ] {
        assert_eq!(req(ty, &x).map_err(|e| e.cond), Err(C::BadRequest), "{x}");
    }
}

fn req_extras(ty: &str, xml: &str) -> Result<(Request, Extras), PubsubError> {
    let e: Element = Stanza::parse(xml.as_bytes().to_vec())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}: {xml}"));
    Request::parse_with_extras(crate::xml::StanzaType::parse(Some(ty)), &e)
}

/// XEP-0060 §6.4: `<default/>` in the plain namespace asks for the default subscription options,
/// which the core does not have (§6.4.3); the owner's `<default/>` (§8.3) is the node
/// configuration.
#[test]
fn the_plain_default_asks_for_subscription_options_and_is_unsupported() {
    for x in [
        format!("<pubsub xmlns='{PS}'><default/></pubsub>"),
        format!("<pubsub xmlns='{PS}'><default node='n'/></pubsub>"),
    ] {
        let e = req("get", &x).map(|_| ()).unwrap_err();
        assert_eq!(e.cond, C::FeatureNotImplemented, "{x}");
        assert_eq!(
            e.app_element()
                .and_then(|a| a.attr("feature").map(str::to_owned)),
            Some("retrieve-default-sub".to_owned()),
            "{x}"
        );
        assert_eq!(
            e.app,
            Some(PubsubAppError::Unsupported("retrieve-default-sub"))
        );
    }
    assert_eq!(
        req("get", &format!("<pubsub xmlns='{OW}'><default/></pubsub>")),
        Ok(Request::Default)
    );
}

/// §7.1.1: a publish may hold no item; [`Request::parse_with_extras`] says so and leaves the node
/// to decide, [`Request::parse`] refuses it as a persistent node would.
#[test]
fn a_publish_without_item_is_told_apart() {
    let bare = format!("<pubsub xmlns='{PS}'><publish node='n'/></pubsub>");
    let Ok((
        Request::Publish {
            node,
            item,
            options,
        },
        extras,
    )) = req_extras("set", &bare)
    else {
        panic!("{bare}")
    };
    assert_eq!(node, "n");
    assert_eq!(
        item,
        PublishItem {
            id: None,
            payload: None
        }
    );
    assert!(options.is_none());
    assert!(extras.no_item);
    assert_eq!(
        req("set", &bare).map_err(|e| e.app),
        Err(Some(PubsubAppError::ItemRequired))
    );
    // An empty `<item/>` is an item.
    let r = req_extras(
        "set",
        &format!("<pubsub xmlns='{PS}'><publish node='n'><item/></publish></pubsub>"),
    );
    assert_eq!(r.map(|(_, x)| x.no_item), Ok(false));
}

#[test]
fn the_subid_of_an_items_request_is_kept() {
    let r = req_extras(
        "get",
        &format!("<pubsub xmlns='{PS}'><items node='n' subid='s1'/></pubsub>"),
    );
    assert_eq!(
        r,
        Ok((
            Request::Items {
                node: "n".into(),
                max: None,
                ids: vec![]
            },
            Extras {
                no_item: false,
                subid: Some("s1".into())
            }
        ))
    );
    let r = req_extras(
        "get",
        &format!("<pubsub xmlns='{PS}'><items node='n'/></pubsub>"),
    );
    assert_eq!(r.map(|(_, x)| x.subid), Ok(None));
}
