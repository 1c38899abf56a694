//! XMPP addresses (RFC 7622): `Jid`, `BareJid`, `FullJid`.
//!
//! Each type is one shared string plus two `u16` offsets (24 bytes on 64-bit), because sessions
//! and rosters hold them by the hundred thousand. The string is an `Arc<str>`: every routed stanza
//! carries its sender's JID and most carry a copy of the last `to` its session addressed, and a
//! copy is then a reference count, not an allocation (the two were 5 % of a shard's samples).
//!
//! Preparation: ASCII input takes a fast path (localpart and domainpart lowercased, the
//! resourcepart kept as is). Anything else goes through the stringprep profiles of RFC 6122
//! (nodeprep, nameprep, resourceprep) from the `stringprep` crate. RFC 7622 replaced those
//! profiles with PRECIS; for interop the RFC 6122 profiles are acceptable, with two known
//! differences: nodeprep folds `ß` to `ss` and final sigma `ς` to `σ` where PRECIS keeps them.
//! Localparts additionally follow the PRECIS IdentifierClass for non-ASCII letters (letters,
//! digits and marks only, no compatibility characters), so `henryⅣ@example.com` and
//! `♚@example.com` are refused as RFC 7622 §3.5 requires. Resourceparts may hold characters
//! Unicode 3.2 did not have (emoji in room nicknames), as RFC 7622 and Prosody allow; the other
//! parts refuse them (see `resourceprep`).

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Largest size of each part after preparation (RFC 7622 §3.1).
pub const MAX_PART_BYTES: usize = 1023;

/// Upper bound on a part before preparation: bounds the stringprep work on hostile input
/// (preparation can only shrink a part by dropping mapped-to-nothing characters).
const MAX_RAW_PART_BYTES: usize = 4 * MAX_PART_BYTES;

/// Why the characters of a part were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// A character not allowed in this part.
    Char(char),
    /// The stringprep profile refused the part (prohibited, unassigned or bidi rule).
    Stringprep,
    /// An empty label in a domain (`a..b`, `.a`).
    EmptyLabel,
    /// `[...]` that is not an IPv6 address.
    BadIpLiteral,
    /// An `xn--` label that is not the ASCII form of an internationalized label.
    BadALabel,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Char(c) => write!(f, "character {c:?} not allowed"),
            Invalid::Stringprep => f.write_str("refused by stringprep"),
            Invalid::EmptyLabel => f.write_str("empty label"),
            Invalid::BadIpLiteral => f.write_str("bad IPv6 literal"),
            Invalid::BadALabel => f.write_str("bad A-label"),
        }
    }
}

/// Why a string is not a JID (or not the kind of JID asked for).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// The domainpart is empty.
    #[error("empty domainpart")]
    EmptyDomain,
    /// The domainpart is over 1023 bytes.
    #[error("domainpart over 1023 bytes")]
    DomainTooLong,
    /// The domainpart has a bad character or shape.
    #[error("invalid domainpart: {0}")]
    InvalidDomain(Invalid),
    /// An `@` with nothing before it.
    #[error("empty localpart")]
    EmptyNode,
    /// The localpart is over 1023 bytes.
    #[error("localpart over 1023 bytes")]
    NodeTooLong,
    /// The localpart has a bad character.
    #[error("invalid localpart: {0}")]
    InvalidNode(Invalid),
    /// A `/` with nothing after it.
    #[error("empty resourcepart")]
    EmptyResource,
    /// The resourcepart is over 1023 bytes.
    #[error("resourcepart over 1023 bytes")]
    ResourceTooLong,
    /// The resourcepart has a bad character.
    #[error("invalid resourcepart: {0}")]
    InvalidResource(Invalid),
    /// A bare JID was asked for but the string has a resource.
    #[error("unexpected resourcepart")]
    ResourceNotAllowed,
    /// A full JID was asked for but the string has no resource.
    #[error("missing resourcepart")]
    ResourceMissing,
}

/// Shared representation: the prepared string and where its separators are.
/// `at` is the index of the `@` (0 = no localpart, since a localpart is never empty);
/// `slash` is the index of the `/` (0 = no resource, since a domain is never empty).
#[derive(Clone)]
struct Inner {
    s: Arc<str>,
    at: u16,
    slash: u16,
}

impl Inner {
    fn node(&self) -> Option<&str> {
        (self.at != 0).then(|| &self.s[..usize::from(self.at)])
    }

    fn domain(&self) -> &str {
        let start = if self.at == 0 {
            0
        } else {
            usize::from(self.at) + 1
        };
        let end = if self.slash == 0 {
            self.s.len()
        } else {
            usize::from(self.slash)
        };
        &self.s[start..end]
    }

