//! The served OpenAPI document: the official DCV Session Manager definition
//! (`api/dcv-session-manager-api.yaml`, verbatim) deep-merged with
//! Switchboard's documented additions (`api/additions.yaml`), and the
//! machine check that the result is still compatible with the official file.
//!
//! Merging only adds: a key already in the official document keeps its
//! official value, maps are merged recursively. [`compatibility`] then checks
//! what a generated client relies on — every official path, operation
//! (method, operationId, tags, parameters, request body), schema and field is
//! present with the same type, format, `$ref` and item type.

use std::sync::OnceLock;

use serde_norway::{Mapping, Value};

/// The official definition, byte for byte.
pub const OFFICIAL: &str = include_str!("../api/dcv-session-manager-api.yaml");
/// Switchboard's additions.
pub const ADDITIONS: &str = include_str!("../api/additions.yaml");

/// Parses a YAML document.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_norway::from_str(text).map_err(|error| format!("invalid YAML: {error}"))
}

/// Adds every key of `extra` missing from `base`; maps present in both merge recursively.
pub fn merge(base: &mut Value, extra: &Value) {
    if let (Value::Mapping(base), Value::Mapping(extra)) = (base, extra) {
        for (key, value) in extra {
            match base.get_mut(key) {
                Some(existing) => merge(existing, value),
                None => {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
    }
}

/// The merged document.
pub fn merged() -> Result<Value, String> {
    let mut document = parse(OFFICIAL)?;
    merge(&mut document, &parse(ADDITIONS)?);
    Ok(document)
}

/// The served YAML text, built once.
pub fn served_yaml() -> Result<&'static str, String> {
    static SERVED: OnceLock<Result<String, String>> = OnceLock::new();
    SERVED
        .get_or_init(|| {
            let document = merged()?;
            serde_norway::to_string(&document).map_err(|error| format!("cannot write YAML: {error}"))
        })
        .as_ref()
        .map(String::as_str)
        .map_err(Clone::clone)
}

/// What [`compatibility`] looked at and what it found wrong.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Official paths checked.
    pub paths: usize,
    /// Official operations checked.
    pub operations: usize,
    /// Official schemas checked.
    pub schemas: usize,
    /// Official schema fields (properties) checked.
    pub fields: usize,
    /// Official parameters checked.
    pub parameters: usize,
    /// Every incompatibility, one line each.
    pub problems: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} paths, {} operations, {} parameters, {} schemas, {} fields checked: ",
            self.paths, self.operations, self.parameters, self.schemas, self.fields
        )?;
        if self.problems.is_empty() {
            write!(f, "all present and compatible")
        } else {
            write!(f, "{} problems:\n  {}", self.problems.len(), self.problems.join("\n  "))
        }
    }
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|map| map.get(key))
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get(value, key).and_then(Value::as_str)
}

fn mapping(value: Option<&Value>) -> Mapping {
    value.and_then(Value::as_mapping).cloned().unwrap_or_default()
}

/// Compares the type-defining keys of two schema fragments.
fn compare_schema(what: &str, official: &Value, served: &Value, problems: &mut Vec<String>) {
    for key in ["type", "format", "$ref"] {
        if text(official, key) != text(served, key) {
            problems.push(format!(
                "{what}: {key} is {:?} in the official file but {:?} in the served spec",
                text(official, key),
                text(served, key)
            ));
        }
    }
    if let Some(items) = get(official, "items") {
        match get(served, "items") {
            Some(served_items) => compare_schema(&format!("{what}[]"), items, served_items, problems),
            None => problems.push(format!("{what}: array items missing")),
        }
    }
}

fn body_schema(operation: &Value) -> Option<&Value> {
    get(operation, "requestBody")
        .and_then(|body| get(body, "content"))
        .and_then(|content| get(content, "application/json"))
        .and_then(|json| get(json, "schema"))
}

