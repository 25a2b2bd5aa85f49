//! docs/performance.md as a title, an introduction and one block per bench step, each block between
//! `<!-- step:NAME -->` and `<!-- /step:NAME -->`, so that `cargo xtask bench --only NAME` rewrites
//! its own block and leaves the others' figures as they were.

use anyhow::{bail, Result};

/// The document's title and introduction, above the first step block.
pub const INTRO: &str = "\
# Performance

Written by `cargo xtask bench`; do not edit by hand, rerun the command. The document has one section \
per bench step: `mix_core`, `mix_data` and `train_step` time our kernels against their peers, \
`accuracy` trains mix-train and fastai's own `vision_learner` on the same images. `cargo xtask bench` \
runs every step and rewrites the whole document; `cargo xtask bench --only STEP` runs one step and \
rewrites only its section (between its `<!-- step:STEP -->` markers), so each section says when, on \
what machine and by which command it was measured. In the speed sections every figure comes from \
that section's run: our criterion bench (benches/benches) and then its peer script (benches/peers) on \
the same machine. Times are medians; a ratio above 1 in a side-by-side table means ours is faster; \
\"missing\" means the figure was not produced by that run (see the section's Problems).
";

/// `<!-- step:NAME -->`.
pub fn start_marker(step: &str) -> String {
    format!("<!-- step:{step} -->")
}

/// `<!-- /step:NAME -->`.
pub fn end_marker(step: &str) -> String {
    format!("<!-- /step:{step} -->")
}

/// A step's section between its markers, ending with a newline.
pub fn block(step: &str, section: &str) -> String {
    format!(
        "{}\n{}\n{}\n",
        start_marker(step),
        section.trim_end(),
        end_marker(step)
    )
}

/// A whole document: the introduction, then each `(step, section)` in the order given.
pub fn document(sections: &[(&str, String)]) -> String {
    let mut text = INTRO.to_string();
    for (step, section) in sections {
        text.push('\n');
        text.push_str(&block(step, section));
    }
    text
}

/// Where a step's block lies in a document: byte range from its start marker to the end of the
/// line of its end marker.
fn find_block(text: &str, step: &str) -> Result<Option<std::ops::Range<usize>>> {
    let (start, end) = (start_marker(step), end_marker(step));
    let s = text.find(&start);
    let e = text.find(&end);
    match (s, e) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) if s < e => {
            if text[s + start.len()..].contains(&start) || text[e + end.len()..].contains(&end) {
                bail!("expected one `{start}` ... `{end}` pair, found several");
            }
            let after = e + end.len();
            let after = text[after..]
                .find('\n')
                .map_or(text.len(), |n| after + n + 1);
            Ok(Some(s..after))
        }
        _ => bail!(
            "expected `{start}` followed by `{end}`, found {} and {}",
            if s.is_some() { "the first" } else { "no first" },
            if e.is_some() {
                "the second out of order"
            } else {
                "no second"
            }
        ),
    }
}

/// Whether the document has any step marker.
pub fn has_markers(text: &str) -> bool {
    text.contains("<!-- step:")
}

/// Replaces `step`'s block of `existing` with `section`, keeping everything else byte for byte.
/// A document without the block gets it inserted before the block of the next step in `order`
/// that it has (else after the last, else at the end). A document without any marker (written
/// before sections were per step) is first rebuilt from [`split_legacy`].
pub fn splice(
    existing: &str,
    step: &str,
    section: &str,
    order: &[&str],
    legacy: &Legacy<'_>,
) -> Result<String> {
    let rebuilt;
    let existing = if existing.trim().is_empty() {
        rebuilt = document(&[]);
        rebuilt.as_str()
    } else if has_markers(existing) {
        existing
    } else {
        rebuilt = document(&split_legacy(existing, legacy));
        rebuilt.as_str()
    };
    let new = block(step, section);
    if let Some(range) = find_block(existing, step)? {
        return Ok(format!(
            "{}{new}{}",
            &existing[..range.start],
            &existing[range.end..]
        ));
    }
    let position = order.iter().position(|s| *s == step);
    let later = position.map_or(&[][..], |p| &order[p + 1..]);
    for next in later {
        if let Some(range) = find_block(existing, next)? {
            return Ok(format!(
                "{}{new}\n{}",
                &existing[..range.start],
                &existing[range.start..]
            ));
        }
    }
    let mut text = existing.trim_end().to_string();
    text.push_str("\n\n");
    text.push_str(&new);
    Ok(text)
}