    fn resource(&self) -> Option<&str> {
        (self.slash != 0).then(|| &self.s[usize::from(self.slash) + 1..])
    }

    fn bare(&self) -> Inner {
        if self.slash == 0 {
            return self.clone();
        }
        Inner {
            s: self.s[..usize::from(self.slash)].into(),
            at: self.at,
            slash: 0,
        }
    }

    /// Joins already prepared parts (each at most 1023 bytes, so offsets fit in u16).
    fn assemble(node: Option<&str>, domain: &str, resource: Option<&str>) -> Inner {
        let len =
            node.map_or(0, |n| n.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        let mut s = String::with_capacity(len);
        let mut at = 0;
        if let Some(n) = node {
            s.push_str(n);
            at = n.len();
            s.push('@');
        }
        s.push_str(domain);
        let mut slash = 0;
        if let Some(r) = resource {
            slash = s.len();
            s.push('/');
            s.push_str(r);
        }
        Inner::with_offsets(Arc::from(s), at, slash)
    }

    fn with_offsets(s: Arc<str>, at: usize, slash: usize) -> Inner {
        // Parts are capped at 1023 bytes, so both offsets are below 2048.
        let to16 = |x: usize| u16::try_from(x).unwrap_or(u16::MAX);
        Inner {
            s,
            at: to16(at),
            slash: to16(slash),
        }
    }

    fn parse(s: &str) -> Result<Inner, JidError> {
        // memchr: this runs for the `to` of every routed stanza.
        let (pre, resource) = match memchr::memchr(b'/', s.as_bytes()) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (node, domain) = match memchr::memchr(b'@', pre.as_bytes()) {
            Some(i) => (Some(&pre[..i]), &pre[i + 1..]),
            None => (None, pre),
        };
        let prepped_node = node.map(prep_node).transpose()?;
        let prepped_domain = prep_domain(domain)?;
        let prepped_resource = resource.map(prep_resource).transpose()?;
        if prepped_node.as_deref() == node
            && prepped_domain == domain
            && prepped_resource.as_deref() == resource
        {
            // Already prepared (the usual case): the JID is the input, one allocation.
            let at = node.map_or(0, str::len);
            let slash = resource.map_or(0, |_| pre.len());
            return Ok(Inner::with_offsets(Arc::from(s), at, slash));
        }
        Ok(Inner::assemble(
            prepped_node.as_deref(),
            &prepped_domain,
            prepped_resource.as_deref(),
        ))
    }
}

impl PartialEq for Inner {
    fn eq(&self, other: &Self) -> bool {
        self.s == other.s
    }
}
impl Eq for Inner {}
impl PartialOrd for Inner {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Inner {
    fn cmp(&self, other: &Self) -> Ordering {
        self.s.cmp(&other.s)
    }
}
// Hash only the string, like `str`, so `Borrow<str>` lookups in maps are sound.
impl Hash for Inner {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.s.hash(state)
    }
}

// ---------------------------------------------------------------- preparation

/// Prepares a localpart: nodeprep plus the PRECIS IdentifierClass letter rule.
fn prep_node(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyNode);
    }
    if s.len() > MAX_RAW_PART_BYTES {
        return Err(JidError::NodeTooLong);
    }
    let out = if s.is_ascii() {
        if let Some(b) = s.bytes().find(|&b| forbidden_in_node(char::from(b))) {
            return Err(JidError::InvalidNode(Invalid::Char(char::from(b))));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        if let Some(c) = s.chars().find(|&c| !c.is_ascii() && !identifier_letter(c)) {
            return Err(JidError::InvalidNode(Invalid::Char(c)));
        }
        if let Some(c) = unassigned(s) {
            return Err(JidError::InvalidNode(Invalid::Char(c)));
        }
        stringprep::nodeprep(s).map_err(|_| JidError::InvalidNode(Invalid::Stringprep))?
    };
    if out.is_empty() {
        return Err(JidError::EmptyNode);
    }
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::NodeTooLong);
    }
    Ok(out)
}

/// RFC 7622 §3.3.1 (and nodeprep's table): `"&'/:<>@`, space and controls.
fn forbidden_in_node(c: char) -> bool {
    matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@' | ' ') || c.is_ascii_control()
}

