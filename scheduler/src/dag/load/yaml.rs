//! Turning text into a YAML node tree without letting a hostile file crash
//! the process.
//!
//! The YAML parser recurses once per nesting level, so a line such as
//! `- - - - ...` repeated thousands of times would overflow the stack. Lines
//! indented or nested past [`MAX_LINE_PREFIX`] columns are refused, and a file
//! that might nest deeply is parsed on a thread with a large stack.

use std::panic::{AssertUnwindSafe, catch_unwind};

use marked_yaml::{LoadError, LoaderOptions, Node};

use super::node::Pos;

/// Most columns of indentation and block indicators (`- `, `? `, `: `) a line
/// may start with.
const MAX_LINE_PREFIX: usize = 128;

/// Files that may nest deeper than this are parsed on their own thread.
const INLINE_NESTING: usize = 32;

/// Stack of that thread; a few kilobytes per level are plenty for the at most
/// `MAX_LINE_PREFIX` block levels plus 255 flow levels the parser allows.
const PARSER_STACK_BYTES: usize = 32 << 20;

/// Parses a DAG file's text; the error says where and what is wrong.
pub(super) fn parse(source: &str) -> Result<Node, (Pos, String)> {
    let estimate = estimate_nesting(source);
    if estimate.prefix > MAX_LINE_PREFIX {
        return Err((
            Pos {
                line: estimate.prefix_line,
                column: 1,
            },
            format!(
                "line {} is indented or nested more than {MAX_LINE_PREFIX} columns deep",
                estimate.prefix_line
            ),
        ));
    }

    let options = || {
        LoaderOptions::default()
            .prevent_coercion(true)
            .error_on_duplicate_keys(true)
    };
    // The parser has `unreachable!()` arms; should one be reached, the file
    // is reported rather than the process brought down.
    let parse = || {
        catch_unwind(AssertUnwindSafe(|| {
            marked_yaml::parse_yaml_with_options(0, source, options())
        }))
    };
    let outcome = if estimate.prefix.max(estimate.brackets) <= INLINE_NESTING {
        parse().map_err(|_| PARSER_FAILED.to_owned())
    } else {
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("dag-yaml".to_owned())
                .stack_size(PARSER_STACK_BYTES)
                .spawn_scoped(scope, parse);
            match spawned.map(|handle| handle.join()) {
                Ok(Ok(Ok(result))) => Ok(result),
                Ok(_) => Err(PARSER_FAILED.to_owned()),
                Err(err) => Err(format!("cannot start the YAML parser: {err}")),
            }
        })
    };

    match outcome {
        Ok(Ok(node)) => Ok(node),
        Ok(Err(err)) => Err(describe_load_error(&err)),
        Err(message) => Err((Pos { line: 1, column: 1 }, message)),
    }
}

const PARSER_FAILED: &str = "the YAML parser failed on this file";

/// How deeply a file might nest, judged from its text.
struct Nesting {
    /// Longest run of indentation and block indicators starting a line.
    prefix: usize,
    /// The 1-based line where that run is.
    prefix_line: usize,
    /// How many `[` and `{` the text has, quoted or not: an upper bound on
    /// flow nesting, which the parser itself stops at 255 levels.
    brackets: usize,
}

fn estimate_nesting(source: &str) -> Nesting {
    let mut nesting = Nesting {
        prefix: 0,
        prefix_line: 1,
        brackets: 0,
    };
    // YAML also breaks lines at a lone `\r`; numbering follows `\n` only.
    for (i, line) in source.split('\n').enumerate() {
        let prefix = line.split('\r').map(line_prefix).max().unwrap_or(0);
        if prefix > nesting.prefix {
            nesting.prefix = prefix;
            nesting.prefix_line = i + 1;
        }
    }
    nesting.brackets = source.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    nesting
}

/// Columns of spaces, tabs and `-`, `?` or `:` indicators (each followed by
/// a blank or the end of the line) that start `line`.
fn line_prefix(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut n = 0;
    while let Some(&b) = bytes.get(n) {
        let blank_after = matches!(bytes.get(n + 1), None | Some(b' ' | b'\t'));
        match b {
            b' ' | b'\t' => n += 1,
            b'-' | b'?' | b':' if blank_after => n += 1,
            _ => break,
        }
    }
    n
}

/// Position and message of a YAML syntax error.
fn describe_load_error(err: &LoadError) -> (Pos, String) {
    let pos = |m: &marked_yaml::Marker| Pos {
        line: m.line().max(1),
        column: m.column().max(1),
    };
    match err {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
            pos(m),
            "a DAG file must be a mapping of keys such as `dag_id`".to_owned(),
        ),
        LoadError::UnexpectedAnchor(m) => (
            pos(m),
            "YAML anchors and aliases are not supported in DAG files".to_owned(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (pos(m), "mapping keys must be plain strings".to_owned())
        }
        LoadError::UnexpectedTag(m) => (
            pos(m),
            "YAML tags are not supported in DAG files".to_owned(),
        ),
        LoadError::ScanError(m, scan) => (pos(m), format!("invalid YAML: {}", scan.info())),
        LoadError::DuplicateKey(dup) => {
            let first = Pos::of(dup.prev_key.span());
            (
                Pos::of(dup.key.span()),
                format!(
                    "duplicate key `{}`, first set on line {}",
                    dup.key.as_str(),
                    first.line
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_prefix_counts_indentation_and_block_indicators_only() {
        assert_eq!(line_prefix("    - - x"), 8);
        assert_eq!(line_prefix("? : -"), 5);
        assert_eq!(line_prefix("  ------"), 2);
        assert_eq!(line_prefix("  -x"), 2);
        assert_eq!(line_prefix("key: value"), 0);
    }

    #[test]
    fn deeply_indented_line_is_refused_before_parsing() {
        let source = format!("a:\n  {}x\n", "- ".repeat(100));
        let (pos, message) = parse(&source).expect_err("too deep");
        assert_eq!(pos, Pos { line: 2, column: 1 });
        assert!(message.contains("more than 128 columns"), "{message}");
    }

    #[test]
    fn deepest_allowed_file_parses_from_a_small_stack() {
        // Quoted closing brackets must not hide how deep the flow nests.
        let flow = r#"[ "]]", "#.repeat(250);
        let source = format!("a:\n{}{flow}x\n", "- ".repeat(64));
        let small = std::thread::Builder::new().stack_size(256 << 10);
        let outcome = small.spawn(move || parse(&source).map(super::super::node::drop_flat));
        let joined = outcome.expect("thread starts").join();
        assert!(
            joined.is_ok(),
            "parsing must not overflow the caller's stack"
        );
    }

    #[test]
    fn carriage_returns_do_not_hide_indentation() {
        let mut source = String::from("a:");
        for depth in 0..200 {
            source.push('\r');
            source.push_str(&" ".repeat(depth));
            source.push('-');
        }
        let (_, message) = parse(&source).expect_err("too deep");
        assert!(message.contains("more than 128 columns"), "{message}");
    }

    #[test]
    fn moderately_deep_file_parses_on_its_own_thread() {
        let source = format!("a:\n  {}x\n", "- ".repeat(60));
        assert!(parse(&source).is_ok());
    }
}
