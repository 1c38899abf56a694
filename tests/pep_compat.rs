//! What clients build on PEP, over real sockets at 1 and 2 shards: bookmarks kept in step between
//! XEP-0048 private storage and the XEP-0402 / XEP-0411 PEP nodes, avatars between vCards and
//! XEP-0084 (XEP-0398), with the avatar hash stamped on the user's presence.

mod common;

use std::time::Duration;

use common::{Client, Server};
use petrel::xml::Stanza;

const PS: &str = "http://jabber.org/protocol/pubsub";

fn start(shards: usize) -> Server {
    Server::start_with(
        shards,
        &["alice", "bob"],
        "",
        "[modules.roster]\n[modules.presence]\n[modules.private]\n[modules.vcard]\n[modules.pep]\n[modules.avatar]\n[modules.bookmarks]\n",
    )
}

fn text(s: &Stanza) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

fn iq(c: &mut Client, id: &str, xml: &str) -> Stanza {
    c.send(xml);
    c.expect(id, |s| s.id().as_deref() == Some(id) && s.name() == "iq")
}

fn ok(r: &Stanza) {
    assert_eq!(r.type_().as_deref(), Some("result"), "{}", text(r));
}

/// Asks with `ask` (an IQ whose id is `id`) until the answer satisfies `done`: the mirrors are
/// written by store jobs after the request that caused them was answered. Gives up after 100 tries.
fn eventually(c: &mut Client, id: &str, ask: &str, done: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = text(&iq(c, id, ask));
        if done(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    panic!("never satisfied; last answer: {last}");
}

fn items_query(id: &str, node: &str) -> String {
    format!("<iq type='get' id='{id}'><pubsub xmlns='{PS}'><items node='{node}'/></pubsub></iq>")
}

fn private_query(id: &str) -> String {
    format!("<iq type='get' id='{id}'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>")
}

#[test]
fn bookmarks_follow_between_private_storage_and_pep() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut old = server.login("alice", "old", None);
        let mut new = server.login("alice", "new", None);
        // A XEP-0411 client created the PEP node with its own (XEP-0223) options: the server's
        // mirror must still land in it.
        ok(&iq(
            &mut new,
            "c1",
            &format!("<iq type='set' id='c1'><pubsub xmlns='{PS}'><publish node='storage:bookmarks'>\
             <item id='current'><storage xmlns='storage:bookmarks'/></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#persist_items'><value>true</value></field>\
             <field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub></iq>"),
        ));
        // A XEP-0048 client stores two rooms and a web bookmark in private storage.
        ok(&iq(
            &mut old,
            "s1",
            "<iq type='set' id='s1'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
             <url name='site' url='https://example.org/'/>\
             <conference jid='council@conference.localhost' name='Council' autojoin='true'><nick>al</nick></conference>\
             <conference jid='tea@conference.localhost' name='Tea'/></storage></query></iq>",
        ));
        // A XEP-0402 client sees both rooms as items.
        let r = eventually(
            &mut new,
            "i1",
            &items_query("i1", "urn:xmpp:bookmarks:1"),
            |t| {
                t.contains("item id='council@conference.localhost'")
                    && t.contains("item id='tea@conference.localhost'")
            },
        );
        assert!(r.contains("<nick>al</nick>"), "{shards}: {r}");
        // And the XEP-0411 node holds the whole storage.
        eventually(
            &mut new,
            "i2",
            &items_query("i2", "storage:bookmarks"),
            |t| t.contains("<item id='current'") && t.contains("council@conference.localhost"),
        );

        // The XEP-0402 client adds a room and removes one: private storage follows, the url stays.
        ok(&iq(
            &mut new,
            "p1",
            &format!("<iq type='set' id='p1'><pubsub xmlns='{PS}'><publish node='urn:xmpp:bookmarks:1'>\
             <item id='chess@conference.localhost'><conference xmlns='urn:xmpp:bookmarks:1' name='Chess' autojoin='false'/></item>\
             </publish><publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#persist_items'><value>true</value></field>\
             <field var='pubsub#max_items'><value>max</value></field>\
             <field var='pubsub#send_last_published_item'><value>never</value></field>\
             <field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub></iq>"),
        ));
        ok(&iq(
            &mut new,
            "r1",
            &format!("<iq type='set' id='r1'><pubsub xmlns='{PS}'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='tea@conference.localhost'/></retract></pubsub></iq>"),
        ));
        let r = eventually(&mut old, "g1", &private_query("g1"), |t| {
            t.contains("chess@conference.localhost") && !t.contains("tea@conference.localhost")
        });
        assert!(r.contains("council@conference.localhost"), "{shards}: {r}");
        assert!(
            r.contains("https://example.org/"),
            "{shards}: the url is kept: {r}"
        );
        // So does the XEP-0411 item (XEP-0048 allows `<url/>`s beside the rooms).
        let r = eventually(
            &mut new,
            "i3",
            &items_query("i3", "storage:bookmarks"),
            |t| t.contains("chess@conference.localhost") && !t.contains("tea@conference.localhost"),
        );
        assert!(
            r.contains("https://example.org/"),
            "{shards}: the url is kept: {r}"
        );

        // A XEP-0411 client publishes the whole storage, with another url: private storage gets
        // it as published.
        ok(&iq(
            &mut new,
            "c2",
            &format!("<iq type='set' id='c2'><pubsub xmlns='{PS}'><publish node='storage:bookmarks'>\
             <item id='current'><storage xmlns='storage:bookmarks'>\
             <conference jid='council@conference.localhost' name='Council' autojoin='true'/>\
             <url name='news' url='https://example.net/'/></storage></item></publish></pubsub></iq>"),
        ));
        let r = eventually(&mut old, "g2", &private_query("g2"), |t| {
            t.contains("https://example.net/") && !t.contains("chess@conference.localhost")
        });
        assert!(!r.contains("https://example.org/"), "{shards}: {r}");
        assert!(r.contains("council@conference.localhost"), "{shards}: {r}");

        // Another user cannot read the bookmarks (whitelist).
        let mut bob = server.login("bob", "b", None);
        let r = iq(
            &mut bob,
            "b1",
            &format!("<iq type='get' id='b1' to='alice@localhost'><pubsub xmlns='{PS}'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>"),
        );
        assert_eq!(
            r.type_().as_deref(),
            Some("error"),
            "{shards}: {}",
            text(&r)
        );

        // The account advertises both conversions.
        let r = text(&iq(
            &mut old,
            "d1",
            "<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        ));
        for f in [
            "urn:xmpp:bookmarks:1#compat",
            "urn:xmpp:bookmarks-conversion:0",
            "urn:xmpp:pep-vcard-conversion:0",
        ] {
            assert!(r.contains(f), "{shards}: {f} missing: {r}");
        }
    }
}

/// sha1 of `bytes` in hex.
/// Sets `img` as the vCard photo of `c`'s account and waits until the server mirrored it into the
/// PEP metadata node.
fn set_photo(c: &mut Client, img: &[u8]) {
    ok(&iq(
        c,
        "v1",
        &format!("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>", b64(img)),
    ));
    let id = sha1_hex(img);
    eventually(
        c,
        "m1",
        &items_query("m1", "urn:xmpp:avatar:metadata"),
        |t| t.contains(&format!("id='{id}'")),
    );
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn avatars_follow_between_vcard_and_pep_and_stamp_presence() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut a = server.login("alice", "a", None);
        let mut b = server.login("alice", "b", None);
        // Without a PEP avatar the server leaves the client's presence alone.
        a.send("<presence/>");
        let p = a.expect("own presence", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/a")
        });
        assert!(
            !text(&p).contains("vcard-temp:x:update"),
            "{shards}: {}",
            text(&p)
        );
        // A vCard client sets a photo: PEP gets the data and the metadata.
        let img1 = b"first image bytes";
        let id1 = sha1_hex(img1);
        ok(&iq(
            &mut a,
            "v1",
            &format!("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>", b64(img1)),
        ));
        eventually(
            &mut b,
            "m1",
            &items_query("m1", "urn:xmpp:avatar:metadata"),
            |t| t.contains(&format!("id='{id1}'")) && t.contains("type='image/png'"),
        );
        eventually(
            &mut b,
            "d1",
            &items_query("d1", "urn:xmpp:avatar:data"),
            |t| t.contains(&b64(img1)),
        );

        // A XEP-0084 client publishes a new avatar: the vCard follows, other fields kept.
        let img2 = b"second image, a jpeg";
        let id2 = sha1_hex(img2);
        ok(&iq(
            &mut b,
            "p1",
            &format!("<iq type='set' id='p1'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:data'><item id='{id2}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></publish></pubsub></iq>", b64(img2)),
        ));
        ok(&iq(
            &mut b,
            "p2",
            &format!("<iq type='set' id='p2'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:metadata'><item id='{id2}'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id2}' bytes='{}' type='image/jpeg'/></metadata></item></publish></pubsub></iq>", img2.len()),
        ));
        let vcard = "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>";
        let r = eventually(&mut a, "g1", vcard, |t| t.contains(&b64(img2)));
        assert!(
            r.contains("image/jpeg") && r.contains("<FN>Alice</FN>"),
            "{shards}: {r}"
        );

        // The user's presence carries the hash of the avatar (XEP-0398 §4)...
        a.send("<presence/>");
        let p = a.expect("own presence", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/a")
        });
        assert!(
            text(&p).contains(&format!("<photo>{id2}</photo>")),
            "{shards}: {}",
            text(&p)
        );
        // ...unless the client wrote an empty <photo/> (not ready yet).
        b.send("<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>");
        let p = b.expect("own presence", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/b")
        });
        assert!(text(&p).contains("<photo/>"), "{shards}: {}", text(&p));

        // Metadata naming data that does not hash to its id leaves the vCard alone.
        ok(&iq(
            &mut b,
            "p3",
            &format!("<iq type='set' id='p3'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:data'><item id='{id1}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></publish></pubsub></iq>", b64(b"not the first image")),
        ));
        ok(&iq(
            &mut b,
            "p4",
            &format!("<iq type='set' id='p4'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:metadata'><item id='{id1}'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id1}' bytes='3' type='image/png'/></metadata></item></publish></pubsub></iq>"),
        ));
        // An empty metadata (avatar disabled) then removes the photo: seen after the bad one.
        ok(&iq(
            &mut b,
            "p5",
            &format!("<iq type='set' id='p5'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:metadata'><item id='off'><metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub></iq>"),
        ));
        let r = eventually(&mut a, "g2", &vcard.replace("g1", "g2"), |t| {
            !t.contains("<PHOTO")
        });
        assert!(r.contains("<FN>Alice</FN>"), "{shards}: {r}");
    }
}

