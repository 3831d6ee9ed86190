//! Typed parameter schemas: validation with field-level errors, defaults, and JSON Schema output.

use serde_json::{Map, Value, json};

/// The JSON type of a parameter.
#[derive(Debug, Clone)]
pub enum ParamKind {
    /// A JSON integer (no coercion from strings or floats).
    Integer,
    /// Any JSON number.
    Number,
    /// A string.
    String,
    /// true / false.
    Boolean,
    /// An array whose items are of the given kind.
    Array(Box<ParamKind>),
    /// An object with its own fields.
    Object(Vec<ParamSpec>),
}

/// Extra check on a string value; returns the rule name and message on failure.
pub type StringCheck = fn(&str) -> Result<(), (&'static str, String)>;

/// One parameter of a job type.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Field name.
    pub name: &'static str,
    /// Human description (shown in `GET /api/jobs/types`).
    pub description: &'static str,
    /// Type.
    pub kind: ParamKind,
    /// Whether the caller must supply it.
    pub required: bool,
    /// Value used when absent.
    pub default: Option<Value>,
    /// Inclusive minimum for numbers; minimum length for strings and arrays.
    pub min: Option<f64>,
    /// Inclusive maximum for numbers; maximum length for strings and arrays.
    pub max: Option<f64>,
    /// Allowed string values.
    pub allowed: Option<&'static [&'static str]>,
    /// Extra string check (e.g. Azure container naming rules).
    pub check: Option<StringCheck>,
    /// Whether the value takes part in the job id (tuning knobs such as delays do not).
    pub in_job_id: bool,
}

impl ParamSpec {
    /// A parameter with the given name and kind, optional, no default, part of the job id.
    pub const fn new(name: &'static str, kind: ParamKind, description: &'static str) -> Self {
        Self {
            name,
            description,
            kind,
            required: false,
            default: None,
            min: None,
            max: None,
            allowed: None,
            check: None,
            in_job_id: true,
        }
    }
    /// Marks it required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Sets the default.
    pub fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
    /// Sets the inclusive range (numbers) or length range (strings, arrays).
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    /// Sets the maximum (length or value).
    pub fn max(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }
    /// Restricts a string to the given values.
    pub fn allowed(mut self, values: &'static [&'static str]) -> Self {
        self.allowed = Some(values);
        self
    }
    /// Adds a string check.
    pub fn check(mut self, f: StringCheck) -> Self {
        self.check = Some(f);
        self
    }
    /// Leaves the parameter out of the job id.
    pub fn not_in_job_id(mut self) -> Self {
        self.in_job_id = false;
        self
    }
}

/// A validation failure on one field.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the field (`filter.min_size_mb`, `extensions[2]`).
    pub field: String,
    /// The rule that failed (`required`, `type`, `minimum`, `maximum`, `enum`, `unknown_field`, ...).
    pub rule: String,
    /// The value received (absent for `required`).
    pub value: Value,
    /// What is wrong, in words.
    pub message: String,
}

/// Default maximum length of a string parameter without its own maximum (4 KB).
pub const DEFAULT_MAX_STRING: usize = 4096;

/// Validates `input` (must be a JSON object) against `specs`; returns the parameters with defaults
/// applied, or every field error found.
pub fn validate(specs: &[ParamSpec], input: &Value) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let out = validate_object(specs, input, "", &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn err(field: String, rule: &str, value: &Value, message: String) -> FieldError {
    FieldError {
        field,
        rule: rule.into(),
        value: truncate_value(value),
        message,
    }
}

/// Keeps echoed values short (a 1 MB string is not sent back).
fn truncate_value(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > 200 => Value::String(format!(
            "{}… ({} bytes)",
            s.chars().take(100).collect::<String>(),
            s.len()
        )),
        Value::Array(a) if a.len() > 10 => Value::String(format!("array of {} items", a.len())),
        Value::Object(o) if o.len() > 10 => {
            Value::String(format!("object with {} fields", o.len()))
        }
        other => other.clone(),
    }
}

