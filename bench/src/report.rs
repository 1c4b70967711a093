//! Output: a scenario's result as JSON (`--json`) or as a two-column table
//! for people, both from the same serialisable value.

use serde::Serialize;
use serde_json::Value;

/// Prints `report` as one JSON line or as an aligned table.
pub fn print<T: Serialize>(report: &T, json: bool) -> anyhow::Result<()> {
    let value = serde_json::to_value(report)?;
    if json {
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    flatten("", &value, &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}

fn flatten(prefix: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, inner, rows);
            }
        }
        Value::Null => {}
        Value::Number(n) => rows.push((prefix.to_string(), format_number(n))),
        Value::String(s) => rows.push((prefix.to_string(), s.clone())),
        other => rows.push((prefix.to_string(), other.to_string())),
    }
}

fn format_number(n: &serde_json::Number) -> String {
    match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => u.to_string(),
        (None, Some(f)) if f.abs() >= 100.0 => format!("{f:.0}"),
        (None, Some(f)) => format!("{f:.3}"),
        _ => n.to_string(),
    }
}

/// Rounds for output: three decimals are plenty for rates and seconds.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_nested_objects_and_skips_nulls() {
        let v = serde_json::json!({"a": {"b": 1, "c": null}, "d": "x", "e": 0.5});
        let mut rows = Vec::new();
        flatten("", &v, &mut rows);
        assert_eq!(
            rows,
            vec![
                ("a.b".to_string(), "1".to_string()),
                ("d".to_string(), "x".to_string()),
                ("e".to_string(), "0.500".to_string())
            ]
        );
    }
}
