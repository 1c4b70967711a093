//! Reading and writing typed values in XEP-0004 data forms, shared by the node
//! configuration, publish-options and subscription options forms.
//!
//! This module knows the XEP-0004 value rules (booleans, single versus multiple values,
//! FORM_TYPE handling); it knows nothing about which fields pubsub defines.

use std::collections::HashSet;

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};

use super::error::DomainError;

/// Checks that `form` is a submission scoped to `form_type` and returns its fields other
/// than FORM_TYPE.
///
/// A missing FORM_TYPE is tolerated (some clients omit it); a different one, a form that
/// is not of type `submit`, or a field given twice is a malformed request.
pub(crate) fn submitted_fields<'f>(
    form: &'f DataForm,
    form_type: &str,
) -> Result<Vec<&'f Field>, DomainError> {
    if form.type_ != DataFormType::Submit {
        return Err(DomainError::BadRequest(format!(
            "expected a data form of type 'submit', got '{}'",
            form_type_name(&form.type_)
        )));
    }
    if let Some(given) = form.form_type() {
        if given != form_type {
            return Err(DomainError::BadRequest(format!(
                "expected FORM_TYPE '{form_type}', got '{given}'"
            )));
        }
    }
    let mut seen = HashSet::new();
    let mut fields = Vec::with_capacity(form.fields.len());
    for field in &form.fields {
        if field.is_form_type(&form.type_) {
            continue;
        }
        // Fields without 'var' are 'fixed' labels; they carry no data.
        let Some(var) = field.var.as_deref() else {
            continue;
        };
        if !seen.insert(var) {
            return Err(DomainError::BadRequest(format!(
                "field '{var}' appears more than once"
            )));
        }
        fields.push(field);
    }
    Ok(fields)
}

fn form_type_name(t: &DataFormType) -> &'static str {
    match t {
        DataFormType::Cancel => "cancel",
        DataFormType::Form => "form",
        DataFormType::Result_ => "result",
        DataFormType::Submit => "submit",
    }
}

/// The `var` of a field returned by [`submitted_fields`] (always present there).
pub(crate) fn var(field: &Field) -> &str {
    field.var.as_deref().unwrap_or_default()
}

/// Rejects a field whose declared type contradicts `expected`.
///
/// `text-single` is XEP-0004's default and what an omitted `type` parses to, so it is
/// accepted for every field.
pub(crate) fn check_type(field: &Field, expected: FieldType) -> Result<(), String> {
    if field.type_ == expected || field.type_ == FieldType::TextSingle {
        Ok(())
    } else {
        Err(format!(
            "field '{}' must be of type {}",
            var(field),
            field_type_name(&expected)
        ))
    }
}

fn field_type_name(t: &FieldType) -> &'static str {
    match t {
        FieldType::Boolean => "boolean",
        FieldType::Fixed => "fixed",
        FieldType::Hidden => "hidden",
        FieldType::JidMulti => "jid-multi",
        FieldType::JidSingle => "jid-single",
        FieldType::ListMulti => "list-multi",
        FieldType::ListSingle => "list-single",
        FieldType::TextMulti => "text-multi",
        FieldType::TextPrivate => "text-private",
        FieldType::TextSingle => "text-single",
    }
}

/// The single value of a field, `None` when it has none; more than one is an error.
pub(crate) fn single(field: &Field) -> Result<Option<&str>, String> {
    match field.values.as_slice() {
        [] => Ok(None),
        [value] => Ok(Some(value.as_str())),
        _ => Err(format!("field '{}' takes a single value", var(field))),
    }
}

/// A boolean field: `1`/`true` or `0`/`false`; no value means false (XEP-0004 §3.3).
pub(crate) fn boolean(field: &Field) -> Result<bool, String> {
    check_type(field, FieldType::Boolean)?;
    match single(field)? {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(format!("field '{}' is boolean, got '{other}'", var(field))),
    }
}