fn validate_object(
    specs: &[ParamSpec],
    input: &Value,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(obj) = input.as_object() else {
        errors.push(err(
            if prefix.is_empty() {
                "(body)".into()
            } else {
                prefix.into()
            },
            "type",
            input,
            "expected a JSON object".into(),
        ));
        return out;
    };
    for key in obj.keys() {
        if !specs.iter().any(|s| s.name == key) {
            let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
            errors.push(err(
                path(prefix, key),
                "unknown_field",
                &obj[key],
                format!("unknown parameter; known parameters: {}", known.join(", ")),
            ));
        }
    }
    for spec in specs {
        let field = path(prefix, spec.name);
        match obj.get(spec.name) {
            None | Some(Value::Null) => {
                if spec.required {
                    errors.push(FieldError {
                        field,
                        rule: "required".into(),
                        value: Value::Null,
                        message: "this parameter is required".into(),
                    });
                } else if let Some(d) = &spec.default {
                    out.insert(spec.name.to_string(), d.clone());
                }
            }
            Some(v) => {
                if let Some(valid) = validate_value(spec, &spec.kind, v, &field, errors) {
                    out.insert(spec.name.to_string(), valid);
                }
            }
        }
    }
    out
}

fn validate_value(
    spec: &ParamSpec,
    kind: &ParamKind,
    v: &Value,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Value> {
    let type_err = |errors: &mut Vec<FieldError>, expected: &str| {
        errors.push(err(field.into(), "type", v, format!("expected {expected}")));
        None
    };
    match kind {
        ParamKind::Integer => {
            let Some(n) = v.as_i64().filter(|_| v.is_i64() || v.is_u64()) else {
                return type_err(errors, "an integer");
            };
            check_range(spec, n as f64, v, field, errors).then(|| v.clone())
        }
        ParamKind::Number => {
            let Some(n) = v.as_f64() else {
                return type_err(errors, "a number");
            };
            check_range(spec, n, v, field, errors).then(|| v.clone())
        }
        ParamKind::Boolean => {
            if v.is_boolean() {
                Some(v.clone())
            } else {
                type_err(errors, "true or false")
            }
        }
        ParamKind::String => {
            let Some(s) = v.as_str() else {
                return type_err(errors, "a string");
            };
            let len = s.chars().count();
            let max = spec.max.map(|m| m as usize).unwrap_or(DEFAULT_MAX_STRING);
            if len > max {
                errors.push(err(
                    field.into(),
                    "max_length",
                    v,
                    format!("at most {max} characters, got {len}"),
                ));
                return None;
            }
            if let Some(min) = spec.min
                && (len as f64) < min
            {
                errors.push(err(
                    field.into(),
                    "min_length",
                    v,
                    format!("at least {min} characters"),
                ));
                return None;
            }
            if s.contains('\0') {
                errors.push(err(
                    field.into(),
                    "no_nul",
                    v,
                    "must not contain NUL characters".into(),
                ));
                return None;
            }
            if let Some(allowed) = spec.allowed
                && !allowed.contains(&s)
            {
                errors.push(err(
                    field.into(),
                    "enum",
                    v,
                    format!("must be one of: {}", allowed.join(", ")),
                ));
                return None;
            }
            if let Some(check) = spec.check
                && let Err((rule, msg)) = check(s)
            {
                errors.push(err(field.into(), rule, v, msg));
                return None;
            }
            Some(v.clone())
        }
        ParamKind::Array(item) => {
            let Some(a) = v.as_array() else {
                return type_err(errors, "an array");
            };
            if let Some(max) = spec.max
                && a.len() as f64 > max
            {
                errors.push(err(
                    field.into(),
                    "max_items",
                    v,
                    format!("at most {max} items"),
                ));
                return None;
            }
            let before = errors.len();
            let item_spec = ParamSpec {
                min: None,
                max: None,
                ..spec.clone()
            };
            let items: Vec<Value> = a
                .iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    validate_value(&item_spec, item, x, &format!("{field}[{i}]"), errors)
                })
                .collect();
            (errors.len() == before).then_some(Value::Array(items))
        }
        ParamKind::Object(fields) => {
            let before = errors.len();
            let m = validate_object(fields, v, field, errors);
            (errors.len() == before).then_some(Value::Object(m))
        }
    }
}