/// PRECIS IdentifierClass for a non-ASCII character: letters, digits and marks, and no
/// compatibility decomposition (fullwidth/halfwidth forms are allowed: PRECIS width-maps them).
fn identifier_letter(c: char) -> bool {
    use GeneralCategory::*;
    let letter_digit = matches!(
        c.general_category(),
        LowercaseLetter
            | UppercaseLetter
            | OtherLetter
            | DecimalNumber
            | ModifierLetter
            | NonspacingMark
            | SpacingMark
    );
    let width_form = ('\u{FF01}'..='\u{FFEE}').contains(&c);
    letter_digit && (width_form || std::iter::once(c).nfkc().eq(std::iter::once(c).nfc()))
}

/// The first code point unassigned in Unicode 3.2 (stringprep's table A.1), which a JID, a stored
/// string, must not hold (RFC 3454 §7). The `stringprep` profiles check only their output, after a
/// current-Unicode NFKC may have mapped such a character to an assigned one that is not prepared
/// (`Ϲ` to `Σ`), which would give one JID two prepared forms.
fn unassigned(s: &str) -> Option<char> {
    s.chars()
        .find(|&c| stringprep::tables::unassigned_code_point(c))
}

/// The resourceprep profile of RFC 6122 (RFC 3454 with tables B.1, C.1.2-C.9 and the bidi rule),
/// except that a code point Unicode 3.2 left unassigned is allowed once a later Unicode assigned
/// it: emoji above all, in room nicknames ("Anna 🌸") and client resources. RFC 7622's
/// resourcepart (PRECIS OpaqueString) is defined on current Unicode, and Prosody accepts them
/// (its resourceprep is not strict); ejabberd 23.01's stringprep and slixmpp refuse them.
/// What current Unicode leaves unassigned is still refused. Localparts and domainparts refuse
/// the newer characters because their case folding runs before a current-Unicode NFKC, so a
/// second preparation could fold what the first one produced; resourceprep folds nothing and NFKC
/// is idempotent, so preparing a resource twice gives what preparing it once gave.
fn resourceprep(s: &str) -> Result<String, Invalid> {
    // The `stringprep` crate's own resourceprep refuses what Unicode 3.2 left unassigned in its
    // output, so its steps are spelled here with its tables.
    use stringprep::tables as t;
    if let Some(c) = s
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Unassigned)
    {
        return Err(Invalid::Char(c));
    }
    let mapped: String = s
        .chars()
        .filter(|&c| !t::commonly_mapped_to_nothing(c))
        .collect();
    let out: String = mapped.nfkc().collect();
    let prohibited = |c: char| {
        t::non_ascii_space_character(c)
            || t::ascii_control_character(c)
            || t::non_ascii_control_character(c)
            || t::private_use(c)
            || t::non_character_code_point(c)
            || t::surrogate_code(c)
            || t::inappropriate_for_plain_text(c)
            || t::inappropriate_for_canonical_representation(c)
            || t::change_display_properties_or_deprecated(c)
            || t::tagging_character(c)
    };
    if let Some(c) = out.chars().find(|&c| prohibited(c)) {
        return Err(Invalid::Char(c));
    }
    // RFC 3454 §6: a string with right-to-left characters has no left-to-right ones, and begins
    // and ends with a right-to-left one.
    if out.contains(t::bidi_r_or_al)
        && (out.contains(t::bidi_l)
            || !out.starts_with(t::bidi_r_or_al)
            || !out.ends_with(t::bidi_r_or_al))
    {
        return Err(Invalid::Stringprep);
    }
    Ok(out)
}

/// Prepares a domainpart: one trailing dot stripped, IPv6 literal, or LDH(+`_`) labels.
fn prep_domain(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.len() > MAX_RAW_PART_BYTES {
        return Err(JidError::DomainTooLong);
    }
    let out = if s.is_ascii() {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if let Some(inner) = s.strip_prefix('[') {
            let ok = inner
                .strip_suffix(']')
                .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok());
            if !ok {
                return Err(JidError::InvalidDomain(Invalid::BadIpLiteral));
            }
        } else {
            check_domain_chars(s)?;
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        // IDNA label separators (RFC 3490 §3.1) count as dots.
        let dotted: String = s
            .chars()
            .map(|c| match c {
                '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => '.',
                c => c,
            })
            .collect();
        let d = dotted.strip_suffix('.').unwrap_or(&dotted);
        if d.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if let Some(c) = unassigned(d) {
            return Err(JidError::InvalidDomain(Invalid::Char(c)));
        }
        let prepped =
            stringprep::nameprep(d).map_err(|_| JidError::InvalidDomain(Invalid::Stringprep))?;
        check_domain_chars(&prepped)?;
        Cow::Owned(prepped.into_owned())
    };
    // RFC 7622 §3.2.1: an A-label is turned into its U-label, so `xn--bcher-kva.example` and
    // `bücher.example` are one domain (one account, one host, no s2s to ourselves).
    let out = if has_a_label(&out) {
        Cow::Owned(u_labels(&out)?)
    } else {
        out
    };
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::DomainTooLong);
    }
    Ok(out)
}

