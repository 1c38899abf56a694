//! `muc#admin` affiliation changes: bans, members, admins, owners, and their effects.

use super::tests::*;
use super::tests_admin::{admin_get, admin_set, reply, reply_error, room3};
use super::types::NS_MUC_ADMIN;
use super::*;
use crate::xml::Element;

#[test]
fn ban_removes_with_301_and_keeps_out() {
    let mut room = room3();
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='outcast'><reason>bye</reason></item>",
    );
    let p = &sent_to(&out, CAROL)[0];
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(codes(p).contains(&301));
    assert_eq!(item(p).attr("affiliation"), Some("outcast"));
    assert_eq!(room.occupants(), 2);
    assert_eq!(
        only_error(&feed(&mut room, BOB, &join_xml("bob")), BOB),
        "forbidden"
    );
    let out = admin_get(&mut room, ALICE, "<item affiliation='outcast'/>");
    let q = reply(&out, ALICE)
        .get_child("query", NS_MUC_ADMIN)
        .cloned()
        .expect("query");
    let it = q.get_child("item", NS_MUC_ADMIN).expect("item");
    assert_eq!(it.attr("jid"), Some("bob@localhost"));
    assert_eq!(
        it.get_child("reason", NS_MUC_ADMIN)
            .map(Element::text)
            .as_deref(),
        Some("bye")
    );
}

/// A deleted account loses its grants, never its ban: a banned user who deleted the account and
/// registered the name again walked back in.
#[test]
fn a_deleted_account_keeps_its_ban_and_loses_its_grants() {
    let mut room = room3();
    admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='outcast'/><item jid='dave@localhost' affiliation='member'/>",
    );
    for gone in ["bob@localhost", "dave@localhost"] {
        let jid = BareJid::parse(gone).expect("jid");
        room.forget_account(&jid);
    }
    let aff = |room: &Room, j: &str| room.affiliation(&BareJid::parse(j).expect("jid"));
    assert_eq!(aff(&room, "bob@localhost"), Affiliation::Outcast);
    assert_eq!(aff(&room, "dave@localhost"), Affiliation::None);
}

