//! Unit tests of the node, its configuration form and the notifications.

use super::node::NodeMeta;
use super::*;
use crate::xml::{Element, Stanza};
use crate::xmpp::StanzaErrorCondition as C;

fn el(xml: &str) -> Element {
    Stanza::parse(xml.as_bytes().to_vec())
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}: {xml}"))
}

fn item(id: &str, text: &str) -> Item {
    Item {
        id: id.into(),
        publisher: "alice@x/phone".into(),
        published: 1,
        payload: Some(Element::new("p", "urn:p").with_text(text)),
    }
}

fn xml(e: &Element) -> String {
    let mut out = Vec::new();
    e.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn form(ty: &str, fields: &[(&str, &str)]) -> Element {
    let f: String = fields
        .iter()
        .map(|(v, x)| format!("<field var='{v}'><value>{x}</value></field>"))
        .collect();
    el(&format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>{ty}</value></field>{f}</x>"
    ))
}

fn ids(n: &Node) -> Vec<&str> {
    n.all_items().map(|i| i.id.as_str()).collect()
}

#[test]
fn items_are_bounded_replaced_and_retracted() {
    let limits = Limits::default();
    let config = NodeConfig {
        max_items: MaxItems::Count(2),
        ..NodeConfig::default()
    };
    let mut n = Node::new("n", config, "alice@x");
    assert_eq!(
        n.publish(item("a", "1"), &limits).map(|p| p.evicted),
        Ok(vec![])
    );
    n.publish(item("b", "2"), &limits).ok();
    let p = n.publish(item("c", "3"), &limits);
    assert_eq!(p.map(|p| p.evicted), Ok(vec!["a".to_owned()]));
    assert_eq!(ids(&n), ["b", "c"]);
    // Same id: replaced and becomes the newest.
    n.publish(item("b", "4"), &limits).ok();
    assert_eq!(ids(&n), ["c", "b"]);
    assert_eq!(
        n.last()
            .map(|i| xml(i.payload.as_ref().unwrap_or(&Element::new("x", "y")))),
        Some("<p xmlns='urn:p'>4</p>".to_owned())
    );
    assert_eq!(n.items(Some(1), &[]).len(), 1);
    assert_eq!(n.items(None, &["b".into(), "zz".into()])[0].id, "b");
    assert_eq!(n.retract(&["zz".into()]), Err(PubsubError::not_found()));
    assert_eq!(
        n.retract(&["c".into(), "zz".into()]),
        Ok(vec!["c".to_owned()])
    );
    assert_eq!(ids(&n), ["b"]);
    assert_eq!(n.purge(), vec!["b".to_owned()]);
    assert!(n.last().is_none());
}

#[test]
fn size_and_max_limits() {
    let limits = Limits {
        max_items_per_node: 3,
        max_item_bytes: 30,
        max_nodes_per_owner: 1,
    };
    let mut n = Node::new(
        "n",
        NodeConfig {
            max_items: MaxItems::Max,
            ..NodeConfig::default()
        },
        "a@x",
    );
    let big = item("a", &"x".repeat(40));
    let e = n.publish(big, &limits);
    assert_eq!(
        e,
        Err(PubsubError::app(
            C::NotAcceptable,
            PubsubAppError::PayloadTooBig
        ))
    );
    for i in 0..5 {
        n.publish(item(&i.to_string(), ""), &limits).ok();
    }
    assert_eq!(ids(&n), ["2", "3", "4"]);
    // A smaller max drops the oldest.
    let smaller = n.config().apply(
        &form(ns::NODE_CONFIG, &[("pubsub#max_items", "1")]),
        &limits,
    );
    let dropped = smaller.map(|c| n.set_config(c, &limits));
    assert_eq!(dropped, Ok(vec!["2".to_owned(), "3".to_owned()]));
    // Above the limit: refused.
    assert!(n
        .config()
        .apply(
            &form(ns::NODE_CONFIG, &[("pubsub#max_items", "4")]),
            &limits
        )
        .is_err_and(|e| e.cond == C::NotAcceptable));
    // Notification-only publish to a payload node.
    let mut empty = item("e", "");
    empty.payload = None;
    assert_eq!(
        n.publish(empty, &limits).map_err(|e| e.app),
        Err(Some(PubsubAppError::PayloadRequired))
    );
}