/// The prepared `domain` with its A-labels turned into U-labels and prepared again. A domain
/// whose preparation brings an A-label back is refused: a JID has one spelling, and preparing it
/// again must give the same.
fn u_labels(domain: &str) -> Result<String, JidError> {
    let (unicode, checked) = idna::domain_to_unicode(domain);
    if checked.is_err() {
        return Err(JidError::InvalidDomain(Invalid::BadALabel));
    }
    if let Some(c) = unassigned(&unicode) {
        return Err(JidError::InvalidDomain(Invalid::Char(c)));
    }
    let prepped =
        stringprep::nameprep(&unicode).map_err(|_| JidError::InvalidDomain(Invalid::Stringprep))?;
    check_domain_chars(&prepped)?;
    if prepped.is_empty() || has_a_label(&prepped) {
        return Err(JidError::InvalidDomain(Invalid::BadALabel));
    }
    Ok(prepped.into_owned())
}

/// Whether a label of the (lowercase) domain `s` is an A-label (`xn--`). Runs on every routed
/// stanza's addresses: most domains have no `-` at all, which one `memchr` settles.
fn has_a_label(s: &str) -> bool {
    let b = s.as_bytes();
    memchr::memchr(b'-', b).is_some()
        && (b.starts_with(b"xn--") || memchr::memmem::find(b, b".xn--").is_some())
}

/// The ASCII form of a prepared domain (its U-labels as A-labels), as DNS and certificates name
/// it; the domain itself when it is ASCII already.
pub fn domain_to_ascii(domain: &str) -> Cow<'_, str> {
    if domain.is_ascii() {
        return Cow::Borrowed(domain);
    }
    // A prepared domain is valid IDNA; should the conversion still fail, the name stays as it is
    // and whatever uses it (a TLS name, a DNS query) refuses it with its own error.
    match idna::domain_to_ascii(domain) {
        Ok(ascii) => Cow::Owned(ascii),
        Err(_) => Cow::Borrowed(domain),
    }
}

/// ASCII in a domain must be letters, digits, `-`, `_` or `.`; labels must not be empty.
/// (`_` is not a hostname character but is common in XMPP deployments.)
fn check_domain_chars(s: &str) -> Result<(), JidError> {
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(JidError::InvalidDomain(Invalid::Char(c)));
    }
    // An empty label: a leading or trailing dot, or two in a row (byte scan: runs per routed stanza).
    let b = s.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' || b.windows(2).any(|w| w == b"..") {
        return Err(JidError::InvalidDomain(Invalid::EmptyLabel));
    }
    Ok(())
}

/// Prepares a resourcepart: case is kept; ASCII controls are refused.
fn prep_resource(s: &str) -> Result<Cow<'_, str>, JidError> {
    if s.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if s.len() > MAX_RAW_PART_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    let out = if s.is_ascii() {
        if let Some(c) = s.chars().find(char::is_ascii_control) {
            return Err(JidError::InvalidResource(Invalid::Char(c)));
        }
        Cow::Borrowed(s)
    } else {
        Cow::Owned(resourceprep(s).map_err(JidError::InvalidResource)?)
    };
    if out.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if out.len() > MAX_PART_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    Ok(out)
}

// ---------------------------------------------------------------- public types

/// Any JID, with or without a resource.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid(Inner);

/// A JID without a resource (`node@domain` or `domain`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BareJid(Inner);

/// A JID with a resource (`node@domain/resource` or `domain/resource`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullJid(Inner);

impl Jid {
    /// Parses and prepares any JID.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        Inner::parse(s).map(Jid)
    }
    /// The localpart, if any.
    pub fn node(&self) -> Option<&str> {
        self.0.node()
    }
    /// The domainpart.
    pub fn domain(&self) -> &str {
        self.0.domain()
    }
    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.0.resource()
    }
    /// This JID without its resource.
    pub fn bare(&self) -> BareJid {
        BareJid(self.0.bare())
    }
    /// The bare part as a string slice (no allocation; `HashMap<BareJid, _>` looks up by `&str`).
    pub fn bare_str(&self) -> &str {
        match self.0.slash {
            0 => &self.0.s,
            n => &self.0.s[..usize::from(n)],
        }
    }
    /// The prepared string form.
    pub fn as_str(&self) -> &str {
        &self.0.s
    }
    /// True when there is no resource.
    pub fn is_bare(&self) -> bool {
        self.0.slash == 0
    }
    /// A `FullJid` if there is a resource, else this JID back.
    pub fn try_into_full(self) -> Result<FullJid, Jid> {
        if self.is_bare() {
            Err(self)
        } else {
            Ok(FullJid(self.0))
        }
    }
    /// A `BareJid` if there is no resource, else this JID back.
    pub fn try_into_bare(self) -> Result<BareJid, Jid> {
        if self.is_bare() {
            Ok(BareJid(self.0))
        } else {
            Err(self)
        }
    }
}

