//! Avatars in their two shapes, sans-IO (XEP-0398): the vCard `<PHOTO/>` of vcard-temp
//! (XEP-0054/0153) and the PEP nodes `urn:xmpp:avatar:data` / `urn:xmpp:avatar:metadata`
//! (XEP-0084), with the XEP-0153 presence hash `<x xmlns='vcard-temp:x:update'/>`.

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::xml::{Element, Node};

/// The vcard-temp namespace.
pub const NS_VCARD: &str = crate::xmpp::ns::VCARD;
/// XEP-0084's data node and namespace.
pub const NS_DATA: &str = "urn:xmpp:avatar:data";
/// XEP-0084's metadata node and namespace.
pub const NS_METADATA: &str = "urn:xmpp:avatar:metadata";
/// XEP-0153's presence element namespace.
pub const NS_UPDATE: &str = "vcard-temp:x:update";

/// An image: its MIME type and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// The MIME type (`image/png` when the vCard names none).
    pub mime: String,
    /// The image.
    pub bytes: Vec<u8>,
}

impl Photo {
    /// The XEP-0084 id and XEP-0153 hash: the SHA-1 of the bytes, in lowercase hex.
    pub fn id(&self) -> String {
        sha1_hex(&self.bytes)
    }
}

/// Lowercase hex SHA-1.
pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Base64 as vCards and XEP-0084 carry it: line breaks and other white space are allowed.
fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let clean: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The embedded photo of a `<vCard xmlns='vcard-temp'/>`; `None` without one, for an external
/// one (`EXTVAL`), or when the data is not base64.
pub fn vcard_photo(vcard: &Element) -> Option<Photo> {
    let photo = vcard.get_child("PHOTO", NS_VCARD)?;
    let bin = photo.get_child("BINVAL", NS_VCARD)?;
    let bytes = decode_b64(&bin.text())?;
    if bytes.is_empty() {
        return None;
    }
    let mime = photo
        .get_child("TYPE", NS_VCARD)
        .map(|t| t.text().trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".to_owned());
    Some(Photo { mime, bytes })
}

/// `vcard` with its `<PHOTO/>` replaced by `photo`, or removed when `None`; other fields as they were.
pub fn with_vcard_photo(vcard: &Element, photo: Option<&Photo>) -> Element {
    let mut out = vcard.clone();
    out.children
        .retain(|n| !matches!(n, Node::Element(e) if e.name == "PHOTO" && e.ns == NS_VCARD));
    if let Some(p) = photo {
        out = out.with_child(
            Element::new("PHOTO", NS_VCARD)
                .with_child(Element::new("TYPE", NS_VCARD).with_text(&p.mime))
                .with_child(Element::new("BINVAL", NS_VCARD).with_text(&encode_b64(&p.bytes))),
        );
    }
    out
}

/// The payload of the `urn:xmpp:avatar:data` item for `photo` (its id is [`Photo::id`]).
pub fn data_payload(photo: &Photo) -> Element {
    Element::new("data", NS_DATA).with_text(&encode_b64(&photo.bytes))
}

/// The bytes of an `urn:xmpp:avatar:data` payload.
pub fn data_bytes(data: &Element) -> Option<Vec<u8>> {
    if data.name != "data" || data.ns != NS_DATA {
        return None;
    }
    decode_b64(&data.text())
}

/// The payload of the `urn:xmpp:avatar:metadata` item for `photo`, or the empty `<metadata/>`
/// that XEP-0084 §4.6 publishes when the avatar is removed.
pub fn metadata_payload(photo: Option<&Photo>) -> Element {
    let m = Element::new("metadata", NS_METADATA);
    match photo {
        None => m,
        Some(p) => m.with_child(
            Element::new("info", NS_METADATA)
                .with_attr("bytes", p.bytes.len().to_string())
                .with_attr("id", p.id())
                .with_attr("type", p.mime.as_str()),
        ),
    }
}

/// What a published metadata item says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// The avatar was removed (`<metadata/>` without `<info/>`).
    Disabled,
    /// The avatar stored in the data node under `id`, of MIME type `mime` (XEP-0398 §3.1: the
    /// first `<info/>` that does not point to an external URL).
    Stored {
        /// The data item's id (SHA-1 of the image).
        id: String,
        /// Its MIME type.
        mime: String,
    },
    /// Only external images (nothing to put in a vCard).
    External,
}