/// Builds a boolean field carrying `value`.
pub(crate) fn bool_field(var: &str, label: &str, value: bool) -> Field {
    let mut field = labelled(var, FieldType::Boolean, label);
    field.values.push(if value { "1" } else { "0" }.to_owned());
    field
}

/// Builds a text-single field carrying `value`, if any.
pub(crate) fn text_field(var: &str, label: &str, value: Option<&str>) -> Field {
    let mut field = labelled(var, FieldType::TextSingle, label);
    field.values.extend(value.map(str::to_owned));
    field
}

/// Builds a list-single field offering `options` (value, label) with `value` selected.
pub(crate) fn list_single_field(
    var: &str,
    label: &str,
    options: &[(&str, &str)],
    value: &str,
) -> Field {
    let mut field = labelled(var, FieldType::ListSingle, label);
    field.options = options
        .iter()
        .map(|(value, label)| Option_ {
            label: Some((*label).to_owned()),
            value: (*value).to_owned(),
        })
        .collect();
    field.values.push(value.to_owned());
    field
}

/// Builds a field of type `type_` with several values.
pub(crate) fn multi_field(var: &str, type_: FieldType, label: &str, values: Vec<String>) -> Field {
    let mut field = labelled(var, type_, label);
    field.values = values;
    field
}

fn labelled(var: &str, type_: FieldType, label: &str) -> Field {
    let mut field = Field::new(var, type_);
    field.label = Some(label.to_owned());
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: Vec<Field>) -> DataForm {
        DataForm::new(DataFormType::Submit, "urn:example:form", fields)
    }

    fn raw(var: &str, values: &[&str]) -> Field {
        let mut f = Field::new(var, FieldType::TextSingle);
        f.values = values.iter().map(|v| (*v).to_owned()).collect();
        f
    }

    #[test]
    fn booleans_accept_the_four_xep_0004_spellings() {
        assert_eq!(boolean(&raw("b", &["1"])), Ok(true));
        assert_eq!(boolean(&raw("b", &["true"])), Ok(true));
        assert_eq!(boolean(&raw("b", &["0"])), Ok(false));
        assert_eq!(boolean(&raw("b", &["false"])), Ok(false));
        assert_eq!(boolean(&raw("b", &[])), Ok(false));
        assert!(boolean(&raw("b", &["yes"])).is_err());
        assert!(boolean(&raw("b", &["1", "0"])).is_err());
    }

    #[test]
    fn a_field_declared_with_a_contradicting_type_is_rejected() {
        let mut f = raw("b", &["1"]);
        f.type_ = FieldType::JidMulti;
        assert!(boolean(&f).is_err());
        f.type_ = FieldType::Boolean;
        assert_eq!(boolean(&f), Ok(true));
    }

    #[test]
    fn submitted_fields_skips_form_type_and_rejects_duplicates() {
        let form = submit(vec![raw("a", &["1"]), raw("b", &["2"])]);
        let vars: Vec<_> = submitted_fields(&form, "urn:example:form")
            .unwrap()
            .into_iter()
            .map(var)
            .collect();
        assert_eq!(vars, ["a", "b"]);

        let dup = submit(vec![raw("a", &["1"]), raw("a", &["2"])]);
        assert!(matches!(
            submitted_fields(&dup, "urn:example:form"),
            Err(DomainError::BadRequest(_))
        ));
    }

    #[test]
    fn submitted_fields_rejects_other_form_types_and_non_submissions() {
        let form = submit(vec![]);
        assert!(submitted_fields(&form, "urn:other").is_err());
        let result = DataForm::new(DataFormType::Result_, "urn:example:form", vec![]);
        assert!(submitted_fields(&result, "urn:example:form").is_err());
    }

    #[test]
    fn submitted_fields_tolerates_a_missing_form_type() {
        let form = DataForm {
            type_: DataFormType::Submit,
            title: None,
            instructions: None,
            fields: vec![raw("a", &["1"])],
        };
        assert_eq!(
            submitted_fields(&form, "urn:example:form").unwrap().len(),
            1
        );
    }
}