impl BareJid {
    /// Parses a JID that must not have a resource.
    pub fn parse(s: &str) -> Result<BareJid, JidError> {
        let inner = Inner::parse(s)?;
        if inner.slash != 0 {
            return Err(JidError::ResourceNotAllowed);
        }
        Ok(BareJid(inner))
    }
    /// Builds `node@domain` (or `domain`) from unprepared parts.
    pub fn new(node: Option<&str>, domain: &str) -> Result<BareJid, JidError> {
        let node = node.map(prep_node).transpose()?;
        let domain = prep_domain(domain)?;
        Ok(BareJid(Inner::assemble(node.as_deref(), &domain, None)))
    }
    /// Builds a domain-only JID (a server or service address).
    pub fn domain_only(domain: &str) -> Result<BareJid, JidError> {
        BareJid::new(None, domain)
    }
    /// The localpart, if any.
    pub fn node(&self) -> Option<&str> {
        self.0.node()
    }
    /// The domainpart.
    pub fn domain(&self) -> &str {
        self.0.domain()
    }
    /// The prepared string form.
    pub fn as_str(&self) -> &str {
        &self.0.s
    }
    /// This JID with a resource appended (the resource is prepared).
    pub fn with_resource(&self, resource: &str) -> Result<FullJid, JidError> {
        let resource = prep_resource(resource)?;
        Ok(FullJid(Inner::assemble(
            self.node(),
            self.domain(),
            Some(&resource),
        )))
    }
}

impl FullJid {
    /// Parses a JID that must have a resource.
    pub fn parse(s: &str) -> Result<FullJid, JidError> {
        let inner = Inner::parse(s)?;
        if inner.slash == 0 {
            return Err(JidError::ResourceMissing);
        }
        Ok(FullJid(inner))
    }
    /// This JID without its resource.
    pub fn bare(&self) -> BareJid {
        BareJid(self.0.bare())
    }
    /// The localpart, if any.
    pub fn node(&self) -> Option<&str> {
        self.0.node()
    }
    /// The domainpart.
    pub fn domain(&self) -> &str {
        self.0.domain()
    }
    /// The resourcepart.
    pub fn resource(&self) -> &str {
        // A FullJid is only built with slash != 0, so a resource is always present.
        self.0.resource().unwrap_or_default()
    }
    /// The bare part as a string slice (no allocation).
    pub fn bare_str(&self) -> &str {
        &self.0.s[..usize::from(self.0.slash)]
    }
    /// The prepared string form.
    pub fn as_str(&self) -> &str {
        &self.0.s
    }
}

macro_rules! string_like {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.s)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), &self.0.s)
            }
        }
        impl FromStr for $t {
            type Err = JidError;
            fn from_str(s: &str) -> Result<Self, JidError> {
                $t::parse(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0.s
            }
        }
        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0.s
            }
        }
    };
}
string_like!(Jid);
string_like!(BareJid);
string_like!(FullJid);

impl From<BareJid> for Jid {
    fn from(j: BareJid) -> Jid {
        Jid(j.0)
    }
}

impl From<FullJid> for Jid {
    fn from(j: FullJid) -> Jid {
        Jid(j.0)
    }
}

impl TryFrom<Jid> for FullJid {
    type Error = JidError;
    fn try_from(j: Jid) -> Result<FullJid, JidError> {
        j.try_into_full().map_err(|_| JidError::ResourceMissing)
    }
}

