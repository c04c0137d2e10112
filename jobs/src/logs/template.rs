//! Message templates: a message with its variable words masked, so that
//! `order 1234 timed out after 30s` and `order 98 timed out after 5s` are
//! one kind of message, `order <*> timed out after <*>`.
//!
//! A word (text between spaces) that holds a digit is variable: ids,
//! counts, durations, addresses, hashes. The rest is kept as written,
//! lower and upper case alike, with runs of spaces made one.

/// The longest template kept, in bytes; longer ones are cut at a char
/// boundary.
pub const MAX_TEMPLATE_BYTES: usize = 256;

/// The placeholder of a variable word.
pub const VARIABLE: &str = "<*>";

/// The template of `message`.
pub fn template_of(message: &str) -> String {
    let mut template = String::with_capacity(message.len().min(MAX_TEMPLATE_BYTES));
    for word in message.split_whitespace() {
        if !template.is_empty() {
            template.push(' ');
        }
        if word.bytes().any(|b| b.is_ascii_digit()) {
            template.push_str(VARIABLE);
        } else {
            template.push_str(word);
        }
        if template.len() >= MAX_TEMPLATE_BYTES {
            let mut end = MAX_TEMPLATE_BYTES;
            while !template.is_char_boundary(end) {
                end -= 1;
            }
            template.truncate(end);
            break;
        }
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_words_are_masked_and_the_rest_kept() {
        assert_eq!(
            template_of("order 1234 timed out after 30s"),
            "order <*> timed out after <*>"
        );
        assert_eq!(
            template_of("order  98\ttimed out after 5s"),
            "order <*> timed out after <*>"
        );
        assert_eq!(
            template_of("unhandled NullReference in PricingEngine.compute (build 4711)"),
            "unhandled NullReference in PricingEngine.compute (build <*>"
        );
        assert_eq!(
            template_of("connect to 10.0.0.7:5432 refused, trace 9f8e7d6c"),
            "connect to <*> refused, trace <*>"
        );
        assert_eq!(
            template_of("payment declined by provider"),
            "payment declined by provider"
        );
        assert_eq!(template_of(""), "");
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let message = "é".repeat(400);
        let template = template_of(&message);
        assert!(template.len() <= MAX_TEMPLATE_BYTES);
        assert!(template.len() >= MAX_TEMPLATE_BYTES - 1);
        let words = "word ".repeat(200);
        assert!(template_of(&words).len() <= MAX_TEMPLATE_BYTES);
    }
}