#[test]
fn access_models() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    let stranger = Access::contact(false);
    let contact = Access::contact(true);
    assert_eq!(n.can_read(&stranger), Ok(()));
    n.meta.config.access_model = AccessModel::Presence;
    assert_eq!(
        n.can_read(&stranger),
        Err(PubsubError::app(
            C::NotAuthorized,
            PubsubAppError::PresenceSubscriptionRequired
        ))
    );
    assert_eq!(n.can_read(&contact), Ok(()));
    assert_eq!(n.can_read(&Access::owner()), Ok(()));
    n.meta.config.access_model = AccessModel::Roster;
    n.meta.config.roster_groups_allowed = vec!["friends".into()];
    let friend = Access {
        roster_groups: vec!["friends".into()],
        ..contact.clone()
    };
    assert_eq!(n.can_read(&friend), Ok(()));
    assert_eq!(
        n.can_read(&contact).map_err(|e| e.app),
        Err(Some(PubsubAppError::NotInRosterGroup))
    );
    n.meta.config.access_model = AccessModel::Whitelist;
    assert_eq!(
        n.can_read(&contact),
        Err(PubsubError::app(C::NotAllowed, PubsubAppError::ClosedNode))
    );
    assert_eq!(n.set_affiliation("bob@x", Affiliation::Member), Ok(()));
    let member = Access {
        affiliation: n.affiliation("bob@x"),
        ..contact.clone()
    };
    assert_eq!(n.can_read(&member), Ok(()));
    // Publishing: publishers only by default.
    assert_eq!(n.can_publish(&member, true), Err(PubsubError::forbidden()));
    assert_eq!(n.can_publish(&Access::owner(), false), Ok(()));
    n.meta.config.publish_model = PublishModel::Subscribers;
    assert_eq!(n.can_publish(&member, true), Ok(()));
    // The last owner stays.
    assert_eq!(
        n.set_affiliation("alice@x", Affiliation::None)
            .map_err(|e| e.cond),
        Err(C::NotAcceptable)
    );
}

#[test]
fn subscriptions() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    let s = n.subscribe("bob@x/pc", &Access::contact(false), "s1".into());
    assert_eq!(s.map(|s| s.state), Ok(SubState::Subscribed));
    // Again: the same subscription.
    let again = n.subscribe("bob@x/pc", &Access::contact(false), "s2".into());
    assert_eq!(again.map(|s| s.subid), Ok("s1".to_owned()));
    assert_eq!(n.subscribers().count(), 1);
    assert_eq!(
        n.unsubscribe("bob@x/pc", Some("nope")).map_err(|e| e.app),
        Err(Some(PubsubAppError::InvalidSubid))
    );
    assert_eq!(n.unsubscribe("bob@x/pc", Some("s1")), Ok(()));
    assert_eq!(
        n.unsubscribe("bob@x/pc", None).map_err(|e| e.app),
        Err(Some(PubsubAppError::NotSubscribed))
    );
    n.meta.config.access_model = AccessModel::Authorize;
    let p = n.subscribe("carol@x", &Access::contact(false), "s3".into());
    assert_eq!(p.map(|s| s.state), Ok(SubState::Pending));
    n.set_subscription("carol@x", SubState::Subscribed, String::new());
    assert_eq!(
        n.subscribers()
            .map(|s| s.subid.as_str())
            .collect::<Vec<_>>(),
        ["s3"]
    );
    // Outcasts lose their subscriptions.
    assert_eq!(n.set_affiliation("carol@x", Affiliation::Outcast), Ok(()));
    assert_eq!(n.subscribers().count(), 0);
}