/// XEP-0398 §7: an avatar published for contacts only (`presence`, PEP's default) is not copied
/// to the vCard, which anyone may read: a stranger gets no photo there. Published `open`, it is.
#[test]
fn only_an_open_avatar_goes_to_the_vcard() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut a = server.login("alice", "a", None);
        let mut b = server.login("bob", "b", None);
        let publish = |c: &mut Client, tag: &str, img: &[u8], open: bool| {
            let id = sha1_hex(img);
            let options = if open {
                "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' \
                 type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value>\
                 </field><field var='pubsub#access_model'><value>open</value></field></x>\
                 </publish-options>"
            } else {
                ""
            };
            ok(&iq(
                c,
                &format!("{tag}d"),
                &format!("<iq type='set' id='{tag}d'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:data'><item id='{id}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></publish>{options}</pubsub></iq>", b64(img)),
            ));
            ok(&iq(
                c,
                &format!("{tag}m"),
                &format!("<iq type='set' id='{tag}m'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:metadata'><item id='{id}'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id}' bytes='{}' type='image/png'/></metadata></item></publish>{options}</pubsub></iq>", img.len()),
            ));
        };
        let private = b"for my contacts only";
        publish(&mut a, "c", private, false);
        // The metadata's change reached the home shard and was handled before this vCard read.
        let own = eventually(
            &mut a,
            "own",
            &items_query("own", "urn:xmpp:avatar:metadata"),
            |t| t.contains(&sha1_hex(private)),
        );
        assert!(own.contains("image/png"), "{shards}: {own}");
        let vcard = |id: &str, of: &str| {
            format!("<iq type='get' id='{id}' to='{of}@localhost'><vCard xmlns='vcard-temp'/></iq>")
        };
        // Bob is no contact of alice's.
        let r = iq(&mut b, "v1", &vcard("v1", "alice"));
        assert!(!text(&r).contains(&b64(private)), "{shards}: {}", text(&r));
        assert!(!text(&r).contains("<PHOTO"), "{shards}: {}", text(&r));
        let public = b"for everyone";
        publish(&mut b, "o", public, true);
        eventually(&mut a, "v2", &vcard("v2", "bob"), |t| {
            t.contains(&b64(public))
        });
    }
}

