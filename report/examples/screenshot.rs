//! Takes a screenshot of a rendered report with headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs), e.g. of the classroom report after `duplex run scenarios/classroom.toml`:
//!
//! `cargo run -p report --example screenshot -- reports/classroom/index.html`
//!
//! writes `reports/classroom/screenshot.png` (or the second argument), 1400 px wide and tall
//! enough for the whole page, and fails if the page logged anything to the console.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(page) = args.next().map(PathBuf::from) else {
        eprintln!("usage: screenshot INDEX_HTML [OUT_PNG]");
        return ExitCode::FAILURE;
    };
    let png = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| page.with_file_name("screenshot.png"));
    let Some(chromium) = report::screenshot::chromium_path() else {
        eprintln!("chromium not found: install Debian's `chromium` (.ci/run does) or set CHROMIUM");
        return ExitCode::FAILURE;
    };
    match report::screenshot::headless_screenshot(&chromium, &page, &png, 1400, 7000) {
        Ok(run) if run.status.success() && run.console_messages().is_empty() => {
            println!("wrote {}", png.display());
            ExitCode::SUCCESS
        }
        Ok(run) => {
            eprintln!(
                "chromium exited with {}; console: {:#?}",
                run.status,
                run.console_messages()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run {}: {e}", chromium.display());
            ExitCode::FAILURE
        }
    }
}