#[test]
fn affiliation_permissions() {
    let mut room = room3();
    // Participants manage nothing.
    assert_eq!(
        reply_error(
            &admin_set(
                &mut room,
                BOB,
                "<item jid='carol@localhost' affiliation='member'/>"
            ),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    assert_eq!(
        reply_error(
            &admin_get(&mut room, BOB, "<item affiliation='member'/>"),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    // An admin may not ban an owner nor make owners or admins.
    admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='admin'/>",
    );
    assert_eq!(
        reply_error(
            &admin_set(
                &mut room,
                BOB,
                "<item jid='alice@localhost' affiliation='outcast'/>"
            ),
            BOB
        )
        .as_deref(),
        Some("not-allowed")
    );
    assert_eq!(
        reply_error(
            &admin_set(
                &mut room,
                BOB,
                "<item jid='carol@localhost' affiliation='owner'/>"
            ),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    assert_eq!(
        reply_error(
            &admin_set(
                &mut room,
                BOB,
                "<item jid='carol@localhost' affiliation='admin'/>"
            ),
            BOB
        )
        .as_deref(),
        Some("forbidden")
    );
    // But bans and members are the admin's.
    assert_eq!(
        reply(
            &admin_set(
                &mut room,
                BOB,
                "<item jid='carol@localhost' affiliation='member'/>"
            ),
            BOB
        )
        .attr("type"),
        Some("result")
    );
    // The last owner cannot go; one bad item refuses the whole request.
    let out = admin_set(&mut room, ALICE, "<item jid='dave@localhost' affiliation='member'/><item jid='alice@localhost' affiliation='admin'/>");
    assert_eq!(reply_error(&out, ALICE).as_deref(), Some("conflict"));
    assert_eq!(
        room.affiliation(&BareJid::parse("dave@localhost").expect("valid")),
        Affiliation::None
    );
    // With a second owner, the first may step down.
    admin_set(
        &mut room,
        ALICE,
        "<item jid='carol@localhost' affiliation='owner'/>",
    );
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='alice@localhost' affiliation='admin'/>",
    );
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    assert_eq!(room.affiliation(&full(ALICE).bare()), Affiliation::Admin);
    // Bad affiliation.
    assert_eq!(
        reply_error(
            &admin_set(
                &mut room,
                CAROL,
                "<item jid='x@localhost' affiliation='king'/>"
            ),
            CAROL
        )
        .as_deref(),
        Some("bad-request")
    );
}

#[test]
fn promotion_to_admin_makes_a_moderator() {
    let mut room = room3();
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='admin'/>",
    );
    let it = item(&sent_to(&out, CAROL)[0]);
    assert_eq!(
        (it.attr("affiliation"), it.attr("role")),
        (Some("admin"), Some("moderator"))
    );
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='none'/>",
    );
    let it = item(&sent_to(&out, CAROL)[0]);
    assert_eq!(
        (it.attr("affiliation"), it.attr("role")),
        (Some("none"), Some("participant"))
    );
}

#[test]
fn losing_membership_of_a_members_only_room_removes_with_321() {
    let mut room = room_with(&[("muc#roomconfig_membersonly", "1")]);
    admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='member'/>",
    );
    feed(&mut room, BOB, &join_xml("bob"));
    let out = admin_get(&mut room, ALICE, "<item affiliation='member'/>");
    let q = reply(&out, ALICE)
        .get_child("query", NS_MUC_ADMIN)
        .cloned()
        .expect("query");
    assert_eq!(
        q.get_child("item", NS_MUC_ADMIN)
            .and_then(|i| i.attr("jid")),
        Some("bob@localhost")
    );
    let out = admin_set(
        &mut room,
        ALICE,
        "<item jid='bob@localhost' affiliation='none'/>",
    );
    let p = &sent_to(&out, BOB)[0];
    assert_eq!(p.attr("type"), Some("unavailable"));
    assert!(codes(p).contains(&321));
    assert_eq!(room.occupants(), 1);
}

#[test]
fn affiliation_by_nick_and_member_list_saved() {
    let mut room = room_with(&[("muc#roomconfig_persistentroom", "1")]);
    feed(&mut room, BOB, &join_xml("bob"));
    let out = admin_set(&mut room, ALICE, "<item nick='bob' affiliation='member'/>");
    assert!(has_out(&out, is_save));
    assert_eq!(room.affiliation(&full(BOB).bare()), Affiliation::Member);
    assert_eq!(
        item(&sent_to(&out, BOB)[0]).attr("affiliation"),
        Some("member")
    );
}

/// A room keeps at most `max_affiliations` (alice, its owner, counts): a change or a members-only
/// invitation that would add one more is refused whole with `policy-violation`; a change that
/// keeps the count goes through.
#[test]
fn affiliations_stop_at_the_limit() {
    let limits = RoomLimits {
        max_affiliations: 3,
        ..RoomLimits::default()
    };
    let mut room = Room::new(
        BareJid::parse(ROOM).expect("valid"),
        full(ALICE).bare(),
        limits,
    );
    feed(&mut room, ALICE, &join_xml("alice"));
    configure(&mut room, ALICE, &[("muc#roomconfig_membersonly", "1")]);
    let member = |j: &str, aff: &str| format!("<item jid='{j}' affiliation='{aff}'/>");
    let both = format!("{}{}", member("x@a", "member"), member("y@a", "outcast"));
    let out = admin_set(&mut room, ALICE, &both);
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    let out = admin_set(&mut room, ALICE, &member("z@a", "member"));
    assert_eq!(
        reply_error(&out, ALICE).as_deref(),
        Some("policy-violation")
    );
    let aff = |room: &Room, j: &str| room.affiliation(&BareJid::parse(j).expect("valid"));
    assert_eq!(aff(&room, "z@a"), Affiliation::None);
    // One out, one in: the count stays at the limit.
    let swap = format!("{}{}", member("x@a", "none"), member("z@a", "member"));
    let out = admin_set(&mut room, ALICE, &swap);
    assert_eq!(reply(&out, ALICE).attr("type"), Some("result"));
    assert_eq!(
        (aff(&room, "x@a"), aff(&room, "z@a")),
        (Affiliation::None, Affiliation::Member)
    );
    // The owner's invitation would make a fourth: refused, and nobody is invited.
    let invite = format!(
        "<message to='{ROOM}'><x xmlns='{}'><invite to='w@a'/></x></message>",
        super::types::NS_MUC_USER
    );
    let out = feed(&mut room, ALICE, &invite);
    assert_eq!(only_error(&out, ALICE), "policy-violation");
    assert!(sent_to(&out, "w@a").is_empty());
    assert_eq!(aff(&room, "w@a"), Affiliation::None);
}
