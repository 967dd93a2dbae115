//! README.md shows the lifecycle diagram and transition table; they must stay identical to
//! docs/lifecycle.md, which the lifecycle tests check against the code.

const README: &str = include_str!("../README.md");
const LIFECYCLE: &str = include_str!("../docs/lifecycle.md");

fn block<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"));
    let to = text[from + start.len()..]
        .find(end)
        .map(|i| from + start.len() + i)
        .expect("block end");
    &text[from..to]
}

#[test]
fn readme_lifecycle_diagram_and_table_match_the_checked_document() {
    assert_eq!(
        block(README, "```mermaid", "```\n"),
        block(LIFECYCLE, "```mermaid", "```\n")
    );
    let table_start = "| From | Situation | To | Reason |";
    assert_eq!(
        block(README, table_start, "\n\n"),
        block(LIFECYCLE, table_start, "\n\n")
    );
}

#[test]
fn readme_names_every_cli_command() {
    for command in [
        "meshery-operator run",
        "meshery-operator plan",
        "meshery-operator render",
        "meshery-operator crd",
        "meshery-operator doctor",
    ] {
        assert!(
            README.contains(command),
            "README does not document {command}"
        );
    }
}

/// What a new user trips over is said where they look (issue 17's README defects).
#[test]
fn readme_says_plan_exit_codes_render_uids_and_how_to_wait_for_a_change() {
    let quick_start = block(README, "## Quick start", "## Install");
    assert!(
        quick_start.contains("exits 1: there are changes"),
        "{quick_start}"
    );
    let command_line = block(README, "## Command line", "## Custom resources");
    assert!(
        command_line.contains("not for `kubectl apply`") && command_line.contains("empty UID"),
        "{command_line}"
    );
    assert!(
        README.contains("--for=jsonpath='{.status.observedGeneration}'"),
        "the README shows how to wait for a change to be reconciled"
    );
}
