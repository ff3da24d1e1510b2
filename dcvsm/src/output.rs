//! Printing results: the API's JSON response (pretty-printed, keys as the API spells them), or tables
//! with a few columns per object for people.

use serde_json::Value;

/// JSON text re-indented by two spaces, one member per line, keys in the order they were sent.
pub fn pretty(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|next| next.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// One column of a table: its heading and the JSON pointer of its cell in each row object.
pub type Column = (&'static str, &'static str);

/// The text of a cell: strings bare, missing values as `-`, lists joined with commas.
pub fn table_cell(value: Option<&Value>) -> String {
    cell(value)
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(text)) if text.is_empty() => "-".into(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                "-".into()
            } else {
                items.iter().map(|item| cell(Some(item))).collect::<Vec<_>>().join(",")
            }
        }
        Some(Value::Object(map)) => {
            map.iter().map(|(key, value)| format!("{key}={}", cell(Some(value)))).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

/// Aligned columns, two spaces apart, with a heading row; trailing spaces trimmed.
pub fn table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|row| columns.iter().map(|(_, pointer)| cell(row.pointer(pointer))).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(index, (heading, _))| {
            cells.iter().map(|row| row[index].chars().count()).chain([heading.len()]).max().unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(value, width)| format!("{value:<width$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(columns.iter().map(|(heading, _)| *heading).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The rows of the array at `pointer` (none when absent).
pub fn rows(value: &Value, pointer: &str) -> Vec<Value> {
    value.pointer(pointer).and_then(Value::as_array).cloned().unwrap_or_default()
}

/// A `SuccessfulList` / `UnsuccessfulList` answer as two titled tables (the second only when not empty).
pub fn lists(value: &Value, successful: &[Column], unsuccessful: &[Column]) -> String {
    let mut out = format!("Successful\n{}", table(&rows(value, "/SuccessfulList"), successful));
    let failed = rows(value, "/UnsuccessfulList");
    if !failed.is_empty() {
        out.push_str(&format!("\nUnsuccessful\n{}", table(&failed, unsuccessful)));
    }
    out
}

/// Columns of a session.
pub const SESSION: &[Column] = &[
    ("Id", "/Id"),
    ("Name", "/Name"),
    ("Owner", "/Owner"),
    ("Type", "/Type"),
    ("State", "/State"),
    ("Server", "/Server/Hostname"),
    ("Ip", "/Server/Ip"),
    ("Port", "/Server/Port"),
];

/// The columns a queued session adds after [`SESSION`] (Switchboard additions): where it stands, with
/// the estimated start.
pub const QUEUE_COLUMNS: &[Column] = &[
    ("QueuePosition", "/QueuePosition"),
    ("QueueLength", "/QueueLength"),
    ("QueueEstimatedStartTime", "/QueueEstimatedStartTime"),
];

/// The session columns for `rows`: [`SESSION`], and [`QUEUE_COLUMNS`] only when one of them is queued.
pub fn session_columns(rows: &[Value]) -> Vec<Column> {
    let queued = rows.iter().any(|row| row.get("QueuePosition").is_some());
    let extra = if queued { QUEUE_COLUMNS } else { &[] };
    SESSION.iter().chain(extra).copied().collect()
}

/// Columns of a server.
pub const SERVER: &[Column] = &[
    ("Id", "/Id"),
    ("Hostname", "/Hostname"),
    ("Ip", "/Ip"),
    ("Port", "/Port"),
    ("Availability", "/Availability"),
    ("UnavailabilityReason", "/UnavailabilityReason"),
    ("Console", "/ConsoleSessionCount"),
    ("Virtual", "/VirtualSessionCount"),
    ("Os", "/Host/Os/Family"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pretty_json_keeps_the_key_order_and_the_strings() {
        let raw = r#"{"Zed":1,"Alpha":{"B":[],"A":{}},"S":"a, \"b\": [c]","L":[1, 2]}"#;
        let expected = "{\n  \"Zed\": 1,\n  \"Alpha\": {\n    \"B\": [],\n    \"A\": {}\n  },\n  \
                        \"S\": \"a, \\\"b\\\": [c]\",\n  \"L\": [\n    1,\n    2\n  ]\n}\n";
        assert_eq!(pretty(raw), expected);
        let reparsed: Value = serde_json::from_str(&pretty(raw)).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<Value>(raw).unwrap());
    }

    #[test]
    fn session_tables_show_the_queue_only_when_a_session_is_queued() {
        let ready = json!({"Id": "a", "State": "READY"});
        assert_eq!(session_columns(std::slice::from_ref(&ready)), SESSION);
        let queued = json!({"Id": "b", "State": "CREATING", "QueuePosition": 2, "QueueLength": 3});
        let rows = [ready, queued];
        let columns = session_columns(&rows);
        assert!(columns.starts_with(SESSION) && columns.ends_with(QUEUE_COLUMNS), "the usual columns first");
        let out = table(&rows, &columns);
        assert!(out.lines().nth(2).is_some_and(|line| line.ends_with("2              3            -")), "{out}");
    }

    #[test]
    fn tables_align_and_show_missing_cells_as_dashes() {
        let rows = vec![json!({"Id": "a", "Tags": ["x", "y"]}), json!({"Id": "longer", "N": 3})];
        let out = table(&rows, &[("Id", "/Id"), ("N", "/N"), ("Tags", "/Tags")]);
        assert_eq!(out, "Id      N  Tags\na       -  x,y\nlonger  3  -\n");
    }
}
