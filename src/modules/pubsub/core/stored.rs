//! Items to and from their store rows ([`crate::store::StoredItem`]).

use super::Item;
use crate::store::StoredItem;
use crate::xml::Stanza;

impl Item {
    /// The store row of this item (payload serialized, empty when none).
    pub fn to_stored(&self) -> StoredItem {
        StoredItem {
            id: self.id.clone(),
            publisher: self.publisher.clone(),
            published: self.published,
            // Serialized elements are UTF-8 (they come from parsed UTF-8 XML).
            payload: String::from_utf8(self.payload_bytes()).unwrap_or_default(),
        }
    }

    /// The item of a store row; a payload that no longer parses is dropped (the item stays, as a
    /// notification-only item).
    pub fn from_stored(i: StoredItem) -> Item {
        let payload = (!i.payload.is_empty())
            .then(|| {
                Stanza::parse(i.payload.into_bytes())
                    .and_then(|s| s.tree())
                    .ok()
            })
            .flatten();
        Item {
            id: i.id,
            publisher: i.publisher,
            published: i.published,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Element;

    #[test]
    fn an_item_goes_to_the_store_and_back() {
        let i = Item {
            id: "a".into(),
            publisher: "alice@x/pc".into(),
            published: 7,
            payload: Some(Element::new("p", "urn:p").with_text("hi")),
        };
        assert_eq!(Item::from_stored(i.to_stored()), i);
        let mut none = i.clone();
        none.payload = None;
        assert_eq!(none.to_stored().payload, "");
        assert_eq!(Item::from_stored(none.to_stored()), none);
    }
}
