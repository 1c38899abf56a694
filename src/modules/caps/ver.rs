//! XEP-0115 without I/O: the `<c/>` element of a presence, a disco#info answer as [`CapsInfo`],
//! and the verification string and hash of XEP-0115 §5.1 (with the extended forms of §5.3 and
//! the checks of §5.4).

use std::collections::BTreeSet;

use base64::Engine;
use sha1::Digest;

use crate::xml::{Element, Stanza};
use crate::xmpp::ns;

/// The namespace of entity capabilities.
pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// The namespace of data forms (XEP-0004).
const NS_DATA: &str = "jabber:x:data";

/// The `<c xmlns='http://jabber.org/protocol/caps'/>` of a presence (legacy caps, without `hash`,
/// are not taken).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapsRef {
    /// The software's URI (`node`).
    pub node: String,
    /// The verification hash, base64 (`ver`).
    pub ver: String,
    /// The hash function's name (`hash`, e.g. `sha-1`).
    pub hash: String,
}

/// What carries a presence's caps: a parsed element, or the stanza bytes.
pub trait CapsCarrier {
    /// The `<c/>` child, if any.
    fn caps(&self) -> Option<CapsRef>;
}

impl CapsCarrier for Element {
    fn caps(&self) -> Option<CapsRef> {
        let c = self.get_child("c", NS_CAPS)?;
        let (node, ver, hash) = (c.attr("node")?, c.attr("ver")?, c.attr("hash")?);
        if node.is_empty() || ver.is_empty() || hash.is_empty() {
            return None;
        }
        Some(CapsRef {
            node: node.to_owned(),
            ver: ver.to_owned(),
            hash: hash.to_owned(),
        })
    }
}

impl CapsCarrier for Stanza {
    fn caps(&self) -> Option<CapsRef> {
        // Most presences carry no caps: a byte search spares them the tree.
        memchr::memmem::find(self.content(), NS_CAPS.as_bytes())?;
        self.tree().ok()?.caps()
    }
}

/// The caps of a presence (element or stanza), if it carries hashed caps.
pub fn parse<P: CapsCarrier + ?Sized>(presence: &P) -> Option<CapsRef> {
    presence.caps()
}

/// A disco#info identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    /// `category`.
    pub category: String,
    /// `type`.
    pub type_: String,
    /// `xml:lang` (empty when absent).
    pub lang: String,
    /// `name` (empty when absent).
    pub name: String,
}

/// An extended disco#info form (XEP-0128), fields sorted by `var`, values sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// The value of its `FORM_TYPE` field.
    pub form_type: String,
    /// (var, values) of the other fields.
    pub fields: Vec<(String, Vec<String>)>,
}

/// What an entity's disco#info says, as caps know it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapsInfo {
    /// Identities, sorted.
    pub identities: Vec<Identity>,
    /// Features.
    pub features: BTreeSet<String>,
    /// Extended forms, sorted by `FORM_TYPE`.
    pub forms: Vec<Form>,
}

impl CapsInfo {
    /// True when the entity advertises `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }

    /// True when the entity wants PEP notifications of `node` (feature `NODE+notify`, XEP-0163).
    pub fn notify(&self, node: &str) -> bool {
        self.has(&format!("{node}+notify"))
    }

    /// Rough size in bytes (for the cache's byte bound).
    pub fn weight(&self) -> usize {
        let ids: usize = self
            .identities
            .iter()
            .map(|i| i.category.len() + i.type_.len() + i.lang.len() + i.name.len() + 32)
            .sum();
        let features: usize = self.features.iter().map(|f| f.len() + 32).sum();
        let forms: usize = self
            .forms
            .iter()
            .flat_map(|f| &f.fields)
            .map(|(var, values)| var.len() + values.iter().map(|v| v.len() + 24).sum::<usize>())
            .sum();
        ids + features + forms + 64
    }
}

/// Why a disco#info answer cannot be verified (XEP-0115 §5.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    /// Not a `<query xmlns='http://jabber.org/protocol/disco#info'/>`.
    #[error("not a disco#info query")]
    NotDiscoInfo,
    /// An identity without category or type.
    #[error("identity without category or type")]
    BadIdentity,
    /// The same identity twice.
    #[error("duplicate identity")]
    DuplicateIdentity,
    /// A feature without `var`, or the same feature twice.
    #[error("missing or duplicate feature")]
    BadFeature,
    /// Two forms with one `FORM_TYPE`, or a `FORM_TYPE` with different values.
    #[error("ambiguous FORM_TYPE")]
    BadForm,
    /// A hash function this server does not compute.
    #[error("unsupported hash function {0}")]
    UnsupportedHash(String),
    /// The hash of the answer is not the `ver` it was asked for.
    #[error("the hash does not match")]
    Mismatch,
}

/// Hash functions XEP-0115 names (IANA textual names) that petrel computes.
pub fn hash_supported(name: &str) -> bool {
    matches!(
        name,
        "sha-1" | "sha-224" | "sha-256" | "sha-384" | "sha-512"
    )
}

