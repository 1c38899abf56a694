//! Unit tests of the node, its configuration form and the notifications.

use super::node::NodeMeta;
use super::*;
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition as C;

use crate::xml::test_element as el;

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

/// A deleted account loses its grants and subscriptions, never its ban (registering the name
/// again lifted it).
#[test]
fn a_deleted_account_keeps_its_ban() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    assert_eq!(n.set_affiliation("bob@x", Affiliation::Outcast), Ok(()));
    assert_eq!(n.set_affiliation("carol@x", Affiliation::Publisher), Ok(()));
    n.forget_account("bob@x");
    assert!(n.forget_account("carol@x"));
    assert_eq!(n.affiliation("bob@x"), Affiliation::Outcast);
    assert_eq!(n.affiliation("carol@x"), Affiliation::None);
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
    assert_eq!(
        n.set_subscription("carol@x", SubState::Subscribed, String::new()),
        Ok(())
    );
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
    assert!(xml(&event::items_page("n", &[&i], None)).starts_with(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'><item id='i1' publisher='alice@x'>"
    ));
}

#[test]
fn a_malformed_or_foreign_form_is_bad_request_a_bad_value_not_acceptable() {
    let limits = Limits::default();
    let c = NodeConfig::default();
    let cond = |x: &Element| c.apply(x, &limits).map(drop).map_err(|e| e.cond);
    assert_eq!(
        cond(&form(ns::PUBLISH_OPTIONS, &[("pubsub#title", "t")])),
        Err(C::BadRequest)
    );
    assert_eq!(
        cond(&el("<x xmlns='jabber:x:data' type='bogus'/>")),
        Err(C::BadRequest)
    );
    assert_eq!(
        cond(&form(
            ns::NODE_CONFIG,
            &[("pubsub#deliver_payloads", "perhaps")]
        )),
        Err(C::NotAcceptable)
    );
}

#[test]
fn the_owner_lists_subscriptions_and_affiliations() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    assert_eq!(
        n.set_subscription("bob@x/b", SubState::Pending, "s1".into()),
        Ok(())
    );
    let subs = xml(&event::owner_subscriptions(&n));
    assert!(subs.contains("<subscriptions node='n'>"), "{subs}");
    assert!(
        subs.contains("jid='bob@x/b' subscription='pending' subid='s1'"),
        "{subs}"
    );
    let affs = xml(&event::owner_affiliations(&n));
    assert!(
        affs.contains("<affiliation affiliation='owner' jid='alice@x'/>"),
        "{affs}"
    );
}

#[test]
fn subscriptions_are_bounded() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    for i in 0..node::MAX_SUBSCRIPTIONS {
        let s = n.subscribe(&format!("u{i}@x"), &Access::contact(false), i.to_string());
        assert!(s.is_ok());
    }
    let app = |r: Result<(), PubsubError>| r.map_err(|e| e.app);
    let over = n.subscribe("late@x", &Access::contact(false), "l".into());
    assert_eq!(
        over.map(|_| ()).map_err(|e| e.app),
        Err(Some(PubsubAppError::TooManySubscriptions))
    );
    assert_eq!(
        app(n.set_subscription("late@x", SubState::Subscribed, "l".into())),
        Err(Some(PubsubAppError::TooManySubscriptions))
    );
    // An existing one may still change.
    assert_eq!(
        n.set_subscription("u1@x", SubState::Pending, String::new()),
        Ok(())
    );
}

#[test]
fn new_ids_differ() {
    let a = new_id();
    assert_ne!(a, new_id());
    assert!(now_micros() > 1_600_000_000_000_000);
}

#[test]
fn a_published_item_gets_an_id_and_its_publisher() {
    let p = PublishItem {
        id: None,
        payload: None,
    };
    let i = p.into_item("alice@x/pc");
    assert!(!i.id.is_empty());
    assert_eq!(i.publisher, "alice@x/pc");
    let p = PublishItem {
        id: Some("mine".into()),
        payload: None,
    };
    assert_eq!(p.into_item("a@x").id, "mine");
}

#[test]
fn owner_changes_are_all_or_none() {
    let jid = |s: &str| crate::jid::Jid::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    let bad = [
        (jid("bob@x"), Affiliation::Publisher),
        (jid("alice@x"), Affiliation::None),
    ];
    assert!(n.set_affiliations(&bad).is_err());
    assert_eq!(n.affiliation("bob@x"), Affiliation::None);
    assert_eq!(n.set_affiliations(&bad[..1]), Ok(()));
    assert_eq!(n.affiliation("bob@x"), Affiliation::Publisher);
    let mut ids = 0;
    let subs = [(jid("bob@x/pc"), SubState::Subscribed)];
    let next = || {
        ids += 1;
        format!("s{ids}")
    };
    assert_eq!(n.set_subscriptions(&subs, next), Ok(()));
    assert_eq!(
        n.subscription("bob@x/pc").map(|s| s.subid.as_str()),
        Some("s1")
    );
}

