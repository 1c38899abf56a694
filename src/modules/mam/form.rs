//! The query form (XEP-0313 §4.1, XEP-0004): reading a submitted one into a [`MamFilter`], and the
//! blank form a client asks for (§4.1.5).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{id, ns};
use crate::jid::Jid;
use crate::store::MamFilter;
use crate::xml::Element;

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Not a well-formed MAM form: wrong FORM_TYPE or form type, a bad JID or date, a field given
    /// twice or with several values where one is allowed.
    Malformed,
    /// A field this archive does not know (XEP-0313 §4.1.5: `feature-not-implemented`).
    UnknownField(String),
    /// An archive id that cannot be one of ours (so it is not in the archive: `item-not-found`).
    UnknownId,
}

/// Reads the `<x xmlns='jabber:x:data'/>` child of `query`, if any (none: everything matches).
pub fn parse(query: &Element) -> Result<MamFilter, FormError> {
    let mut forms = query
        .child_elements()
        .filter(|e| e.name == "x" && e.ns == ns::DATA);
    let Some(x) = forms.next() else {
        return Ok(MamFilter::default());
    };
    if forms.next().is_some() || !matches!(x.attr("type"), None | Some("submit")) {
        return Err(FormError::Malformed);
    }
    let mut f = MamFilter::default();
    let mut seen: Vec<&str> = Vec::new();
    for field in x
        .child_elements()
        .filter(|e| e.name == "field" && e.ns == ns::DATA)
    {
        let var = field.attr("var").ok_or(FormError::Malformed)?;
        if seen.contains(&var) {
            return Err(FormError::Malformed);
        }
        seen.push(var);
        let values: Vec<String> = field
            .child_elements()
            .filter(|e| e.name == "value" && e.ns == ns::DATA)
            .map(|v| v.text().trim().to_owned())
            .collect();
        match var {
            "FORM_TYPE" => {
                if single(&values)? != Some(ns::MAM) {
                    return Err(FormError::Malformed);
                }
            }
            "with" => {
                if let Some(v) = single(&values)? {
                    let jid = Jid::parse(v).map_err(|_| FormError::Malformed)?;
                    f.with_bare = Some(jid.bare_str().to_owned());
                    f.with_res = jid.resource().map(str::to_owned);
                }
            }
            "start" => f.start = single(&values)?.map(parse_time).transpose()?,
            "end" => f.end = single(&values)?.map(parse_time).transpose()?,
            "after-id" => f.after_id = single(&values)?.map(archive_id).transpose()?,
            "before-id" => f.before_id = single(&values)?.map(archive_id).transpose()?,
            "ids" => {
                if !values.is_empty() {
                    let mut ids = values
                        .iter()
                        .map(|v| archive_id(v))
                        .collect::<Result<Vec<_>, _>>()?;
                    ids.sort_unstable();
                    ids.dedup();
                    f.ids = Some(ids);
                }
            }
            other => return Err(FormError::UnknownField(other.to_owned())),
        }
    }
    Ok(f)
}

/// The value of a single-valued field: none when the field is empty.
fn single(values: &[String]) -> Result<Option<&str>, FormError> {
    match values {
        [] => Ok(None),
        [v] if v.is_empty() => Ok(None),
        [v] => Ok(Some(v)),
        _ => Err(FormError::Malformed),
    }
}

fn archive_id(s: &str) -> Result<i64, FormError> {
    id::decode(s).ok_or(FormError::UnknownId)
}

/// A XEP-0082 date-time in microseconds since the Unix epoch.
pub fn parse_time(s: &str) -> Result<i64, FormError> {
    let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| FormError::Malformed)?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| FormError::Malformed)
}

