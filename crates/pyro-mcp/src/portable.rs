//! Tool schemas every client can read, and structured content that fits
//! them.
//!
//! `schemars` writes an optional field as `"type": ["string", "null"]` (or
//! `anyOf: [X, {"type": "null"}]`), and output fields that are always
//! serialised as required. Clients that map schemas onto a subset of JSON
//! Schema (several model providers' function calling) reject type arrays,
//! and the MCP Inspector warns about them. So every schema the server
//! lists is rewritten: a nullable property becomes its non-null type and
//! leaves `required`; and structured content drops its `null` values, so
//! an absent optional field is left out rather than null.

use serde_json::{Map, Value};

/// Rewrites `schema` (an object schema, with `$defs`) in place.
pub fn portable_schema(schema: &mut Map<String, Value>) {
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        let mut nullable = Vec::new();
        for (name, property) in properties.iter_mut() {
            if let Value::Object(property) = property {
                if strip_null(property) {
                    nullable.push(name.clone());
                }
            }
        }
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|name| !nullable.iter().any(|n| Some(n.as_str()) == name.as_str()));
        }
    }
    for value in schema.values_mut() {
        walk(value);
    }
}

fn walk(value: &mut Value) {
    match value {
        Value::Object(object) => portable_schema(object),
        Value::Array(items) => items.iter_mut().for_each(walk),
        _ => {}
    }
}

/// Makes one property schema non-nullable; true when it was nullable.
fn strip_null(property: &mut Map<String, Value>) -> bool {
    let mut was = false;
    if let Some(Value::Array(types)) = property.get("type").cloned() {
        let rest: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
        was = true;
        match rest.as_slice() {
            [one] => {
                property.insert("type".into(), one.clone());
            }
            _ => {
                property.insert("type".into(), Value::Array(rest));
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = property.get(key).cloned() {
            let rest: Vec<Value> = options
                .into_iter()
                .filter(|option| option.get("type").and_then(Value::as_str) != Some("null"))
                .collect();
            if rest.len() == 1 {
                was = true;
                property.remove(key);
                if let Value::Object(only) = &rest[0] {
                    for (k, v) in only {
                        property.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            } else if let Some(list) = property.get_mut(key) {
                *list = Value::Array(rest);
            }
        }
    }
    if let Some(Value::Array(values)) = property.get_mut("enum") {
        let before = values.len();
        values.retain(|v| !v.is_null());
        was |= values.len() != before;
    }
    if property.get("default") == Some(&Value::Null) {
        property.remove("default");
    }
    was
}

/// Drops every `null` member of the objects in `value`, recursively.
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.retain(|_, member| !member.is_null());
            object.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Whether `schema` still has a nullable or multi-type anywhere.
#[cfg(test)]
pub fn has_type_arrays_or_null(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().any(|(key, member)| {
            (key == "type" && (member.is_array() || member == "null"))
                || has_type_arrays_or_null(member)
        }),
        Value::Array(items) => items.iter().any(has_type_arrays_or_null),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_properties_lose_null_and_leave_required() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": ["string", "null"], "description": "d"},
                "state": {"anyOf": [{"$ref": "#/$defs/State"}, {"type": "null"}]},
                "kind": {"type": ["string", "null"], "enum": ["a", "b", null]},
                "count": {"type": "integer"}
            },
            "required": ["name", "count"],
            "$defs": {"State": {"type": "object", "properties": {
                "reason": {"type": ["string", "null"]}}}}
        });
        let Value::Object(object) = &mut schema else {
            unreachable!()
        };
        portable_schema(object);
        assert_eq!(
            schema["properties"]["name"],
            json!({"type": "string", "description": "d"})
        );
        assert_eq!(
            schema["properties"]["state"],
            json!({"$ref": "#/$defs/State"})
        );
        assert_eq!(schema["properties"]["kind"]["enum"], json!(["a", "b"]));
        assert_eq!(schema["required"], json!(["count"]));
        assert_eq!(
            schema["$defs"]["State"]["properties"]["reason"],
            json!({"type": "string"})
        );
        assert!(!has_type_arrays_or_null(&schema));
    }

    #[test]
    fn content_drops_nulls_at_every_depth() {
        let mut value = json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        drop_nulls(&mut value);
        assert_eq!(value, json!({"b": {"d": 1}, "e": [{}]}));
    }
}