fn check_range(
    spec: &ParamSpec,
    n: f64,
    v: &Value,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> bool {
    if !n.is_finite() {
        errors.push(err(
            field.into(),
            "type",
            v,
            "expected a finite number".into(),
        ));
        return false;
    }
    if let Some(min) = spec.min
        && n < min
    {
        errors.push(err(field.into(), "minimum", v, format!("must be >= {min}")));
        return false;
    }
    if let Some(max) = spec.max
        && n > max
    {
        errors.push(err(field.into(), "maximum", v, format!("must be <= {max}")));
        return false;
    }
    true
}

/// The parameters that define the job's identity (those with `in_job_id`).
pub fn id_params(specs: &[ParamSpec], validated: &Map<String, Value>) -> Map<String, Value> {
    validated
        .iter()
        .filter(|(k, _)| specs.iter().any(|s| s.name == k.as_str() && s.in_job_id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// JSON Schema (2020-12) of a parameter list.
pub fn json_schema(specs: &[ParamSpec]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for s in specs {
        props.insert(s.name.to_string(), kind_schema(s, &s.kind));
        if s.required {
            required.push(Value::String(s.name.to_string()));
        }
    }
    json!({"type": "object", "properties": props, "required": required, "additionalProperties": false})
}

fn kind_schema(s: &ParamSpec, kind: &ParamKind) -> Value {
    let mut m = Map::new();
    if !s.description.is_empty() {
        m.insert("description".into(), json!(s.description));
    }
    match kind {
        ParamKind::Integer | ParamKind::Number => {
            m.insert(
                "type".into(),
                json!(if matches!(kind, ParamKind::Integer) {
                    "integer"
                } else {
                    "number"
                }),
            );
            if let Some(min) = s.min {
                m.insert("minimum".into(), json!(min));
            }
            if let Some(max) = s.max {
                m.insert("maximum".into(), json!(max));
            }
        }
        ParamKind::String => {
            m.insert("type".into(), json!("string"));
            m.insert(
                "maxLength".into(),
                json!(s.max.map(|x| x as usize).unwrap_or(DEFAULT_MAX_STRING)),
            );
            if let Some(min) = s.min {
                m.insert("minLength".into(), json!(min as usize));
            }
            if let Some(a) = s.allowed {
                m.insert("enum".into(), json!(a));
            }
        }
        ParamKind::Boolean => {
            m.insert("type".into(), json!("boolean"));
        }
        ParamKind::Array(item) => {
            m.insert("type".into(), json!("array"));
            let item_spec = ParamSpec {
                min: None,
                max: None,
                description: "",
                ..s.clone()
            };
            m.insert("items".into(), kind_schema(&item_spec, item));
            if let Some(max) = s.max {
                m.insert("maxItems".into(), json!(max as usize));
            }
        }
        ParamKind::Object(fields) => {
            let inner = json_schema(fields);
            if let Value::Object(o) = inner {
                m.extend(o);
            }
        }
    }
    if let Some(d) = &s.default {
        m.insert("default".into(), d.clone());
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("n", ParamKind::Integer, "")
                .range(1.0, 10.0)
                .default(json!(3)),
            ParamSpec::new("name", ParamKind::String, "").required(),
            ParamSpec::new("rate", ParamKind::Number, "")
                .range(0.0, 1.0)
                .default(json!(0)),
            ParamSpec::new(
                "filter",
                ParamKind::Object(vec![ParamSpec::new(
                    "exts",
                    ParamKind::Array(Box::new(ParamKind::String)),
                    "",
                )]),
                "",
            ),
        ]
    }

    #[test]
    fn defaults_applied_and_errors_name_the_field() {
        let ok = validate(&specs(), &json!({"name": "x"})).unwrap();
        assert_eq!(ok["n"], json!(3));
        let e = validate(
            &specs(),
            &json!({"n": "3", "rate": 2, "bogus": 1, "filter": {"exts": [1]}}),
        )
        .unwrap_err();
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.field.as_str(), e.rule.as_str()))
            .collect();
        assert!(got.contains(&("bogus", "unknown_field")), "{got:?}");
        assert!(got.contains(&("name", "required")));
        assert!(got.contains(&("n", "type")));
        assert!(got.contains(&("rate", "maximum")));
        assert!(got.contains(&("filter.exts[0]", "type")));
    }

    #[test]
    fn floats_are_not_integers_and_long_strings_are_refused() {
        assert!(validate(&specs(), &json!({"name": "x", "n": 2.5})).is_err());
        let long = "a".repeat(5000);
        let e = validate(&specs(), &json!({"name": long})).unwrap_err();
        assert_eq!(e[0].rule, "max_length");
        assert!(e[0].value.as_str().unwrap().len() < 300);
    }
}
