//! The bare relay: the physical baseline an XMPP server is compared against.
//!
//! Same runtime (one glommio executor), same framing (the memchr frame finder),
//! no XML work beyond reading each top-level element's `to` attribute.
//!
//! Protocol: the client sends one line `LOGIN <jid>\n`; the relay answers
//! `OK\n` (or `ERR\n` and closes). After that the client sends top-level XML
//! elements; each is forwarded byte for byte to the connection that logged in
//! with the bare JID in its `to` attribute (resource stripped), or dropped if
//! there is none. A later login with the same JID replaces the earlier route.

use crate::conn::{Conn, Outbox};
use crate::frame::{attr, FrameKind, Framer};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Relay routing table: bare JID to the connection's outbox.
type Routes = Rc<RefCell<ahash::HashMap<Box<[u8]>, Rc<Outbox>>>>;

/// Errors starting the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Could not bind or accept.
    #[error("relay: {0}")]
    Io(#[from] std::io::Error),
    /// glommio refused to start.
    #[error("relay executor: {0}")]
    Executor(String),
}

/// Run the relay on `listen` (blocks until the process is killed), on one
/// executor pinned to `cpu` if given.
pub fn serve(listen: String, cpu: Option<usize>) -> Result<(), RelayError> {
    let placement = cpu.map_or(Placement::Unbound, Placement::Fixed);
    let h = LocalExecutorBuilder::new(placement)
        .name("relay")
        // As deep as petrel's: the same kernel costs on both sides of the comparison.
        .ring_depth(petrel::rt::ring_depth(None, 1))
        .spawn(move || async move {
            // glommio listens with SO_REUSEPORT, which would silently share the port
            // with another relay (splitting users between them): probe exclusively first.
            drop(std::net::TcpListener::bind(listen.as_str())?);
            let listener = TcpListener::bind(listen.as_str()).map_err(std::io::Error::from)?;
            eprintln!("relay listening on {}", listener.local_addr()?);
            let routes: Routes = Rc::default();
            let dropped = Rc::new(Cell::new(0u64));
            glommio::spawn_local(report_drops(dropped.clone())).detach();
            loop {
                let sock = listener.accept().await.map_err(std::io::Error::from)?;
                glommio::spawn_local(connection(sock, routes.clone(), dropped.clone())).detach();
            }
        })
        .map_err(|e| RelayError::Executor(e.to_string()))?;
    let res: Result<(), std::io::Error> = h
        .join()
        .map_err(|_| RelayError::Executor("relay executor panicked".into()))?;
    Ok(res?)
}

/// Parse `LOGIN <jid>` into the bare JID.
pub fn parse_login(line: &[u8]) -> Option<&[u8]> {
    let jid = line.strip_prefix(b"LOGIN ")?;
    let jid = jid.strip_suffix(b"\r").unwrap_or(jid);
    let bare = bare(jid);
    (!bare.is_empty() && !bare.contains(&b' ')).then_some(bare)
}

fn bare(jid: &[u8]) -> &[u8] {
    match memchr::memchr(b'/', jid) {
        Some(i) => &jid[..i],
        None => jid,
    }
}

/// Say on stderr when elements were dropped for lack of a recipient.
async fn report_drops(dropped: Rc<Cell<u64>>) {
    let mut seen = 0;
    loop {
        glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
        if dropped.get() != seen {
            seen = dropped.get();
            eprintln!("relay: {seen} elements dropped so far (recipient not logged in)");
        }
    }
}

async fn connection(sock: TcpStream, routes: Routes, dropped: Rc<Cell<u64>>) {
    // Responses are small and latency matters.
    let _ = sock.set_nodelay(true);
    let conn = Conn::new(sock);
    let (mut rd, wr) = conn.halves();
    let mut framer = Framer::new_in_stream(16 * 1024, 1 << 20);
    let ob = Rc::new(Outbox::default());
    glommio::spawn_local(ob.clone().run_writer(wr)).detach();
    let me: Box<[u8]> = loop {
        if let Some(line) = framer.take_line() {
            match parse_login(framer.slice(line)) {
                Some(j) => break j.into(),
                None => {
                    ob.push(b"ERR\n");
                    ob.close();
                    return;
                }
            }
        }
        match rd.read_into(&mut framer).await {
            Ok(n) if n > 0 => {}
            _ => return ob.close(),
        }
    };
    ob.push(b"OK\n");
    routes.borrow_mut().insert(me.clone(), ob.clone());
    'conn: loop {
        {
            let table = routes.borrow();
            loop {
                match framer.next_frame() {
                    Ok(Some(f)) if f.kind == FrameKind::Element => {
                        let el = framer.bytes(&f);
                        match attr(el, b"to").and_then(|to| table.get(bare(to))) {
                            Some(peer) => peer.push(el),
                            None => dropped.set(dropped.get() + 1),
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'conn,
                }
            }
        }
        match rd.read_into(&mut framer).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let mut table = routes.borrow_mut();
    if table.get(&me).is_some_and(|o| Rc::ptr_eq(o, &ob)) {
        table.remove(&me);
    }
    ob.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_line() {
        assert_eq!(parse_login(b"LOGIN user1@d"), Some(&b"user1@d"[..]));
        assert_eq!(parse_login(b"LOGIN user1@d/res\r"), Some(&b"user1@d"[..]));
        assert_eq!(parse_login(b"LOGIN "), None);
        assert_eq!(parse_login(b"HELLO x"), None);
    }
}