/// The blank form (`<iq type='get'><query/></iq>`): every field a query may use.
pub fn blank() -> Element {
    let field = |var: &str, ty: &str| {
        Element::new("field", ns::DATA)
            .with_attr("type", ty)
            .with_attr("var", var)
    };
    let ids = field("ids", "list-multi").with_child(
        // XEP-0122: the list is open to any value (ids are never listed).
        Element::new("validate", "http://jabber.org/protocol/xdata-validate")
            .with_attr("datatype", "xs:string")
            .with_child(Element::new(
                "open",
                "http://jabber.org/protocol/xdata-validate",
            )),
    );
    let x = Element::new("x", ns::DATA)
        .with_attr("type", "form")
        .with_child(
            field("FORM_TYPE", "hidden")
                .with_child(Element::new("value", ns::DATA).with_text(ns::MAM)),
        )
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"))
        .with_child(field("before-id", "text-single"))
        .with_child(field("after-id", "text-single"))
        .with_child(ids);
    Element::new("query", ns::MAM).with_child(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    fn query(fields: &str) -> Element {
        let xml = format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>{fields}</x></query>"
        );
        Stanza::parse(xml.into_bytes())
            .and_then(|s| s.tree())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn field(var: &str, values: &[&str]) -> String {
        let v: String = values
            .iter()
            .map(|v| format!("<value>{v}</value>"))
            .collect();
        format!("<field var='{var}'>{v}</field>")
    }

    const FT: &str = "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>";

    #[test]
    fn with_bare_or_full() {
        let f = parse(&query(&format!("{FT}{}", field("with", &["Bob@X.org"]))));
        assert_eq!(
            f,
            Ok(MamFilter {
                with_bare: Some("bob@x.org".into()),
                ..MamFilter::default()
            })
        );
        let f = parse(&query(&format!(
            "{FT}{}",
            field("with", &["bob@x.org/Phone"])
        )));
        assert_eq!(
            f,
            Ok(MamFilter {
                with_bare: Some("bob@x.org".into()),
                with_res: Some("Phone".into()),
                ..MamFilter::default()
            })
        );
    }

    #[test]
    fn dates_ids_and_no_form() {
        let f = parse(&query(&format!(
            "{FT}{}{}{}{}{}",
            field("start", &["2010-06-07T00:00:00Z"]),
            field("end", &["2010-07-07T13:23:54.5+02:00"]),
            field("after-id", &["12"]),
            field("before-id", &["99"]),
            field("ids", &["30", "20", "30"]),
        )))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.start, Some(1_275_868_800_000_000));
        assert_eq!(f.end, Some(1_278_509_034_500_000 - 2 * 3_600_000_000));
        assert_eq!((f.after_id, f.before_id), (Some(12), Some(99)));
        assert_eq!(f.ids, Some(vec![20, 30]));
        let none = Stanza::parse(b"<query xmlns='urn:xmpp:mam:2'/>".to_vec())
            .and_then(|s| s.tree())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&none), Ok(MamFilter::default()));
        // Empty single-valued fields select nothing in particular.
        assert_eq!(
            parse(&query(&format!("{FT}{}", field("with", &[])))),
            Ok(MamFilter::default())
        );
    }

    #[test]
    fn refusals() {
        let bad = [
            field("FORM_TYPE", &["urn:xmpp:mam:1"]),
            format!("{FT}{}", field("with", &["a@b@c"])),
            format!("{FT}{}", field("start", &["yesterday"])),
            format!("{FT}{}", field("end", &["2010-13-07T00:00:00Z"])),
            format!("{FT}{}", field("with", &["a@b", "c@d"])),
            format!(
                "{FT}{}{}",
                field("start", &["2010-06-07T00:00:00Z"]),
                field("start", &["2010-06-07T00:00:00Z"])
            ),
            "<field><value>x</value></field>".to_owned(),
        ];
        for b in &bad {
            assert_eq!(parse(&query(b)), Err(FormError::Malformed), "{b}");
        }
        assert_eq!(
            parse(&query(&format!(
                "{FT}{}",
                field("include-groupchat", &["true"])
            ))),
            Err(FormError::UnknownField("include-groupchat".into()))
        );
        assert_eq!(
            parse(&query(&format!("{FT}{}", field("ids", &["1", "x"])))),
            Err(FormError::UnknownId)
        );
        let cancel = Stanza::parse(
            b"<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='cancel'/></query>"
                .to_vec(),
        )
        .and_then(|s| s.tree())
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&cancel), Err(FormError::Malformed));
    }

    #[test]
    fn blank_form_lists_the_fields() {
        let q = blank();
        let x = q
            .get_child("x", ns::DATA)
            .unwrap_or_else(|| panic!("no form"));
        let vars: Vec<_> = x.child_elements().filter_map(|f| f.attr("var")).collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "with",
                "start",
                "end",
                "before-id",
                "after-id",
                "ids"
            ]
        );
    }
}
