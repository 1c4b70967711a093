//! Printing admin results: aligned columns for people, JSON for scripts.

use serde_json::Value;

/// Where and how results are printed.
pub(crate) struct Output {
    pub json: bool,
}

impl Output {
    /// Prints rows under `headers`, or the same as a JSON array of objects.
    pub fn table(&self, headers: &[&str], rows: Vec<Vec<String>>) {
        if self.json {
            let list: Vec<Value> = rows
                .iter()
                .map(|r| {
                    Value::Object(
                        headers
                            .iter()
                            .zip(r)
                            .map(|(h, v)| ((*h).to_owned(), Value::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            println!("{}", Value::Array(list));
            return;
        }
        print!("{}", render_table(headers, &rows));
    }

    /// Prints key/value pairs, or a JSON object.
    pub fn record(&self, pairs: Vec<(&str, Value)>) {
        if self.json {
            let map = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            println!("{}", Value::Object(map));
            return;
        }
        let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in pairs {
            let text = match v {
                Value::String(s) => s,
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            println!("{k:width$}  {text}");
        }
    }

    /// A one-line confirmation (or `{"ok": true, ...}`).
    pub fn done(&self, message: &str) {
        if self.json {
            println!("{}", serde_json::json!({"ok": true, "message": message}));
        } else {
            println!("{message}");
        }
    }
}

/// Left-aligned columns separated by two spaces.
pub(crate) fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render_table(
            &["node", "items"],
            &[
                vec!["a".into(), "10".into()],
                vec!["longer".into(), "2".into()],
            ],
        );
        assert_eq!(t, "node    items\na       10\nlonger  2\n");
    }
}
