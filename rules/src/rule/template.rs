//! The `summary:` sentence of a rule, with `{field.name}` placeholders.
//!
//! Parsed once at load. `{{` and `}}` write literal braces; an absent field
//! renders as `-`; a list renders as its elements joined by `, `.

use crate::Fields;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// A compiled summary template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Part>);

impl Template {
    /// Parses a template; the error says what is wrong.
    pub(crate) fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "unclosed `{{` in `{s}` (write `{{{{` for a brace)"
                                ));
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let name = name.trim();
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(format!("`{{{name}}}` is not a field name"));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Field(name.to_string()));
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` in `{s}` (write `}}}}` for a brace)"
                    ));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template(parts))
    }

    /// The names of its placeholders.
    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Field(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the placeholders from `fields`.
    pub(crate) fn render(&self, fields: &Fields) -> String {
        self.render_with(|f| fields.get(f))
    }

    /// Fills the placeholders with what `get` returns for their names.
    pub(crate) fn render_with<'v>(&self, get: impl Fn(&str) -> Option<&'v Value>) -> String {
        // Room for the text and a short value per placeholder, so that a
        // detection's summary is one allocation, not one per doubling.
        let room = self
            .0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Field(_) => 16,
            })
            .sum();
        let mut out = String::with_capacity(room);
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => match get(f) {
                    None | Some(Value::Null) => out.push('-'),
                    Some(v) => push_value(&mut out, v),
                },
            }
        }
        out
    }
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_value(out, item);
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_escapes_and_missing() {
        let t = Template::parse("Blocked {network.transport} from {source.ip} to port {destination.port} {{raw}} {flags} {nope}")
            .expect("valid");
        let fields: Fields = [
            ("network.transport", Value::from("tcp")),
            ("source.ip", Value::from("203.0.113.9")),
            ("destination.port", Value::from(22)),
            ("flags", serde_json::json!(["DF", "SYN"])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            t.render(&fields),
            "Blocked tcp from 203.0.113.9 to port 22 {raw} DF, SYN -"
        );
    }

    #[test]
    fn rejects_broken_templates() {
        assert!(Template::parse("a {b").is_err());
        assert!(Template::parse("a } b").is_err());
        assert!(Template::parse("a {} b").is_err());
        assert!(Template::parse("a {x y} b").is_err());
        assert_eq!(
            Template::parse("").map(|t| t.render(&crate::Fields::new())),
            Ok(String::new())
        );
    }
}