/// Checks that `served` keeps everything of `official` a client relies on.
pub fn compatibility(official: &Value, served: &Value) -> Report {
    let mut report = Report::default();
    let problems = &mut report.problems;
    let served_paths = mapping(get(served, "paths"));
    for (path, operations) in mapping(get(official, "paths")) {
        report.paths += 1;
        let path_name = path.as_str().unwrap_or_default().to_owned();
        let Some(served_operations) = served_paths.get(&path) else {
            problems.push(format!("path {path_name} missing"));
            continue;
        };
        for (method, operation) in mapping(Some(&operations)) {
            report.operations += 1;
            let method_name = method.as_str().unwrap_or_default().to_uppercase();
            let what = format!("{method_name} {path_name}");
            let Some(served_operation) = get(served_operations, method.as_str().unwrap_or_default()) else {
                problems.push(format!("{what}: operation missing"));
                continue;
            };
            for key in ["operationId", "tags", "security"] {
                if get(&operation, key) != get(served_operation, key) {
                    problems.push(format!("{what}: {key} differs"));
                }
            }
            let official_required = get(&operation, "requestBody").and_then(|b| get(b, "required"));
            let served_required = get(served_operation, "requestBody").and_then(|b| get(b, "required"));
            if official_required != served_required {
                problems.push(format!("{what}: requestBody.required differs"));
            }
            match (body_schema(&operation), body_schema(served_operation)) {
                (Some(official_body), Some(served_body)) => {
                    compare_schema(&format!("{what} body"), official_body, served_body, problems)
                }
                (Some(_), None) => problems.push(format!("{what}: request body missing")),
                _ => {}
            }
            let served_parameters = get(served_operation, "parameters").and_then(Value::as_sequence);
            for parameter in get(&operation, "parameters").and_then(Value::as_sequence).into_iter().flatten() {
                report.parameters += 1;
                let name = text(parameter, "name");
                let found = served_parameters
                    .into_iter()
                    .flatten()
                    .find(|p| text(p, "name") == name && text(p, "in") == text(parameter, "in"));
                match found {
                    Some(found) => {
                        if get(found, "required") != get(parameter, "required") {
                            problems.push(format!("{what}: parameter {name:?} required differs"));
                        }
                        let (a, b) = (get(parameter, "schema"), get(found, "schema"));
                        match (a, b) {
                            (Some(a), Some(b)) => compare_schema(&format!("{what} parameter {name:?}"), a, b, problems),
                            (Some(_), None) => problems.push(format!("{what}: parameter {name:?} schema missing")),
                            _ => {}
                        }
                    }
                    None => problems.push(format!("{what}: parameter {name:?} missing")),
                }
            }
            let served_responses = mapping(get(served_operation, "responses"));
            for (status, response) in mapping(get(&operation, "responses")) {
                let Some(served_response) = served_responses.get(&status) else {
                    problems.push(format!("{what}: response {status:?} missing"));
                    continue;
                };
                let schema = |r: &Value| {
                    get(r, "content").and_then(|c| get(c, "application/json")).and_then(|j| get(j, "schema")).cloned()
                };
                if let Some(official_schema) = schema(&response) {
                    match schema(served_response) {
                        Some(served_schema) => compare_schema(
                            &format!("{what} response {}", status.as_str().unwrap_or_default()),
                            &official_schema,
                            &served_schema,
                            problems,
                        ),
                        None => problems.push(format!("{what}: response {status:?} lost its body")),
                    }
                }
            }
        }
    }
    let served_schemas = mapping(get(served, "components").and_then(|c| get(c, "schemas")));
    let official_schemas = mapping(get(official, "components").and_then(|c| get(c, "schemas")));
    for (name, schema) in official_schemas {
        report.schemas += 1;
        let schema_name = name.as_str().unwrap_or_default().to_owned();
        let Some(served_schema) = served_schemas.get(&name) else {
            problems.push(format!("schema {schema_name} missing"));
            continue;
        };
        compare_schema(&format!("schema {schema_name}"), &schema, served_schema, problems);
        let served_properties = mapping(get(served_schema, "properties"));
        for (field, definition) in mapping(get(&schema, "properties")) {
            report.fields += 1;
            let field_name = format!("{schema_name}.{}", field.as_str().unwrap_or_default());
            match served_properties.get(&field) {
                Some(served_definition) => compare_schema(&field_name, &definition, served_definition, problems),
                None => problems.push(format!("field {field_name} missing")),
            }
        }
    }
    let schemes = |doc: &Value| get(doc, "components").and_then(|c| get(c, "securitySchemes")).cloned();
    if schemes(official) != schemes(served) {
        problems.push("components.securitySchemes differ".to_owned());
    }
    if get(official, "security") != get(served, "security") {
        problems.push("top-level security differs".to_owned());
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_keys_and_never_replaces_official_values() {
        let mut base = parse("a: 1\nm:\n  x: keep\n").unwrap();
        merge(&mut base, &parse("a: 2\nb: 3\nm:\n  x: replaced\n  y: added\n").unwrap());
        assert_eq!(base, parse("a: 1\nb: 3\nm:\n  x: keep\n  y: added\n").unwrap());
    }

    #[test]
    fn the_check_finds_removed_and_retyped_fields() {
        let official = parse(OFFICIAL).unwrap();
        let mut broken = official.clone();
        let schemas = broken["components"]["schemas"].as_mapping_mut().unwrap();
        schemas.get_mut("Server").unwrap()["properties"]["Port"]["type"] = Value::from("integer");
        schemas.get_mut("Session").unwrap()["properties"].as_mapping_mut().unwrap().remove("Owner");
        broken["paths"].as_mapping_mut().unwrap().remove("/openServers");
        broken["paths"]["/describeSessions"]["post"]["operationId"] = Value::from("listSessions");
        let report = compatibility(&official, &broken);
        let text = report.problems.join("\n");
        assert!(
            text.contains("Server.Port: type is Some(\"string\") in the official file but Some(\"integer\")"),
            "{text}"
        );
        assert!(text.contains("field Session.Owner missing"), "{text}");
        assert!(text.contains("path /openServers missing"), "{text}");
        assert!(text.contains("POST /describeSessions: operationId differs"), "{text}");
        assert_eq!(report.problems.len(), 4, "{text}");
    }
}