/// `data` hashed with the function called `name`, base64.
pub fn hash(name: &str, data: &[u8]) -> Result<String, CapsError> {
    let digest: Vec<u8> = match name {
        "sha-1" => sha1::Sha1::digest(data).to_vec(),
        "sha-224" => sha2::Sha224::digest(data).to_vec(),
        "sha-256" => sha2::Sha256::digest(data).to_vec(),
        "sha-384" => sha2::Sha384::digest(data).to_vec(),
        "sha-512" => sha2::Sha512::digest(data).to_vec(),
        other => return Err(CapsError::UnsupportedHash(other.to_owned())),
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// A disco#info answer read for caps. Forms whose `FORM_TYPE` is not `hidden` are left out of
/// `info` (§5.4) and kept in the second value: some clients hash them anyway.
pub fn parse_info(query: &Element) -> Result<(CapsInfo, Vec<Form>), CapsError> {
    if query.name != "query" || query.ns != ns::DISCO_INFO {
        return Err(CapsError::NotDiscoInfo);
    }
    let mut info = CapsInfo::default();
    let mut loose = Vec::new();
    for child in query.child_elements() {
        match (child.name.as_str(), child.ns.as_str()) {
            ("identity", ns::DISCO_INFO) => info.identities.push(identity(child)?),
            ("feature", ns::DISCO_INFO) => {
                let var = child.attr("var").ok_or(CapsError::BadFeature)?;
                if !info.features.insert(var.to_owned()) {
                    return Err(CapsError::BadFeature);
                }
            }
            ("x", NS_DATA) => match form(child)? {
                Some((f, true)) => info.forms.push(f),
                Some((f, false)) => loose.push(f),
                None => {}
            },
            _ => {}
        }
    }
    info.identities.sort();
    if info.identities.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::DuplicateIdentity);
    }
    for forms in [&mut info.forms, &mut loose] {
        forms.sort_by(|a, b| a.form_type.cmp(&b.form_type));
    }
    let mut all: Vec<&str> = info
        .forms
        .iter()
        .chain(&loose)
        .map(|f| f.form_type.as_str())
        .collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Err(CapsError::BadForm);
    }
    Ok((info, loose))
}

fn identity(el: &Element) -> Result<Identity, CapsError> {
    let (Some(category), Some(type_)) = (el.attr("category"), el.attr("type")) else {
        return Err(CapsError::BadIdentity);
    };
    Ok(Identity {
        category: category.to_owned(),
        type_: type_.to_owned(),
        lang: el.attr("xml:lang").unwrap_or_default().to_owned(),
        name: el.attr("name").unwrap_or_default().to_owned(),
    })
}

/// A form and whether its `FORM_TYPE` is hidden; `None` for a form without `FORM_TYPE` (ignored).
fn form(x: &Element) -> Result<Option<(Form, bool)>, CapsError> {
    let mut form_type: Option<(String, bool)> = None;
    let mut fields = Vec::new();
    for field in x.child_elements() {
        if field.name != "field" || field.ns != NS_DATA {
            continue;
        }
        let Some(var) = field.attr("var") else {
            continue;
        };
        let mut values: Vec<String> = field
            .child_elements()
            .filter(|v| v.name == "value" && v.ns == NS_DATA)
            .map(Element::text)
            .collect();
        if var == "FORM_TYPE" {
            values.dedup();
            let [value] = values.as_slice() else {
                return Err(CapsError::BadForm);
            };
            let hidden = field.attr("type") == Some("hidden");
            form_type = Some((value.clone(), hidden));
        } else {
            values.sort();
            fields.push((var.to_owned(), values));
        }
    }
    let Some((form_type, hidden)) = form_type else {
        return Ok(None);
    };
    fields.sort();
    Ok(Some((Form { form_type, fields }, hidden)))
}

/// The verification string of XEP-0115 §5.1 for `info`, with `extra` forms merged in.
pub fn verification_string(info: &CapsInfo, extra: &[Form]) -> String {
    let mut s = String::new();
    for i in &info.identities {
        for part in [
            i.category.as_str(),
            "/",
            &i.type_,
            "/",
            &i.lang,
            "/",
            &i.name,
            "<",
        ] {
            s.push_str(part);
        }
    }
    for f in &info.features {
        s.push_str(f);
        s.push('<');
    }
    let mut forms: Vec<&Form> = info.forms.iter().chain(extra).collect();
    forms.sort_by(|a, b| a.form_type.cmp(&b.form_type));
    for form in forms {
        s.push_str(&form.form_type);
        s.push('<');
        for (var, values) in &form.fields {
            s.push_str(var);
            s.push('<');
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    s
}

/// The `ver` of `info` with the hash function `hash_name`.
pub fn ver(info: &CapsInfo, hash_name: &str) -> Result<String, CapsError> {
    hash(hash_name, verification_string(info, &[]).as_bytes())
}

/// Checks a disco#info answer against the caps it was asked for; the verified info on success.
pub fn verify(query: &Element, caps: &CapsRef) -> Result<CapsInfo, CapsError> {
    let (info, loose) = parse_info(query)?;
    if ver(&info, &caps.hash)? == caps.ver {
        return Ok(info);
    }
    // Forms with a non-hidden FORM_TYPE: §5.4 says to leave them out, some clients hash them.
    if !loose.is_empty()
        && hash(&caps.hash, verification_string(&info, &loose).as_bytes())? == caps.ver
    {
        let mut info = info;
        info.forms.extend(loose);
        info.forms.sort_by(|a, b| a.form_type.cmp(&b.form_type));
        return Ok(info);
    }
    Err(CapsError::Mismatch)
}
