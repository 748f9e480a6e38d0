//! `candletop completions` and `candletop man`: made from the command line's own definition,
//! so they offer what the binary takes.

mod common;

use std::process::Command;

use common::{candletop, rejects, succeeds};

/// What bash completes after `words` (the last one being typed), with the script the binary
/// prints loaded as a user's shell would load it.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT={}; \
         _candletop candletop '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_the_subcommands_and_flags_the_binary_takes() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("candletop.bash");
    std::fs::write(&script, succeeds(dir.path(), &["completions", "bash"])).unwrap();
    assert_eq!(
        bash_completes(&script, &["candletop", "--sched"]),
        ["--schedule"]
    );
    assert_eq!(
        bash_completes(&script, &["candletop", "l"]),
        ["lr-find", "ls"]
    );
    assert_eq!(
        bash_completes(&script, &["candletop", "completions", "f"]),
        ["fish"]
    );
    let plot = bash_completes(&script, &["candletop", "plot", "--comp"]);
    assert_eq!(plot, ["--compare"]);
    // zsh and fish get scripts of their own that name the same flags.
    for (shell, marker) in [
        ("zsh", "#compdef candletop"),
        ("fish", "complete -c candletop"),
    ] {
        let text = succeeds(dir.path(), &["completions", shell]);
        assert!(text.contains(marker), "{shell}");
        assert!(
            text.contains("schedule") && text.contains("lr-find"),
            "{shell}"
        );
    }
    rejects(
        &["completions", "tcsh"],
        "invalid value 'tcsh' for '<SHELL>'",
    );
}

#[test]
fn the_manual_pages_describe_every_flag_and_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let page = succeeds(dir.path(), &["man"]);
    assert!(page.contains(".TH candletop 1"), "{}", &page[..200]);
    for want in ["\\-\\-schedule", "lr\\-find", "completions", "Exit status"] {
        assert!(page.contains(want), "the page lacks {want}");
    }
    // man itself reads it, where man is installed.
    let rendered = Command::new("sh")
        .arg("-c")
        .arg("command -v man >/dev/null || exit 3; man -l - | col -b")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(page.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    if rendered.status.code() != Some(3) {
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("--schedule"), "{text}");
    }
    // One page a command, with --dir.
    let out = succeeds(dir.path(), &["man", "--dir", "pages"]);
    assert_eq!(out.trim(), "wrote the manual pages into pages");
    for name in [
        "candletop.1",
        "candletop-train.1",
        "candletop-plot.1",
        "candletop-man.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join("pages").join(name)).unwrap();
        assert!(text.starts_with(".ie") && text.contains(".TH"), "{name}");
    }
    // A directory that cannot be made: one line, exit 2.
    std::fs::write(dir.path().join("file"), "").unwrap();
    let out = candletop(&["man", "--dir", "file/pages"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("candletop: --dir file/pages: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
}