impl TryFrom<Jid> for BareJid {
    type Error = JidError;
    fn try_from(j: Jid) -> Result<BareJid, JidError> {
        j.try_into_bare().map_err(|_| JidError::ResourceNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<String, JidError> {
        Jid::parse(s).map(|j| j.as_str().to_owned())
    }

    #[test]
    fn prepared_input_and_folded_input_give_the_same_parts() {
        // The first of each pair is kept as written (the input is the JID), the second is
        // rebuilt from prepared parts: both must split the same way.
        for (a, b) in [
            (
                "juliet@example.com/Balcony/2",
                "JULIET@Example.COM./Balcony/2",
            ),
            ("example.com/r", "EXAMPLE.com/r"),
            ("juliet@example.com", "Juliet@example.com"),
            ("example.com", "example.com."),
        ] {
            let (x, y) = (Jid::parse(a).unwrap(), Jid::parse(b).unwrap());
            assert_eq!(x, y);
            assert_eq!(x.as_str(), a);
            assert_eq!(
                (x.node(), x.domain(), x.resource()),
                (y.node(), y.domain(), y.resource())
            );
            assert_eq!(x.bare(), y.bare());
        }
    }

    #[test]
    fn copies_share_the_string() {
        let j = Jid::parse("juliet@example.com/balcony").unwrap();
        let k = j.clone();
        assert!(Arc::ptr_eq(&j.0.s, &k.0.s));
    }

    #[test]
    fn size_is_compact() {
        assert!(std::mem::size_of::<Jid>() <= 24);
        assert_eq!(std::mem::size_of::<FullJid>(), std::mem::size_of::<Jid>());
    }

    #[test]
    fn rfc7622_valid_examples() {
        let cases = [
            ("juliet@example.com", Some("juliet"), "example.com", None),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
            ),
            (
                "fussball@example.com",
                Some("fussball"),
                "example.com",
                None,
            ),
            ("π@example.com", Some("π"), "example.com", None),
            ("Σ@example.com/foo", Some("σ"), "example.com", Some("foo")),
            ("σ@example.com/foo", Some("σ"), "example.com", Some("foo")),
            ("king@example.com/♚", Some("king"), "example.com", Some("♚")),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
            ),
        ];
        for (input, node, domain, resource) in cases {
            let j = Jid::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(j.node(), node, "{input}");
            assert_eq!(j.domain(), domain, "{input}");
            assert_eq!(j.resource(), resource, "{input}");
            assert_eq!(j.is_bare(), resource.is_none(), "{input}");
        }
    }

    #[test]
    fn rfc6122_folding_of_sharp_s_and_final_sigma() {
        // Valid per RFC 7622 §3.5; nodeprep (RFC 6122) folds these where PRECIS would not.
        assert_eq!(
            p("fußball@example.com").as_deref(),
            Ok("fussball@example.com")
        );
        assert_eq!(p("ς@example.com/foo").as_deref(), Ok("σ@example.com/foo"));
    }

    /// Found by fuzzing (jid target): `Ϲ` (U+03F9, unassigned in Unicode 3.2) slipped through nameprep,
    /// whose unassigned check runs after a modern NFKC has mapped it to `Σ`, so the prepared domain
    /// `Σ` prepared again to `σ`: two forms of one JID. Stored strings must not hold unassigned code
    /// points (RFC 3454 §7), so they are refused in every part, before preparation.
    #[test]
    fn unicode_3_2_unassigned_code_points_are_refused() {
        use JidError::*;
        let bad = Invalid::Char('\u{3f9}');
        for (input, want) in [
            ("\u{3f9}", InvalidDomain(bad)),
            ("a.\u{3f9}.example/r", InvalidDomain(bad)),
            ("\u{e9}\u{3f9}@example.com", InvalidNode(bad)),
        ] {
            assert_eq!(p(input), Err(want), "{input}");
        }
        // Assigned characters are still prepared, and preparation stays idempotent.
        for s in [
            "\u{3a3}.example",
            "juliet@example.com/\u{3a3}",
            "b\u{fc}cher.example",
            // c2s reuses a session's last prepared `to` when the next one is written the same way.
            "JuLiEt@ExAmPle.COM/Balcony",
            "\u{ff4a}uliet@example.com",
            "B\u{dc}CHER.example./R\u{e9}sum\u{e9}",
            "\u{3a3}\u{3c3}\u{3c2}@example.com",
        ] {
            let j = Jid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(Jid::parse(j.as_str()).as_ref(), Ok(&j), "{s}");
        }
    }

