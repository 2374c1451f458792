//! The page printed to PDF by headless Chromium, on A4 and on Letter: few pages, and the
//! first one not left mostly blank (the card used to be pushed off it, which left a header
//! alone on page 1 of nine).

use std::io::Read as _;
use std::path::Path;

use report::screenshot::{self, headless_pdf, pdf_page_count};

use crate::helpers::{fixture, render};

/// Where `needle` occurs in `hay`, every time (byte offsets: the PDF is binary).
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(at, _)| at)
        .collect()
}

/// Each page's drawing instructions, decompressed: a page with little on it has few.
fn page_content_sizes(pdf: &[u8]) -> Vec<usize> {
    // Object `n`: the first "n 0 obj" at a line start that holds a stream (a match inside
    // another object's binary data holds none before its "endobj").
    let object = |n: &str| -> Option<&[u8]> {
        find_all(pdf, format!("{n} 0 obj").as_bytes())
            .into_iter()
            .filter(|at| *at > 0 && matches!(pdf[at - 1], b'\n' | b'\r'))
            .find_map(|start| {
                let end = find_all(&pdf[start..], b"endobj").first()? + start;
                let obj = &pdf[start..end];
                let body = find_all(obj, b"stream").first()? + "stream".len();
                Some(&obj[body..])
            })
    };
    let mut sizes = Vec::new();
    // Every page dictionary names its content stream, and nothing else does.
    for at in find_all(pdf, b"/Contents ") {
        let n: String = pdf[at + "/Contents ".len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|b| char::from(*b))
            .collect();
        let Some(body) = object(&n) else { continue };
        let body = body
            .strip_prefix(b"\r\n")
            .or(body.strip_prefix(b"\n"))
            .unwrap_or(body);
        let mut raw = Vec::new();
        let _ = flate2::read::ZlibDecoder::new(body).read_to_end(&mut raw);
        sizes.push(raw.len());
    }
    sizes
}

/// Prints `dir/index.html` on `paper` (the report leaves the size to the printer, so the test
/// asks for one the way a print dialog would) and returns the PDF's bytes.
fn print(dir: &Path, paper: &str) -> Vec<u8> {
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let page = dir.join(format!("print-{paper}.html"));
    std::fs::write(
        &page,
        html.replace("</style>", &format!("@page {{ size: {paper}; }}</style>")),
    )
    .unwrap();
    let pdf = dir.join(format!("{paper}.pdf"));
    let chromium = screenshot::chromium_path().expect("chromium at /usr/bin/chromium");
    let run = headless_pdf(&chromium, &page, &pdf).expect("chromium runs");
    assert!(run.status.success(), "chromium failed: {}", run.stderr);
    std::fs::read(&pdf).expect("a PDF was written")
}

#[test]
fn the_report_prints_on_few_pages_with_something_on_the_first() {
    // Measured with this stylesheet: 7 pages for the classroom fixture and 9 for the sweep,
    // on A4 and on Letter, where the page before it took 8 and 9 for the classroom fixture
    // alone, page 1 nearly blank (the crossover chart has since added a page).
    for (name, most_pages) in [("results.json", 7), ("sweep.json", 9)] {
        let (dir, _) = render(&fixture(name), &format!("print_{}", name.replace('.', "_")));
        for paper in ["A4", "Letter"] {
            let pdf = print(&dir, paper);
            let pages = pdf_page_count(&pdf).expect("a page count");
            assert!(
                pages <= most_pages,
                "{name} on {paper}: {pages} pages, at most {most_pages} expected"
            );
            let sizes = page_content_sizes(&pdf);
            assert_eq!(
                sizes.len(),
                pages,
                "{name} on {paper}: one content stream a page"
            );
            let mean = sizes.iter().sum::<usize>() / sizes.len();
            assert!(
                sizes[0] * 2 >= mean,
                "{name} on {paper}: page 1 is nearly empty ({sizes:?})"
            );
        }
    }
}
