//! XEP-0004 data forms: reading a submitted `<x xmlns='jabber:x:data'/>` into fields, and building
//! the fields of a form to send.

use crate::xml::Element;

/// `jabber:x:data`.
pub const NS: &str = "jabber:x:data";

/// The `type` of a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    /// A form to fill in.
    Form,
    /// A filled-in form.
    Submit,
    /// The submitter gave up.
    Cancel,
    /// Results.
    Result,
}

/// One field of a form as received: its `var` and its values (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name.
    pub var: String,
    /// Its values in order.
    pub values: Vec<String>,
}

impl Field {
    /// The value of a single-valued field (`None` when absent or empty); several values are
    /// [`FormError::Malformed`].
    pub fn single(&self) -> Result<Option<&str>, FormError> {
        match self.values.as_slice() {
            [] => Ok(None),
            [v] if v.is_empty() => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(FormError::Malformed),
        }
    }

    /// A boolean field (`1`/`true`, `0`/`false`).
    pub fn boolean(&self) -> Result<bool, FormError> {
        match self.single()? {
            Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            _ => Err(FormError::BadValue(self.var.clone())),
        }
    }
}

/// A received form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Its `type`.
    pub kind: FormKind,
    /// The value of the hidden `FORM_TYPE` field, if any.
    pub form_type: Option<String>,
    /// The other fields, in order, each `var` once.
    pub fields: Vec<Field>,
}

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Not a form: unknown type, a field without `var`, a field given twice, several values where
    /// one is allowed.
    #[error("malformed data form")]
    Malformed,
    /// A field's value is not one it accepts.
    #[error("bad value for field {0}")]
    BadValue(String),
    /// The `FORM_TYPE` is not the one expected.
    #[error("wrong FORM_TYPE")]
    WrongFormType,
}

impl Form {
    /// Reads `x` (an `<x xmlns='jabber:x:data'/>`; the type defaults to `submit`).
    pub fn parse(x: &Element) -> Result<Form, FormError> {
        if x.name != "x" || x.ns != NS {
            return Err(FormError::Malformed);
        }
        let kind = match x.attr("type") {
            None | Some("submit") => FormKind::Submit,
            Some("form") => FormKind::Form,
            Some("cancel") => FormKind::Cancel,
            Some("result") => FormKind::Result,
            Some(_) => return Err(FormError::Malformed),
        };
        let mut form = Form {
            kind,
            form_type: None,
            fields: Vec::new(),
        };
        for f in x
            .child_elements()
            .filter(|e| e.name == "field" && e.ns == NS)
        {
            let var = f.attr("var").ok_or(FormError::Malformed)?;
            if var == "FORM_TYPE" && form.form_type.is_none() {
                form.form_type = Some(f.text_values().first().cloned().unwrap_or_default());
                continue;
            }
            if var == "FORM_TYPE" || form.get(var).is_some() {
                return Err(FormError::Malformed);
            }
            form.fields.push(Field {
                var: var.to_owned(),
                values: f.text_values(),
            });
        }
        Ok(form)
    }

    /// Reads `x` and checks its `FORM_TYPE` (a missing one is accepted: many clients omit it).
    pub fn parse_typed(x: &Element, form_type: &str) -> Result<Form, FormError> {
        let f = Form::parse(x)?;
        match f.form_type.as_deref() {
            None => Ok(f),
            Some(t) if t == form_type => Ok(f),
            Some(_) => Err(FormError::WrongFormType),
        }
    }

    /// The field named `var`.
    pub fn get(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var == var)
    }
}

trait Values {
    fn text_values(&self) -> Vec<String>;
}

impl Values for Element {
    fn text_values(&self) -> Vec<String> {
        self.child_elements()
            .filter(|v| v.name == "value" && v.ns == NS)
            .map(|v| v.text().trim().to_owned())
            .collect()
    }
}

/// A `<field/>` with its type, optional label and values.
pub fn field(var: &str, ty: &str, label: Option<&str>, values: &[&str]) -> Element {
    let mut f = Element::new("field", NS)
        .with_attr("var", var)
        .with_attr("type", ty);
    if let Some(l) = label {
        f = f.with_attr("label", l);
    }
    for v in values {
        f = f.with_child(Element::new("value", NS).with_text(v));
    }
    f
}

/// `field` with the `<option/>`s of a list field appended.
pub fn options(mut f: Element, opts: &[&str]) -> Element {
    for o in opts {
        f = f.with_child(
            Element::new("option", NS).with_child(Element::new("value", NS).with_text(o)),
        );
    }
    f
}

/// An `<x xmlns='jabber:x:data' type=ty/>` starting with its hidden `FORM_TYPE`.
pub fn new_form(ty: &str, form_type: &str) -> Element {
    Element::new("x", NS)
        .with_attr("type", ty)
        .with_child(field("FORM_TYPE", "hidden", None, &[form_type]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::Stanza;

    fn x(xml: &str) -> Element {
        Stanza::parse(xml.as_bytes().to_vec())
            .and_then(|s| s.tree())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_fields_and_form_type() {
        let f = Form::parse(&x("<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:t</value></field>\
             <field var='a'><value> 1 </value></field><field var='m'><value>x</value><value>y</value></field>\
             <field var='e'/></x>"))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.kind, FormKind::Submit);
        assert_eq!(f.form_type.as_deref(), Some("urn:t"));
        assert_eq!(f.get("a").map(|a| a.single()), Some(Ok(Some("1"))));
        assert_eq!(f.get("a").map(Field::boolean), Some(Ok(true)));
        assert_eq!(
            f.get("m").map(|a| a.single()),
            Some(Err(FormError::Malformed))
        );
        assert_eq!(f.get("e").map(|a| a.single()), Some(Ok(None)));
        assert_eq!(
            f.get("m").map(Field::boolean),
            Some(Err(FormError::Malformed))
        );
        assert!(Form::parse_typed(
            &x("<x xmlns='jabber:x:data'><field var='FORM_TYPE'><value>urn:t</value></field></x>"),
            "urn:u"
        )
        .is_err_and(|e| e == FormError::WrongFormType));
        assert!(Form::parse_typed(&x("<x xmlns='jabber:x:data'/>"), "urn:u").is_ok());
    }

    #[test]
    fn refusals() {
        for bad in [
            "<x xmlns='jabber:x:data' type='bogus'/>",
            "<x xmlns='jabber:x:data'><field><value>1</value></field></x>",
            "<x xmlns='jabber:x:data'><field var='a'/><field var='a'/></x>",
            "<y xmlns='jabber:x:data'/>",
        ] {
            assert_eq!(Form::parse(&x(bad)), Err(FormError::Malformed), "{bad}");
        }
    }

    #[test]
    fn builders() {
        let mut out = Vec::new();
        options(field("v", "list-single", Some("L"), &["a"]), &["a", "b"]).write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "<field xmlns='jabber:x:data' var='v' type='list-single' label='L'><value>a</value>\
             <option><value>a</value></option><option><value>b</value></option></field>"
        );
    }
}