    /// Room nicknames and client resources with emoji, which Unicode 3.2 did not have: accepted
    /// (as RFC 7622 and Prosody accept them), prepared once for all.
    #[test]
    fn resources_may_hold_characters_unicode_3_2_did_not_have() {
        for (input, want) in [
            ("room@conference.example/Anna 🌸", "Anna 🌸"),
            ("juliet@example.com/phone 📱", "phone 📱"),
            // Variation selectors and joiners are mapped to nothing (table B.1), as before.
            ("room@conference.example/Anna ❤\u{fe0f}", "Anna ❤"),
            ("room@conference.example/👩\u{200d}💻", "👩💻"),
            // A compatibility character Unicode 4.0 added is normalised like any other.
            ("juliet@example.com/\u{3f9}", "\u{3a3}"),
        ] {
            let j = Jid::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(j.resource(), Some(want), "{input}");
            assert_eq!(Jid::parse(j.as_str()).as_ref(), Ok(&j), "{input}");
        }
        // Still refused: what current Unicode leaves unassigned, prohibited output, the bidi rule.
        use JidError::InvalidResource;
        for (input, want) in [
            ("juliet@example.com/a\u{378}", Invalid::Char('\u{378}')),
            ("juliet@example.com/a\u{1680}b", Invalid::Char('\u{1680}')),
            ("juliet@example.com/\u{e000}", Invalid::Char('\u{e000}')),
            ("juliet@example.com/a\u{5d0}", Invalid::Stringprep),
        ] {
            assert_eq!(p(input), Err(InvalidResource(want)), "{input}");
        }
        // Right-to-left text alone is fine.
        assert!(p("juliet@example.com/\u{5d0}\u{5d1}").is_ok());
    }

    #[test]
    fn rfc7622_invalid_examples() {
        use JidError::*;
        assert_eq!(
            p("\"juliet\"@example.com"),
            Err(InvalidNode(Invalid::Char('"')))
        );
        assert_eq!(
            p("foo bar@example.com"),
            Err(InvalidNode(Invalid::Char(' ')))
        );
        assert_eq!(
            p("henry\u{2163}@example.com"),
            Err(InvalidNode(Invalid::Char('\u{2163}')))
        );
        assert_eq!(p("♚@example.com"), Err(InvalidNode(Invalid::Char('♚'))));
        assert_eq!(p("@example.com"), Err(EmptyNode));
        assert_eq!(p("user@example.com/"), Err(EmptyResource));
        assert_eq!(
            p("user@example.com/\u{1}"),
            Err(InvalidResource(Invalid::Char('\u{1}')))
        );
        assert_eq!(p("juliet@"), Err(EmptyDomain));
        assert_eq!(p("/foobar"), Err(EmptyDomain));
        assert_eq!(
            p("user@host@example.com"),
            Err(InvalidDomain(Invalid::Char('@')))
        );
        assert_eq!(
            p("juliet@@example.com"),
            Err(InvalidDomain(Invalid::Char('@')))
        );
        assert_eq!(p(""), Err(EmptyDomain));
    }

    #[test]
    fn forbidden_localpart_chars() {
        for c in ['"', '&', '\'', ':', '<', '>', ' ', '\t', '\u{7f}'] {
            let s = format!("a{c}b@example.com");
            assert_eq!(p(&s), Err(JidError::InvalidNode(Invalid::Char(c))), "{c:?}");
        }
    }

