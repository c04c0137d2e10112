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
            Pos { line: estimate.prefix_line, column: 1 },
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
        parse()
    } else {
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("dag-yaml".to_owned())
                .stack_size(PARSER_STACK_BYTES)
                .spawn_scoped(scope, parse);
            match spawned {
                Ok(handle) => handle.join().and_then(|outcome| outcome),
                Err(err) => Ok(Err(LoadError::TopLevelMustBeMapping(Default::default())))
                    .map(|_: Result<Node, LoadError>| Err(err))
                    .and_then(|e| Ok(Err(e)))
                    .map(|_: Result<Node, std::io::Error>| unreachable_thread()),
            }
        })
    };

    match outcome {
        Ok(Ok(node)) => Ok(node),
        Ok(Err(err)) => Err(describe_load_error(&err)),
        Err(_) => Err((Pos { line: 1, column: 1 }, "the YAML parser failed on this file".into())),
    }
}
