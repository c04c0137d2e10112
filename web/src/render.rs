//! The page templates (`templates/web/*.hbs`, built into the binary) and
//! the helpers they use. Every `{{value}}` is HTML-escaped; no template
//! uses the unescaped `{{{…}}}` form, so text from DAG files, logs and users
//! always renders as text.

use axum::response::Html;
use handlebars::{Handlebars, handlebars_helper};
use rust_embed::RustEmbed;
use serde::Serialize;

use crate::WebError;

#[derive(RustEmbed)]
#[folder = "../templates/web"]
struct TemplateFiles;

/// The compiled templates.
pub struct Templates {
    registry: Handlebars<'static>,
}

handlebars_helper!(time: |value: Json| format_time(value));
handlebars_helper!(duration: |ms: Json| format_duration(ms.as_i64()));
handlebars_helper!(pretty_json: |value: Json| {
    serde_json::to_string_pretty(value).unwrap_or_default()
});

impl Templates {
    /// Compiles every template. Strict mode makes a misspelt variable an
    /// error instead of an empty string.
    ///
    /// Fails when a template does not compile.
    pub fn load() -> Result<Templates, WebError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry
            .register_embed_templates_with_extension::<TemplateFiles>(".hbs")
            .map_err(|err| WebError::Internal(format!("template: {err}")))?;
        registry.register_helper("time", Box::new(time));
        registry.register_helper("duration", Box::new(duration));
        registry.register_helper("pretty_json", Box::new(pretty_json));
        Ok(Templates { registry })
    }

    /// Renders the page `name` with `data`.
    ///
    /// Fails when the data lacks a variable the template uses.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<Html<String>, WebError> {
        Ok(Html(self.registry.render(name, data)?))
    }
}

/// `2026-12-04 05:00:00` from a JSON time (RFC 3339 text), or `—` when
/// absent. Times are UTC.
fn format_time(value: &serde_json::Value) -> String {
    match value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => "—".to_owned(),
    }
}

/// A duration in milliseconds as people read it: `850 ms`, `12.3 s`,
/// `4 min 05 s`, `2 h 10 min`.
pub fn format_duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "—".to_owned();
    };
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(format_duration(Some(850)), "850 ms");
        assert_eq!(format_duration(Some(12_340)), "12.3 s");
        assert_eq!(format_duration(Some(245_000)), "4 min 05 s");
        assert_eq!(format_duration(Some(7_800_000)), "2 h 10 min");
        assert_eq!(format_duration(None), "—");
    }

    #[test]
    fn times_are_shown_in_utc_to_the_second() {
        let t = serde_json::json!("2026-12-04T06:30:15.123+01:00");
        assert_eq!(format_time(&t), "2026-12-04 05:30:15");
        assert_eq!(format_time(&serde_json::Value::Null), "—");
    }
}