/// §6.1.3.7: subscribing again while the subscription waits for the owner is `not-authorized` +
/// `pending-subscription`; an active one is returned again.
#[test]
fn subscribing_again_while_pending_is_refused() {
    let config = NodeConfig {
        access_model: AccessModel::Authorize,
        ..NodeConfig::default()
    };
    let mut n = Node::new("n", config, "alice@x");
    let bob = Access::contact(false);
    let s = n.subscribe("bob@x/b", &bob, "s1".into());
    assert_eq!(s.map(|s| s.state), Ok(SubState::Pending));
    let again = n.subscribe("bob@x/b", &bob, "s2".into());
    let e = again.map(|_| ()).unwrap_err();
    assert_eq!(
        (e.cond, e.app),
        (C::NotAuthorized, Some(PubsubAppError::PendingSubscription))
    );
    assert_eq!(n.meta.subscriptions.len(), 1);
    // Approved: subscribing again returns it.
    assert_eq!(
        n.set_subscription("bob@x/b", SubState::Subscribed, String::new()),
        Ok(())
    );
    let s = n.subscribe("bob@x/b", &Access::owner(), "s3".into());
    assert_eq!(
        s.map(|s| (s.state, s.subid)),
        Ok((SubState::Subscribed, "s1".to_owned()))
    );
}

/// §7.1.3.6: a transient notification-only node takes publishes without item and refuses items
/// (`item-forbidden`); a persistent node wants an item, a payload node a payload.
#[test]
fn the_event_type_decides_whether_a_publish_holds_an_item() {
    let limits = Limits::default();
    let config = |persist_items, deliver_payloads| NodeConfig {
        persist_items,
        deliver_payloads,
        ..NodeConfig::default()
    };
    let app = |r: Result<(), PubsubError>| r.map_err(|e| (e.cond, e.app));
    let bad = |a| Err((C::BadRequest, Some(a)));
    assert_eq!(
        app(config(false, false).check_publish_without_item()),
        Ok(())
    );
    assert_eq!(
        app(config(true, false).check_publish_without_item()),
        bad(PubsubAppError::ItemRequired)
    );
    assert_eq!(
        app(config(true, true).check_publish_without_item()),
        bad(PubsubAppError::ItemRequired)
    );
    assert_eq!(
        app(config(false, true).check_publish_without_item()),
        bad(PubsubAppError::PayloadRequired)
    );
    let mut n = Node::new("n", config(false, false), "alice@x");
    let mut bare = item("a", "");
    bare.payload = None;
    for i in [item("a", "1"), bare.clone()] {
        assert_eq!(
            app(n.publish(i, &limits).map(|_| ())),
            bad(PubsubAppError::ItemForbidden)
        );
    }
    assert_eq!(n.all_items().len(), 0);
    // Persistent or transient, a notification-only node with items still takes them.
    let mut n = Node::new("n", config(true, false), "alice@x");
    assert_eq!(app(n.publish(bare, &limits).map(|_| ())), Ok(()));
}

/// §6.5.9.2: the subid of an items request must name one of the requester's subscriptions.
#[test]
fn an_items_subid_must_be_one_of_the_requesters() {
    let mut n = Node::new("n", NodeConfig::default(), "alice@x");
    let bob = Access::contact(false);
    assert!(n.subscribe("bob@x/b", &bob, "s1".into()).is_ok());
    assert!(n.subscribe("bob@x", &bob, "s2".into()).is_ok());
    assert!(n.subscribe("carol@x", &bob, "s3".into()).is_ok());
    assert_eq!(n.check_subid("bob@x", "s1"), Ok(()));
    assert_eq!(n.check_subid("bob@x", "s2"), Ok(()));
    for (who, subid) in [("bob@x", "bogus"), ("bob@x", "s3"), ("dave@x", "s1")] {
        let e = n.check_subid(who, subid).unwrap_err();
        assert_eq!(
            (e.cond, e.app),
            (C::NotAcceptable, Some(PubsubAppError::InvalidSubid)),
            "{who} {subid}"
        );
    }
}

#[test]
fn an_items_result_is_bounded_in_bytes_and_says_so() {
    let limits = Limits {
        max_item_bytes: 200 * 1024,
        ..Limits::default()
    };
    let config = NodeConfig {
        max_items: MaxItems::Count(10),
        ..NodeConfig::default()
    };
    let mut n = Node::new("n", config, "alice@x");
    let big = "x".repeat(100 * 1024);
    for i in 0..5 {
        n.publish(item(&format!("i{i}"), &big), &limits)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // 256 KiB hold two of them: the newest two, oldest first, and the result set says 5.
    let (page, total) = n.items_bounded(None, &[]);
    let got: Vec<&str> = page.iter().map(|i| i.id.as_str()).collect();
    assert_eq!((got, total), (vec!["i3", "i4"], Some(5)));
    let r = xml(&event::items_page("n", &page, total));
    assert!(
        r.contains("<set xmlns='http://jabber.org/protocol/rsm'><first index='3'>i3</first><last>i4</last><count>5</count></set>"),
        "{r}"
    );
    // Within the bound: everything asked, no result set.
    let (page, total) = n.items_bounded(Some(2), &[]);
    assert_eq!((page.len(), total), (2, None));
    assert!(!xml(&event::items_page("n", &page, total)).contains("rsm"));
    // One item larger than the bound still comes.
    let (page, _) = n.items_bounded(None, &["i0".to_owned()]);
    assert_eq!(page.len(), 1);
}
