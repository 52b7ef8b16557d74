//! GitHub's own OpenAPI description of the calls Backspace makes
//! (`../shared/fixtures/github-openapi-subset.deref.json`): the fake answers with its examples as
//! templates, and tests check every request and answer against its schemas (method, path,
//! required parameters and body fields, types, enums).

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// Where the shared fixtures live.
pub fn fixtures_dir() -> PathBuf {
    super::super::fixtures::shared_fixtures_dir()
}

fn load(path: &std::path::Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The dereferenced subset, loaded once per test binary, with the operations it lacks (the
/// Checks API, `GET /users/{username}`, a review's comments) from
/// `tests/fixtures/github-openapi-extra.json`, transcribed from GitHub's REST reference.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut spec = load(&fixtures_dir().join("github-openapi-subset.deref.json"));
        let extra = load(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github-openapi-extra.json"),
        );
        if let (Some(paths), Some(more)) =
            (spec["paths"].as_object_mut(), extra["paths"].as_object())
        {
            for (template, item) in more {
                paths
                    .entry(template.clone())
                    .or_insert_with(|| item.clone());
            }
        }
        spec
    })
}

/// Matches a concrete path against a template; `{path}` as the last segment takes the rest.
pub fn match_template(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = Vec::new();
    for (i, seg) in t.iter().enumerate() {
        let last = i + 1 == t.len();
        if seg.starts_with('{') && seg.ends_with('}') {
            let name = seg[1..seg.len() - 1].to_string();
            if last && name == "path" {
                if p.len() <= i {
                    return None;
                }
                params.push((name, p[i..].join("/")));
                return Some(params);
            }
            let v = p.get(i)?;
            if v.is_empty() {
                return None;
            }
            params.push((name, (*v).to_string()));
        } else if p.get(i) != Some(seg) {
            return None;
        }
    }
    (p.len() == t.len()).then_some(params)
}

/// The operation (its path template) of a request, if the subset describes it. Templates with
/// fewer parameters win (`issues/comments/{id}` over `issues/{number}/comments`).
pub fn operation_for(method: &str, path: &str) -> Option<(String, &'static Value)> {
    let paths = spec().get("paths")?.as_object()?;
    let mut found: Vec<(usize, &String, &Value)> = paths
        .iter()
        .filter_map(|(template, item)| {
            let op = item.get(method.to_ascii_lowercase())?;
            let params = match_template(template, path)?;
            Some((params.len(), template, op))
        })
        .collect();
    found.sort_by_key(|(n, _, _)| *n);
    found.first().map(|(_, t, op)| ((*t).clone(), *op))
}

/// The example of an operation's answer with `status`: the one named `default`, else the only
/// one.
pub fn example(method: &str, template: &str, status: u16) -> Value {
    example_named(method, template, status, "default")
}

/// A named example of an operation's answer (falls back to the first by name).
pub fn example_named(method: &str, template: &str, status: u16, name: &str) -> Value {
    let op = &spec()["paths"][template][method.to_ascii_lowercase()];
    let examples = &op["responses"][status.to_string()]["content"]["application/json"]["examples"];
    examples
        .get(name)
        .or_else(|| examples.as_object().and_then(|m| m.values().next()))
        .map(|e| e["value"].clone())
        .unwrap_or_else(|| panic!("no example for {method} {template} {status}"))
}

/// The schema of an operation's answer with `status`.
pub fn response_schema(method: &str, template: &str, status: u16) -> Option<&'static Value> {
    let s = spec()["paths"][template][method.to_ascii_lowercase()]["responses"][status.to_string()]
        ["content"]["application/json"]
        .get("schema")?;
    Some(s)
}

/// Everything wrong with a request against the subset: unknown operation, missing required
/// query parameters, a body that does not fit the schema (required fields, types, enums).
pub fn check_request(method: &str, path: &str, query: &str, body: Option<&Value>) -> Vec<String> {
    let Some((template, op)) = operation_for(method, path) else {
        return vec![format!(
            "{method} {path} is not an operation of the OpenAPI subset"
        )];
    };
    let mut errors = Vec::new();
    let query_names: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("");
        if p["in"] == "query" && p["required"] == true && !query_names.iter().any(|q| q == name) {
            errors.push(format!(
                "{method} {template}: missing query parameter {name}"
            ));
        }
    }
    for q in &query_names {
        let known = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["in"] == "query" && p["name"] == q.as_str());
        if !known {
            errors.push(format!("{method} {template}: unknown query parameter {q}"));
        }
    }
    let body_schema = op["requestBody"]["content"]["application/json"].get("schema");
    match (body_schema, body) {
        (Some(schema), Some(body)) => {
            validate(
                body,
                schema,
                &format!("{method} {template} body"),
                &mut errors,
            );
            // GitHub ignores unknown fields; a field it does not know is a bug on our side.
            if let (Some(props), Some(obj)) = (schema["properties"].as_object(), body.as_object()) {
                for k in obj.keys() {
                    if !props.contains_key(k) {
                        errors.push(format!("{method} {template} body: unknown field {k}"));
                    }
                }
            }
        }
        (Some(_), None) if op["requestBody"]["required"] == true => {
            errors.push(format!("{method} {template}: body required"));
        }
        _ => {}
    }
    errors
}

/// Everything wrong with an answer against the operation's schema for its status.
pub fn check_response(method: &str, template: &str, status: u16, body: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    match response_schema(method, template, status) {
        Some(schema) => validate(
            body,
            schema,
            &format!("{method} {template} {status}"),
            &mut errors,
        ),
        None => errors.push(format!(
            "{method} {template}: no documented {status} answer"
        )),
    }
    errors
}

fn type_ok(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// A small JSON-schema check for OpenAPI 3.0: type (with `nullable`), required, properties,
/// items, enum, allOf / anyOf / oneOf (one matching branch is enough).
pub fn validate(value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema[key].as_array() {
            let ok = branches.iter().any(|b| {
                let mut e = Vec::new();
                validate(value, b, at, &mut e);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{at}: matches no branch of {key}"));
            }
            return;
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for b in all {
            validate(value, b, at, errors);
        }
    }
    if let Some(ty) = schema["type"].as_str() {
        if !type_ok(value, ty) {
            errors.push(format!("{at}: expected {ty}, got {value}"));
            return;
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(value) {
            errors.push(format!("{at}: {value} not in enum {values:?}"));
        }
    }
    if let Some(obj) = value.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = r.as_str() {
                if !obj.contains_key(name) {
                    errors.push(format!("{at}: missing required field {name}"));
                }
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, v) in obj {
                if let Some(s) = props.get(k) {
                    validate(v, s, &format!("{at}.{k}"), errors);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(v, items, &format!("{at}[{i}]"), errors);
        }
    }
}
