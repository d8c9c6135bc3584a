//! Filling `.wgsl` templates: `{{NAME}}` slots replaced by named values. A slot left unfilled
//! or a value with no slot is an error, so a template and its filler cannot drift apart.

use super::CodegenError;

/// A template under construction: its name (for errors), source and slot values.
pub(super) struct Template {
    name: &'static str,
    source: &'static str,
    slots: Vec<(&'static str, String)>,
}

impl Template {
    pub fn new(name: &'static str, source: &'static str) -> Self {
        Template {
            name,
            source,
            slots: Vec::new(),
        }
    }

    /// Sets slot `{{key}}`.
    pub fn set(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.slots.push((key, value.into()));
        self
    }

    /// The filled source.
    pub fn render(self) -> Result<String, CodegenError> {
        let err = |message: String| CodegenError::Template {
            template: self.name.to_string(),
            message,
        };
        let mut out = String::with_capacity(self.source.len() + 256);
        let mut rest = self.source;
        let mut used = vec![false; self.slots.len()];
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| err("unterminated `{{`".into()))?;
            let key = &after[..end];
            let k = self
                .slots
                .iter()
                .position(|(name, _)| *name == key)
                .ok_or_else(|| err(format!("slot `{key}` was not filled")))?;
            used[k] = true;
            out.push_str(&self.slots[k].1);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        if let Some(k) = used.iter().position(|u| !u) {
            return Err(err(format!(
                "no slot `{}` in the template",
                self.slots[k].0
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_slots_and_rejects_drift() {
        let t = Template::new("t", "a {{X}} b {{Y}} {{X}}");
        assert_eq!(t.set("X", "1").set("Y", "2").render().unwrap(), "a 1 b 2 1");
        assert!(Template::new("t", "{{X}}").render().is_err());
        assert!(Template::new("t", "x").set("X", "1").render().is_err());
    }
}