/// Reads an `urn:xmpp:avatar:metadata` payload; `None` when it is something else.
pub fn metadata(payload: &Element) -> Option<Metadata> {
    if payload.name != "metadata" || payload.ns != NS_METADATA {
        return None;
    }
    let infos: Vec<&Element> = payload
        .child_elements()
        .filter(|e| e.name == "info" && e.ns == NS_METADATA)
        .collect();
    if infos.is_empty() {
        return Some(Metadata::Disabled);
    }
    Some(
        infos
            .iter()
            .find(|i| i.attr("url").is_none())
            .and_then(|i| {
                Some(Metadata::Stored {
                    id: i.attr("id")?.to_owned(),
                    mime: i.attr("type").unwrap_or("image/png").to_owned(),
                })
            })
            .unwrap_or(Metadata::External),
    )
}

/// What the server does with the XEP-0153 element of an available presence (XEP-0398 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceHash {
    /// The client wrote `<photo/>` empty ("not ready yet") or its own hash: left alone.
    Keep,
    /// No `<x/>`, or an `<x/>` without `<photo/>`: the server writes the hash it knows.
    Inject,
}

/// How `presence` carries the avatar hash.
pub fn presence_hash(presence: &Element) -> PresenceHash {
    match presence.get_child("x", NS_UPDATE) {
        Some(x) if x.get_child("photo", NS_UPDATE).is_some() => PresenceHash::Keep,
        _ => PresenceHash::Inject,
    }
}

/// `presence` with `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` in place of any
/// `<x/>` it had (`hash` empty: no avatar, XEP-0153 §4.3).
pub fn with_presence_hash(presence: &Element, hash: &str) -> Element {
    let mut out = presence.clone();
    out.children
        .retain(|n| !matches!(n, Node::Element(e) if e.name == "x" && e.ns == NS_UPDATE));
    let photo = Element::new("photo", NS_UPDATE);
    let photo = if hash.is_empty() {
        photo
    } else {
        photo.with_text(hash)
    };
    out.with_child(Element::new("x", NS_UPDATE).with_child(photo))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::xml::test_element as parse;

    #[test]
    fn vcard_photo_to_pep_and_back() {
        let v = parse(
            "<vCard xmlns='vcard-temp'><FN>Al</FN><PHOTO><TYPE>image/jpeg</TYPE>\
             <BINVAL>aGVs\nbG8=</BINVAL></PHOTO></vCard>",
        );
        let p = vcard_photo(&v).expect("embedded photo");
        assert_eq!(p.bytes, b"hello");
        assert_eq!(p.mime, "image/jpeg");
        // sha1("hello")
        assert_eq!(p.id(), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(
            data_bytes(&data_payload(&p)).as_deref(),
            Some(&b"hello"[..])
        );
        let m = metadata(&metadata_payload(Some(&p))).expect("metadata");
        assert_eq!(
            m,
            Metadata::Stored {
                id: p.id(),
                mime: "image/jpeg".into()
            }
        );
        let stripped = with_vcard_photo(&v, None);
        assert!(vcard_photo(&stripped).is_none());
        assert!(stripped.get_child("FN", NS_VCARD).is_some());
        let back = with_vcard_photo(&stripped, Some(&p));
        assert_eq!(vcard_photo(&back), Some(p));
    }

    #[test]
    fn metadata_kinds_and_bad_photos() {
        assert_eq!(
            metadata(&parse("<metadata xmlns='urn:xmpp:avatar:metadata'/>")),
            Some(Metadata::Disabled)
        );
        let ext = parse(
            "<metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info id='x' type='image/png' bytes='1' url='https://e.example/a.png'/></metadata>",
        );
        assert_eq!(metadata(&ext), Some(Metadata::External));
        assert_eq!(
            metadata(&parse("<data xmlns='urn:xmpp:avatar:data'/>")),
            None
        );
        let bad = parse("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>!!!</BINVAL></PHOTO></vCard>");
        assert!(vcard_photo(&bad).is_none());
        let ext = parse("<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>u</EXTVAL></PHOTO></vCard>");
        assert!(vcard_photo(&ext).is_none());
    }

    #[test]
    fn presence_hash_rules() {
        let bare = parse("<presence xmlns='jabber:client'/>");
        assert_eq!(presence_hash(&bare), PresenceHash::Inject);
        let empty_x =
            parse("<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'/></presence>");
        assert_eq!(presence_hash(&empty_x), PresenceHash::Inject);
        let not_ready = parse(
            "<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo/></x></presence>",
        );
        assert_eq!(presence_hash(&not_ready), PresenceHash::Keep);
        let out = with_presence_hash(&empty_x, "abc");
        let x = out.get_child("x", NS_UPDATE).expect("x written");
        assert_eq!(
            x.get_child("photo", NS_UPDATE).map(|p| p.text()),
            Some("abc".into())
        );
        assert_eq!(out.child_elements().count(), 1, "the old <x/> is replaced");
    }
}