/// XEP-0398 §4 at the first login after a restart: the initial presence can reach the home shard
/// before the user's PEP state is in memory. It went out without the hash, and so did every probe
/// answer after it. A stamped broadcast now follows as soon as the state is in.
#[test]
fn the_first_presence_after_a_restart_gets_the_hash() {
    for shards in [1, 2] {
        let mut server = start(shards);
        let img = b"avatar before the restart";
        let photo = format!("<photo>{}</photo>", sha1_hex(img));
        {
            let mut alice = server.login("alice", "a", Some(0));
            let mut bob = server.login("bob", "b", Some(0));
            common::subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
            set_photo(&mut alice, img);
        }
        for round in 0..4 {
            server.stop();
            server.spawn(shards);
            let mut bob = server.login("bob", "b", Some(0));
            // Initial presence in the same write as the bind's answer is read: as early as a
            // client can send it.
            let alice = server.login("alice", &format!("r{round}"), Some(0));
            let from = format!("alice@localhost/r{round}");
            bob.expect("alice's presence with the hash", |s| {
                s.name() == "presence"
                    && s.from().as_deref() == Some(from.as_str())
                    && text(s).contains(&photo)
            });
            // What answers probes was stamped too.
            let mut bob2 = server.login("bob", &format!("p{round}"), Some(0));
            let p = bob2.expect("the probe's answer", |s| {
                s.name() == "presence" && s.from().as_deref() == Some(from.as_str())
            });
            assert!(text(&p).contains(&photo), "{shards}/{round}: {}", text(&p));
            drop(alice);
        }
    }
}

