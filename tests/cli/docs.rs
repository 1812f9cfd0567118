//! The shell completions and man pages in the repository are the ones the
//! binary generates (regenerate with `completions/make.sh`).

use std::path::Path;

use crate::support::casterpak;

#[test]
fn completions_and_man_pages_are_up_to_date() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["completions", "bash"],
            "completions/casterpak.bash".into(),
        ),
        (vec!["completions", "zsh"], "completions/_casterpak".into()),
        (
            vec!["completions", "fish"],
            "completions/casterpak.fish".into(),
        ),
        (vec!["man"], "man/casterpak.1".into()),
    ];
    for sub in [
        "package",
        "serve",
        "gc",
        "stat",
        "invalidate",
        "master",
        "token",
    ] {
        cases.push((vec!["man", sub], format!("man/casterpak-{sub}.1")));
    }
    for (args, file) in cases {
        let generated = casterpak().args(&args).output().unwrap().stdout;
        let committed = std::fs::read(repo.join(&file)).unwrap_or_default();
        assert!(
            generated == committed,
            "{file} is out of date: run completions/make.sh"
        );
    }
}
