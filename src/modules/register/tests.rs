//! In-band account removal across shards, without sockets.

use crate::modules::testing::{World, HOST};
use crate::shard::ConnMsg;
use crate::xml::Stanza;

/// XEP-0077 §3.2: the account's other sessions are closed before the answer goes. A session left
/// working until after the requester saw the answer could send as the deleted account, and got
/// what was sent to the name (archived for whoever registered it next).
#[test]
fn other_sessions_are_closed_before_the_removal_is_answered() {
    let mut w = World::new(2, "[modules.register]\n");
    let owner =
        crate::jid::BareJid::parse(&format!("alice@{HOST}")).unwrap_or_else(|e| panic!("{e}"));
    w.store()
        .add_user(&owner, &crate::auth::ScramSecrets::derive("pw", 16))
        .unwrap_or_else(|e| panic!("{e}"));
    let home = crate::shard::home_shard(&owner, 2).index();
    // The requester on the other shard (its answer could leave from there at once); the other
    // session on the home shard.
    let asker = w.connect(1 - home, &format!("alice@{HOST}/a"), None);
    let other = w.connect(home, &format!("alice@{HOST}/b"), None);
    let mut sess = asker.sess;
    let remove = "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";
    let s = Stanza::parse(remove.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e}"));
    crate::c2s::route::user_send(&mut w.cluster.shards[1 - home], &mut sess, s);
    let (mut other_closed, mut answered) = (false, false);
    crate::shard::cluster::Rings::default().run_stepwise(&mut w.cluster, |_| {
        while let Some(msg) = other.mb.pop() {
            other_closed |= matches!(msg, ConnMsg::Close(_));
        }
        while let Some(msg) = asker.mb.pop() {
            let ConnMsg::Deliver(acc) = msg else { continue };
            if acc.stanza.id().as_deref() == Some("rm") {
                assert_eq!(acc.stanza.ty(), crate::xml::StanzaType::Result);
                assert!(
                    other_closed,
                    "the answer came while another session was still open"
                );
                answered = true;
            }
        }
    });
    assert!(answered, "no answer");
}