#[test]
fn the_avatar_hash_is_in_directed_presence_and_probe_answers_too() {
    // XEP-0398 §4: "every available presence", "directed presences such as MUC joins". Only the
    // broadcast had it: a directed presence and the presence a contact's login probe got back
    // did not.
    for shards in [1, 2] {
        let server = start(shards);
        let mut alice = server.login("alice", "a", Some(0));
        let mut bob = server.login("bob", "b", Some(0));
        common::subscribe_one_way(&mut bob, "bob", &mut alice, "alice");
        let img = b"an avatar";
        let id = sha1_hex(img);
        set_photo(&mut alice, img);
        let photo = format!("<photo>{id}</photo>");
        alice.send("<presence/>");
        let own = alice.expect("own presence", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/a")
        });
        assert!(text(&own).contains(&photo), "{shards}: {}", text(&own));

        alice.send("<presence to='bob@localhost/b'><status>directed</status></presence>");
        let p = bob.expect("directed presence", |s| {
            s.name() == "presence" && text(s).contains("directed")
        });
        assert!(text(&p).contains(&photo), "{shards}: {}", text(&p));

        // A session that sent no broadcast yet (a client joining its rooms first): its directed
        // presence carries the hash it learnt at its bind.
        let mut quiet = server.login("alice", "q", None);
        quiet.send(
            "<presence to='bob@localhost/b'><status>before any broadcast</status></presence>",
        );
        let p = bob.expect("directed presence", |s| {
            s.name() == "presence" && text(s).contains("before any broadcast")
        });
        assert!(text(&p).contains(&photo), "{shards}: {}", text(&p));

        // bob's new resource probes alice: the answer carries the hash.
        let mut bob2 = server.login("bob", "b2", Some(0));
        let p = bob2.expect("probe answer", |s| {
            s.name() == "presence" && s.from().as_deref() == Some("alice@localhost/a")
        });
        assert!(text(&p).contains(&photo), "{shards}: {}", text(&p));

        // A new avatar published from a client: the next directed presences carry its hash at
        // once, before any broadcast (they carried the old one until the next broadcast).
        let img2 = b"another avatar";
        let id2 = sha1_hex(img2);
        ok(&iq(
            &mut quiet,
            "p1",
            &format!("<iq type='set' id='p1'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:data'><item id='{id2}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item></publish></pubsub></iq>", b64(img2)),
        ));
        ok(&iq(
            &mut quiet,
            "p2",
            &format!("<iq type='set' id='p2'><pubsub xmlns='{PS}'><publish node='urn:xmpp:avatar:metadata'><item id='{id2}'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='{id2}' bytes='{}' type='image/png'/></metadata></item></publish></pubsub></iq>", img2.len()),
        ));
        for (c, status) in [(&mut quiet, "quiet after"), (&mut alice, "alice after")] {
            c.send(&format!(
                "<presence to='bob@localhost/b'><status>{status}</status></presence>"
            ));
            let p = bob.expect("directed presence", |s| {
                s.name() == "presence" && text(s).contains(status)
            });
            assert!(
                text(&p).contains(&format!("<photo>{id2}</photo>")),
                "{shards}: {}",
                text(&p)
            );
        }
        // The same for one set in the vCard (mirrored into PEP by the server).
        let img3 = b"a third avatar";
        let id3 = sha1_hex(img3);
        ok(&iq(
            &mut quiet,
            "v3",
            &format!("<iq type='set' id='v3'><vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>", b64(img3)),
        ));
        quiet.send("<presence to='bob@localhost/b'><status>after the vCard</status></presence>");
        let p = bob.expect("directed presence", |s| {
            s.name() == "presence" && text(s).contains("after the vCard")
        });
        assert!(
            text(&p).contains(&format!("<photo>{id3}</photo>")),
            "{shards}: {}",
            text(&p)
        );
    }
}