/// How a document without markers is cut into step sections.
pub struct Legacy<'a> {
    /// Every step that had figures in it: its name and its section heading.
    pub steps: &'a [(&'a str, &'a str)],
    /// The step a line belongs to, or `None` for a line every step shares (headings, table headers,
    /// machine facts).
    pub attribute: &'a dyn Fn(&str) -> Option<&'static str>,
}

/// Cuts a report of the single-invocation layout (`## Machine`, `## Targets`, `## Side by side`, ...
/// for every step at once) into one section per step: each gets the shared lines and its own table
/// rows, verbatim, under a note saying where they come from. Steps without a row of their own are
/// left out. The old title and introduction are dropped ([`INTRO`] replaces them).
pub fn split_legacy<'a>(text: &str, legacy: &Legacy<'a>) -> Vec<(&'a str, String)> {
    let Some(body_at) = text
        .lines()
        .position(|l| l.starts_with("## "))
        .map(|i| text.lines().take(i).map(|l| l.len() + 1).sum::<usize>())
    else {
        return Vec::new();
    };
    let (preamble, body) = text.split_at(body_at.min(text.len()));
    let command = preamble
        .split_once("Written by `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(c, _)| c.to_string());
    let mut out = Vec::new();
    for (step, heading) in legacy.steps {
        let mut own = 0;
        let mut lines = Vec::new();
        for line in body.lines() {
            match (legacy.attribute)(line) {
                Some(s) if s == *step => {
                    own += 1;
                    lines.push(line.to_string());
                }
                Some(_) => {}
                None => lines.push(match line.strip_prefix("## ") {
                    Some(h) => format!("### {h}"),
                    None => line.to_string(),
                }),
            }
        }
        if own == 0 {
            continue;
        }
        let from = command
            .as_ref()
            .map_or(String::new(), |c| format!(" `{c}`"));
        let note = format!(
            "Carried over unchanged from the report that{from} wrote for every step at once, before \
             the document had one section per step (its Machine list says when and how it was \
             measured); `cargo xtask bench --only {step}` replaces it."
        );
        out.push((
            *step,
            format!("## {heading}\n\n{note}\n\n{}\n", lines.join("\n").trim()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &[&str] = &["a", "b", "c"];

    fn attribute(line: &str) -> Option<&'static str> {
        if !line.starts_with('|') && !line.starts_with("- ") {
            return None;
        }
        if line.contains("`ours:a") || line.contains("`pa:") {
            Some("a")
        } else if line.contains("`ours:b") || line.contains("`pb:") {
            Some("b")
        } else {
            None
        }
    }

    fn legacy() -> Legacy<'static> {
        Legacy {
            steps: &[("a", "A kernels"), ("b", "B loader")],
            attribute: &attribute,
        }
    }

    #[test]
    fn a_block_is_replaced_and_everything_else_kept_byte_for_byte() {
        let doc = document(&[
            ("a", "## A\n\nold a\n".to_string()),
            ("b", "## B\n\nold b".to_string()),
            ("c", "## C\n\nold c\n".to_string()),
        ]);
        assert!(doc.starts_with(INTRO));
        let new = splice(&doc, "b", "## B\n\nnew b\n", ORDER, &legacy()).unwrap();
        assert_eq!(new, doc.replace("old b", "new b"));
        assert!(new.contains("<!-- step:b -->\n## B\n\nnew b\n<!-- /step:b -->\n"));
        // Splicing the same section again changes nothing.
        assert_eq!(
            splice(&new, "b", "## B\n\nnew b\n", ORDER, &legacy()).unwrap(),
            new
        );
    }

    #[test]
    fn an_absent_block_goes_before_the_next_step_or_at_the_end() {
        let doc = document(&[("a", "## A".to_string()), ("c", "## C".to_string())]);
        let new = splice(&doc, "b", "## B", ORDER, &legacy()).unwrap();
        let (a, b, c) = (
            new.find("step:a").unwrap(),
            new.find("step:b").unwrap(),
            new.find("step:c").unwrap(),
        );
        assert!(a < b && b < c, "{new}");
        assert!(new.contains("<!-- /step:b -->\n\n<!-- step:c -->"), "{new}");
        let doc = document(&[("a", "## A".to_string())]);
        let new = splice(&doc, "c", "## C", ORDER, &legacy()).unwrap();
        assert!(
            new.ends_with("<!-- /step:a -->\n\n<!-- step:c -->\n## C\n<!-- /step:c -->\n"),
            "{new}"
        );
        // No document yet: the introduction and the one section.
        let new = splice("", "b", "## B", ORDER, &legacy()).unwrap();
        assert_eq!(new, document(&[("b", "## B".to_string())]));
    }

    #[test]
    fn broken_markers_are_refused_with_what_was_expected() {
        let doc = format!("{INTRO}\n<!-- step:b -->\n## B\n");
        let err = splice(&doc, "b", "## B", ORDER, &legacy()).unwrap_err();
        assert!(err.to_string().contains("no second"), "{err}");
        let doc = format!("{INTRO}\n<!-- /step:b -->\n<!-- step:b -->\n");
        let err = splice(&doc, "b", "## B", ORDER, &legacy()).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        let doc = document(&[("b", "## B".to_string()), ("b", "## B".to_string())]);
        let err = splice(&doc, "b", "## B", ORDER, &legacy()).unwrap_err();
        assert!(err.to_string().contains("found several"), "{err}");
    }

    const OLD: &str = "# Performance

Written by `cargo xtask bench --quick`; do not edit by hand.

## Machine

- CPU: Test, 2 logical cores

## Targets

| Target | Measured |
|---|---|
| a fast | time of `ours:a/x` |
| b fast | time of `ours:b/y` |

## Every measurement

| Figure | Median |
|---|---|
| `pa:copy` | 1 ms |
| `ours:b/y` | 2 ms |

## Problems

None: every bench and peer ran.
";

    #[test]
    fn a_document_without_markers_is_cut_into_step_sections_around_its_figures() {
        let new = splice(OLD, "c", "## C\n\nnew c\n", ORDER, &legacy()).unwrap();
        assert!(new.starts_with(INTRO), "{new}");
        assert!(!new.contains("do not edit by hand.\n"), "{new}");
        let a = &new[new.find("<!-- step:a -->").unwrap()..new.find("<!-- /step:a -->").unwrap()];
        assert!(a.contains("## A kernels\n\nCarried over unchanged from the report that `cargo xtask bench --quick` wrote"), "{a}");
        assert!(a.contains("--only a` replaces it."), "{a}");
        assert!(
            a.contains("### Machine\n\n- CPU: Test, 2 logical cores\n"),
            "{a}"
        );
        assert!(
            a.contains("|---|---|\n| a fast | time of `ours:a/x` |\n\n### Every"),
            "{a}"
        );
        assert!(
            a.contains("| `pa:copy` | 1 ms |") && !a.contains("ours:b"),
            "{a}"
        );
        assert!(
            a.contains("### Problems\n\nNone: every bench and peer ran."),
            "{a}"
        );
        let b = &new[new.find("<!-- step:b -->").unwrap()..new.find("<!-- /step:b -->").unwrap()];
        assert!(
            b.contains("| b fast |") && b.contains("| `ours:b/y` | 2 ms |"),
            "{b}"
        );
        assert!(!b.contains("pa:copy") && !b.contains("a fast"), "{b}");
        assert!(
            new.ends_with("<!-- step:c -->\n## C\n\nnew c\n<!-- /step:c -->\n"),
            "{new}"
        );
        // From then on the markers are there: replacing `a` keeps the migrated `b` as it is.
        let again = splice(&new, "a", "## A\n\nfresh a\n", ORDER, &legacy()).unwrap();
        assert!(again.contains(b) && again.contains("fresh a") && !again.contains("a fast"));
    }

    #[test]
    fn a_legacy_report_without_rows_of_a_step_gives_that_step_no_section() {
        let only_b: String = OLD
            .lines()
            .filter(|l| !l.contains("`ours:a") && !l.contains("`pa:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let sections = split_legacy(&only_b, &legacy());
        assert_eq!(sections.len(), 1);
        assert_eq!(sections[0].0, "b");
        assert!(split_legacy("# Performance\n\nnothing yet\n", &legacy()).is_empty());
    }
}
