//! Opening a rendered report in a real headless Chromium: used by the browser test (the page
//! must load without console errors, and must print on few pages) and by
//! `examples/screenshot.rs` (a PNG of a report for
//! the README or a slide). Chromium is Debian's `chromium` package, which `.ci/run` installs;
//! nothing here downloads a browser.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest a page may take to load and be captured before Chromium is stopped.
const TIMEOUT: Duration = Duration::from_secs(90);

/// What one headless Chromium run left behind.
#[derive(Debug)]
pub struct BrowserRun {
    /// Chromium's exit status.
    pub status: ExitStatus,
    /// Everything it logged (with `--enable-logging=stderr`, console messages appear here).
    pub stderr: String,
    /// The file written (the PNG, or the PDF).
    pub screenshot: PathBuf,
}

impl BrowserRun {
    /// Lines where the page itself spoke: console messages (Chromium logs every
    /// `console.*` call and every uncaught exception as `...:CONSOLE:<line>] "..."`) and
    /// uncaught errors. A report has no scripts, so any of these means something is wrong:
    /// a script slipped in, or a resource failed to load.
    pub fn console_messages(&self) -> Vec<&str> {
        console_messages(&self.stderr)
    }
}

/// The console lines in a Chromium stderr log (see [`BrowserRun::console_messages`]).
pub fn console_messages(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// Where Chromium is: `$CHROMIUM` if set, else `/usr/bin/chromium` if it exists.
pub fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    debian.exists().then_some(debian)
}

/// Loads `page` (a local HTML file) in headless Chromium at `width`×`height` CSS pixels and
/// writes a screenshot to `png`. Network features that would phone home are off, so an
/// offline page stays offline; a fresh profile is made beside the PNG and removed afterwards.
pub fn headless_screenshot(
    chromium: &Path,
    page: &Path,
    png: &Path,
    width: u32,
    height: u32,
) -> io::Result<BrowserRun> {
    run_chromium(
        chromium,
        page,
        png,
        [
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
    )
}

/// Prints `page` to `pdf` as Chromium's "Save as PDF" would, without header or footer, on
/// the paper the page's own `@page { size }` asks for (Letter when it asks for none).
pub fn headless_pdf(chromium: &Path, page: &Path, pdf: &Path) -> io::Result<BrowserRun> {
    run_chromium(
        chromium,
        page,
        pdf,
        [
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".to_string(),
        ],
    )
}

/// The number of pages of a PDF Chromium wrote: its page tree's root `/Count` (the largest,
/// as every intermediate node counts only the pages under it). `None` when there is none.
pub fn pdf_page_count(pdf: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Count ")
        .filter_map(|(at, key)| {
            let digits: String = text[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .max()
}

fn run_chromium(
    chromium: &Path,
    page: &Path,
    output: &Path,
    output_args: [String; 2],
) -> io::Result<BrowserRun> {
    let page = std::fs::canonicalize(page)?;
    let profile = output.with_extension("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(output_args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read stderr on a thread so a chatty Chromium never blocks on a full pipe.
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        io::Read::read_to_string(&mut pipe, &mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("chromium did not finish within {TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader
        .join()
        .map_err(|_| io::Error::other("stderr reader panicked"))??;
    // Best effort: a leftover profile is only wasted disk.
    let _ = std::fs::remove_dir_all(&profile);
    Ok(BrowserRun {
        status,
        stderr,
        screenshot: output.to_path_buf(),
    })
}