    #[test]
    fn case_folding() {
        let j = Jid::parse("Juliet@Example.COM/Balcony").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.as_str(), "juliet@example.com/Balcony");
        assert_eq!(p("ÉLISE@EXAMPLE.com").as_deref(), Ok("élise@example.com"));
        assert_eq!(
            p("user@BÜCHER.example").as_deref(),
            Ok("user@bücher.example")
        );
    }

    #[test]
    fn resource_keeps_at_and_slash_and_case() {
        let j = FullJid::parse("a@b.c/x/Y@z").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.resource(), "x/Y@z");
        assert_eq!(j.domain(), "b.c");
        assert_eq!(j.bare().as_str(), "a@b.c");
    }

    #[test]
    fn a_labels_are_the_same_domain_as_their_u_labels() {
        for form in [
            "user@xn--bcher-kva.example",
            "user@XN--BCHER-KVA.example.",
            "user@bücher.example",
        ] {
            assert_eq!(p(form).as_deref(), Ok("user@bücher.example"), "{form}");
        }
        assert_eq!(
            p("a@sub.xn--bcher-kva.example/r").as_deref(),
            Ok("a@sub.bücher.example/r")
        );
        // Not punycode at all.
        assert_eq!(
            p("a@xn--a.example"),
            Err(JidError::InvalidDomain(Invalid::BadALabel))
        );
        // Found by the jid fuzz target: nameprep makes an A-label of a non-ASCII label (ß to
        // ss); preparing the result again must give the same JID.
        let j = p("x@xn--ufuqßball.example/r").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p(&j).as_deref(), Ok(j.as_str()));
        assert_eq!(domain_to_ascii("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(domain_to_ascii("example.com"), "example.com");
    }

    #[test]
    fn domain_forms() {
        assert_eq!(p("user@example.com.").as_deref(), Ok("user@example.com"));
        assert_eq!(p("example.com./r").as_deref(), Ok("example.com/r"));
        assert_eq!(p("a@."), Err(JidError::EmptyDomain));
        assert_eq!(
            p("a@example..com"),
            Err(JidError::InvalidDomain(Invalid::EmptyLabel))
        );
        assert_eq!(
            p("a@example.com.."),
            Err(JidError::InvalidDomain(Invalid::EmptyLabel))
        );
        assert_eq!(
            p("a@.example.com"),
            Err(JidError::InvalidDomain(Invalid::EmptyLabel))
        );
        assert_eq!(
            p("juliet@123.123.123.123/res").as_deref(),
            Ok("juliet@123.123.123.123/res")
        );
        assert_eq!(
            p("juliet@[2002:4559:1FE2::4559:1FE2]/res").as_deref(),
            Ok("juliet@[2002:4559:1fe2::4559:1fe2]/res")
        );
        assert_eq!(p("[::1]").as_deref(), Ok("[::1]"));
        assert_eq!(
            p("a@[::g]"),
            Err(JidError::InvalidDomain(Invalid::BadIpLiteral))
        );
        assert_eq!(
            p("a@[::1"),
            Err(JidError::InvalidDomain(Invalid::BadIpLiteral))
        );
        assert_eq!(
            p("a@exa mple.com"),
            Err(JidError::InvalidDomain(Invalid::Char(' ')))
        );
        assert_eq!(p("a@example\u{3002}com").as_deref(), Ok("a@example.com"));
    }

    #[test]
    fn sizes() {
        let n1023 = "n".repeat(1023);
        let r1023 = "R".repeat(1023);
        // 1023-byte domain made of 63-byte labels.
        let mut d1023 = vec!["d".repeat(63); 16].join(".");
        d1023.truncate(1023);
        assert_eq!(d1023.len(), 1023);
        let max = format!("{n1023}@{d1023}/{r1023}");
        let j = Jid::parse(&max).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.node().map(str::len), Some(1023));
        assert_eq!(j.domain().len(), 1023);
        assert_eq!(j.resource().map(str::len), Some(1023));

        assert_eq!(p(&format!("{n1023}n@a")), Err(JidError::NodeTooLong));
        assert_eq!(p(&format!("a@{d1023}d")), Err(JidError::DomainTooLong));
        assert_eq!(p(&format!("a@b/{r1023}R")), Err(JidError::ResourceTooLong));
        // Multi-byte characters count in bytes: 512 × 'é' (2 bytes) = 1024.
        assert_eq!(
            p(&format!("{}@a", "é".repeat(512))),
            Err(JidError::NodeTooLong)
        );
        assert!(p(&format!("{}@a", "é".repeat(511))).is_ok());
    }

    #[test]
    fn kinds() {
        assert_eq!(BareJid::parse("a@b/c"), Err(JidError::ResourceNotAllowed));
        assert_eq!(FullJid::parse("a@b"), Err(JidError::ResourceMissing));
        let b = BareJid::new(Some("Alice"), "Example.ORG").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.as_str(), "alice@example.org");
        assert_eq!(b.node(), Some("alice"));
        let f = b.with_resource("Phone").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.as_str(), "alice@example.org/Phone");
        assert_eq!(f.bare(), b);
        assert_eq!(b.with_resource(""), Err(JidError::EmptyResource));
        let d = BareJid::domain_only("Example.org").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d.node(), d.domain()), (None, "example.org"));
        assert_eq!(BareJid::new(Some(""), "x"), Err(JidError::EmptyNode));

        let j: Jid = f.clone().into();
        assert_eq!(j.clone().try_into_full(), Ok(f.clone()));
        let jb: Jid = b.clone().into();
        assert_eq!(jb.clone().try_into_full(), Err(jb.clone()));
        assert_eq!(jb.bare(), b);
        assert_eq!(j.bare(), b);
        assert_eq!(
            "a@b/c".parse::<FullJid>().map(|j| j.to_string()).as_deref(),
            Ok("a@b/c")
        );
        assert_eq!(format!("{:?}", b), "BareJid(alice@example.org)");
    }

    #[test]
    fn map_lookup_by_str() {
        let mut m = std::collections::HashMap::new();
        let b = BareJid::parse("Alice@Example.org").unwrap_or_else(|e| panic!("{e}"));
        m.insert(b, 1);
        assert_eq!(m.get("alice@example.org"), Some(&1));
        let a = Jid::parse("a@x").unwrap_or_else(|e| panic!("{e}"));
        let z = Jid::parse("z@x").unwrap_or_else(|e| panic!("{e}"));
        assert!(a < z);
    }
}
