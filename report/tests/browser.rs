//! The rendered page in a real headless Chromium: it must load with no console output at all
//! (the page has no scripts, so any console line means a script or a failed load). The
//! screenshots are kept for people to look at:
//! `target/tmp/report-screenshots/synthetic-classroom.png` and `.../synthetic-sweep.png`.

use std::path::{Path, PathBuf};

use report::screenshot::{self, BrowserRun};

use crate::helpers::{fixture, out_dir, render};

fn chromium() -> PathBuf {
    screenshot::chromium_path().expect(
        "chromium is required for the browser test and was not found at /usr/bin/chromium \
         (or $CHROMIUM): `.ci/run` installs Debian's `chromium` package",
    )
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(page: &Path, png: &Path, height: u32, min_png_bytes: u64) -> BrowserRun {
    let run = screenshot::headless_screenshot(&chromium(), page, png, 1400, height)
        .expect("chromium runs");
    assert!(
        run.status.success(),
        "chromium failed: {}\n{}",
        run.status,
        run.stderr
    );
    let size = std::fs::metadata(png).expect("screenshot written").len();
    assert!(
        size > min_png_bytes,
        "screenshot of {} is only {size} bytes",
        page.display()
    );
    run
}

#[test]
fn the_report_loads_in_chromium_without_console_errors() {
    for (fixture_name, shot, height) in [
        ("results.json", "synthetic-classroom.png", 5600),
        ("sweep.json", "synthetic-sweep.png", 7400),
    ] {
        let (dir, _) = render(&fixture(fixture_name), &format!("browser_{shot}"));
        let png = screenshot_dir().join(shot);
        // A blank page compresses to a few kB; the report's charts make hundreds.
        let run = load(&dir.join("index.html"), &png, height, 100_000);
        assert!(
            run.console_messages().is_empty(),
            "{fixture_name}: console output: {:#?}",
            run.console_messages()
        );
    }
}

/// The check above must be able to fail: a page with a deliberate error is caught.
#[test]
fn a_page_with_a_script_error_is_caught_by_the_console_check() {
    let dir = out_dir("browser_broken");
    let page = dir.join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><h1>broken on purpose</h1>\
         <script>undefined_function();</script></body></html>",
    )
    .unwrap();
    let run = load(&page, &dir.join("broken.png"), 600, 0);
    let messages = run.console_messages();
    assert!(
        messages.iter().any(|l| l.contains("undefined_function")),
        "the deliberate error was not seen; stderr:\n{}",
        run.stderr
    );
}