#[test]
fn config_form_round_trip_and_storage() {
    let limits = Limits::default();
    let c = NodeConfig::default();
    let mut submitted = c.form();
    submitted.attrs.retain(|(k, _)| k != "type");
    assert_eq!(c.apply(&submitted, &limits), Ok(c.clone()));
    let changed = c.apply(
        &form(
            ns::NODE_CONFIG,
            &[
                ("pubsub#access_model", "presence"),
                ("pubsub#persist_items", "false"),
                ("pubsub#send_last_published_item", "never"),
                ("pubsub#notification_type", "normal"),
                ("pubsub#title", "T"),
                ("pubsub#unknown_thing", "1"),
            ],
        ),
        &limits,
    );
    let changed = changed.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed.access_model, AccessModel::Presence);
    assert!(!changed.persist_items);
    assert_eq!(changed.send_last_published_item, SendLast::Never);
    assert_eq!(changed.title, "T");
    for bad in [
        ("pubsub#access_model", "everyone"),
        ("pubsub#persist_items", "maybe"),
        ("pubsub#max_items", "-1"),
    ] {
        assert_eq!(
            c.apply(&form(ns::NODE_CONFIG, &[bad]), &limits)
                .map_err(|e| e.cond),
            Err(C::NotAcceptable),
            "{bad:?}"
        );
    }
    assert!(c.apply(&form(ns::PUBLISH_OPTIONS, &[]), &limits).is_err());
    // Stored as JSON, read back the same.
    let meta = NodeMeta {
        config: changed,
        ..NodeMeta::default()
    };
    let json = serde_json::to_string(&meta).unwrap_or_default();
    assert_eq!(serde_json::from_str::<NodeMeta>(&json).ok(), Some(meta));
    assert_eq!(
        serde_json::from_str::<NodeMeta>("{}").ok(),
        Some(NodeMeta::default())
    );
}

#[test]
fn publish_options_preconditions() {
    let limits = Limits::default();
    let pep = NodeConfig {
        access_model: AccessModel::Presence,
        max_items: MaxItems::Max,
        ..NodeConfig::default()
    };
    let po = |f: &[(&str, &str)]| form(ns::PUBLISH_OPTIONS, f);
    assert_eq!(
        pep.check_preconditions(
            &po(&[
                ("pubsub#access_model", "presence"),
                ("pubsub#persist_items", "true")
            ]),
            &limits
        ),
        Ok(())
    );
    let max = limits.max_items_per_node.to_string();
    assert_eq!(
        pep.check_preconditions(&po(&[("pubsub#max_items", &max)]), &limits),
        Ok(())
    );
    for bad in [
        ("pubsub#access_model", "open"),
        ("pubsub#no_such_option", "1"),
        ("pubsub#max_items", "bogus"),
    ] {
        assert_eq!(
            pep.check_preconditions(&po(&[bad]), &limits),
            Err(PubsubError::precondition()),
            "{bad:?}"
        );
    }
    // A new node takes its configuration from the options.
    let created = NodeConfig::from_publish_options(
        &pep,
        &po(&[("pubsub#access_model", "open"), ("pubsub#max_items", "5")]),
        &limits,
    );
    assert_eq!(
        created.map(|c| (c.access_model, c.max_items)),
        Ok((AccessModel::Open, MaxItems::Count(5)))
    );
    assert_eq!(
        NodeConfig::from_publish_options(&pep, &po(&[("pubsub#whatever", "1")]), &limits),
        Err(PubsubError::precondition())
    );
}

#[test]
fn errors_render_with_app_condition() {
    let e = PubsubError::app(C::NotAcceptable, PubsubAppError::PayloadTooBig);
    assert_eq!(
        e.app_element().map(|a| xml(&a)),
        Some("<payload-too-big xmlns='http://jabber.org/protocol/pubsub#errors'/>".to_owned())
    );
    assert_eq!(
        PubsubError::unsupported("persistent-items").app_element().map(|a| xml(&a)),
        Some(
            "<unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='persistent-items'/>"
                .to_owned()
        )
    );
    assert_eq!(PubsubError::forbidden().app_element(), None);
}

#[test]
fn notifications() {
    let c = NodeConfig::default();
    let i = item("i1", "hi");
    assert_eq!(
        xml(&event::items("alice@x", "urn:n", &c, &[&i])),
        "<message from='alice@x' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
         <items node='urn:n'><item id='i1' publisher='alice@x'><p xmlns='urn:p'>hi</p></item></items></event></message>"
    );
    let no_payload = NodeConfig {
        deliver_payloads: false,
        ..c.clone()
    };
    assert!(!xml(&event::items("a@x", "n", &no_payload, &[&i])).contains("urn:p"));
    assert_eq!(
        xml(&event::retract("a@x", "n", &c, &["i1".into()])),
        "<message from='a@x' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>\
         <items node='n'><retract id='i1'/></items></event></message>"
    );
    assert!(
        xml(&event::delete("a@x", "n", &c, Some("xmpp:a@x?;node=m"))).contains("<redirect uri=")
    );
    assert!(xml(&event::purge("a@x", "n", &c)).contains("<purge node='n'/>"));
    assert!(xml(&event::items_result("n", &[&i])).starts_with(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='i1'>"
    ));
}
