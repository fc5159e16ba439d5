//! account-usage: the batch ETL job, report engine and report service behind
//! the Account usage report (see `DESIGN.md` in the shared docs for the
//! contract).
//!
//! Layers point one way, down (DESIGN.md §6); `layering` below enforces it:
//!
//! | layer | modules |
//! | --- | --- |
//! | definitions (pure) | [`model`], [`calendar`], [`metric`], [`fifo`] |
//! | aggregate (pure) | [`aggregate`] |
//! | extract | [`source`], [`extract`] |
//! | warehouse | [`warehouse`] |
//! | rollup | [`rollup`] |
//! | report | [`report`] |
//! | job | [`job`] |
//! | serve | [`serve`] |
//! | binary glue | [`seed`], [`demo`], [`cli`] |
//!
//! [`seed`] makes synthetic operational data (its RNG is shared with unit
//! tests), [`demo`] ties it all together, and the binary's argument handling
//! lives in [`cli`].

pub mod aggregate;
pub mod calendar;
pub mod cli;
pub mod demo;
pub mod extract;
pub mod fifo;
pub mod job;
pub mod metric;
pub mod model;
pub mod report;
pub mod rollup;
pub mod seed;
pub mod serve;
pub mod source;
pub mod warehouse;

#[cfg(test)]
mod layering {
    //! Reads the crate's own sources: every `crate::x` a module's non-test
    //! code names must be in a layer below it.

    use std::path::Path;

    /// Each module and the modules it may use.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("model", &[]),
        ("calendar", &["model"]),
        ("metric", &["model"]),
        ("fifo", &[]),
        ("aggregate", &["model", "calendar", "metric"]),
        ("source", &[]),
        ("extract", &["model", "calendar", "metric", "aggregate", "source"]),
        ("warehouse", &["model", "calendar", "metric", "aggregate"]),
        (
            "rollup",
            &["model", "calendar", "metric", "fifo", "aggregate", "warehouse"],
        ),
        (
            "report",
            &[
                "model",
                "calendar",
                "metric",
                "fifo",
                "aggregate",
                "warehouse",
                "rollup",
            ],
        ),
        (
            "job",
            &[
                "model",
                "calendar",
                "metric",
                "aggregate",
                "source",
                "extract",
                "warehouse",
                "rollup",
            ],
        ),
        (
            "serve",
            &[
                "model",
                "calendar",
                "metric",
                "fifo",
                "aggregate",
                "warehouse",
                "rollup",
                "report",
            ],
        ),
    ];

    fn non_test_code(text: &str) -> &str {
        text.split("#[cfg(test)]").next().unwrap_or(text)
    }

    fn sources_of(module: &str) -> Vec<std::path::PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let single = root.join(format!("{module}.rs"));
        if single.exists() {
            return vec![single];
        }
        let mut out = Vec::new();
        let mut dirs = vec![root.join(module)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                    out.push(path);
                }
            }
        }
        out
    }

    #[test]
    fn every_import_points_down() {
        let mut violations = Vec::new();
        for (module, allowed) in ALLOWED {
            let files = sources_of(module);
            assert!(!files.is_empty(), "no sources for {module}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for (i, _) in non_test_code(&text).match_indices("crate::") {
                    let used: String = text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used != *module && !allowed.contains(&used.as_str()) {
                        violations.push(format!("{}: {module} uses {used}", file.display()));
                    }
                }
            }
        }
        assert!(
            violations.is_empty(),
            "imports that point up:\n{}",
            violations.join("\n")
        );
    }

    #[test]
    fn the_check_sees_a_violation() {
        let text = "use crate::report::engine;\n#[cfg(test)]\nuse crate::job;";
        let code = non_test_code(text);
        assert!(code.contains("crate::report"));
        assert!(!code.contains("crate::job"));
    }
}
