//! `html`: one self-contained file, checked as text (no remote references, every
//! untrusted string escaped) and in headless Chromium (Debian's `chromium`): the
//! page renders and its script runs, sorting by score works (by the address
//! hash and by a click on the header), filtering works, a banner and a tag
//! holding script stay text and run nothing. A screenshot is kept under
//! `target/export-artifacts/`.

#[path = "fixtures/export/findings.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scanfleet_coordinator::export::{self, Format};

/// What the injected script would do if it ran: mark the page.
const PWN_BANNER: &str =
    "<script>document.documentElement.setAttribute('data-pwned','banner')</script>";
const PWN_TAG: &str =
    "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','tag')\">";

fn hostile_scan() -> fixture::Scan {
    let mut scan = fixture::scan("exp-html");
    let mut f = fixture::finding(
        "exp-html",
        "i-0def00000000000aa",
        "10.0.0.6",
        8443,
        "SF-HTTP-ADMIN",
        6.0,
        6.0,
        Some(fixture::service("https", "Jetty", "9.4", PWN_BANNER)),
    );
    f.tags.insert("Team".into(), PWN_TAG.into());
    f.title = "</td></tr></table><script>document.documentElement.setAttribute('data-pwned','title')</script>".into();
    scan.add(f);
    scan
}

fn render(scan: &fixture::Scan) -> String {
    let mut out = Vec::new();
    export::write(Format::Html, &scan.export(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn html_is_self_contained_and_escapes_everything() {
    let html = render(&hostile_scan());
    // One script element, ours; no markup from the scan.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=&quot;document"));
    assert!(html.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;"));
    // The skipped asset's id and its reason.
    assert!(html.contains("i-0fff&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("instance is stopped, not running"), "{html}");
    // Control characters are escaped.
    assert!(!html.contains('\u{1b}'));
    // No reference that a browser would fetch: no remote src/href/url(), no
    // protocol-relative ones, and a CSP that forbids fetching anyway.
    let lower = html.to_lowercase();
    for attr in ["src=", "href=", "url(", "@import", "action="] {
        for (i, _) in lower.match_indices(attr) {
            let rest = lower[i + attr.len()..].trim_start_matches(['"', '\'', ' ']);
            assert!(
                !(rest.starts_with("http:")
                    || rest.starts_with("https:")
                    || rest.starts_with("//")),
                "remote reference at {i}: {}",
                &html[i..(i + 80).min(html.len())]
            );
        }
    }
    assert!(html.contains("default-src 'none'"));
    // Summary, chart, table, assets, skipped.
    for id in [
        "id=\"summary\"",
        "id=\"severity-chart\"",
        "id=\"findings\"",
        "id=\"assets\"",
        "id=\"skipped\"",
    ] {
        assert!(html.contains(id), "{id} missing");
    }
    assert!(html.contains("<g data-severity=\"critical\">"));
}

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!("chromium not found: scripts/setup.sh installs Debian's chromium");
}

/// Run headless Chromium on `url` with `extra` arguments and a fresh profile;
/// its standard output. Bounded: killed after 120 s.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish on {url} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The findings rows of a dumped DOM, in order: (score, hidden).
fn rows(dom: &str) -> Vec<(f64, bool)> {
    let body = &dom[dom.find("<table id=\"findings\"").expect("findings table")..];
    let body = &body[..body.find("</table>").unwrap()];
    body.match_indices("<tr id=\"f-")
        .map(|(i, _)| {
            let tag = &body[i..i + body[i..].find('>').unwrap()];
            let score = tag
                .split("data-score=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse().ok())
                .unwrap();
            (score, tag.contains(" hidden"))
        })
        .collect()
}

fn scores(rows: &[(f64, bool)]) -> Vec<f64> {
    rows.iter().map(|r| r.0).collect()
}

#[test]
fn chromium_renders_sorts_filters_and_runs_no_injected_script() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let scan = hostile_scan();
    std::fs::write(&file, render(&scan)).unwrap();
    let url = format!("file://{}", file.display());
    let mut by_score: Vec<f64> = scan.findings.iter().map(|f| f.score).collect();
    by_score.sort_by(f64::total_cmp);

    // Rendered, our script ran, the injected ones did not.
    let dom = headless(&url, &["--dump-dom"]);
    let html_tag = &dom[dom.find("<html").unwrap()..];
    let html_tag = &html_tag[..html_tag.find('>').unwrap()];
    assert!(
        html_tag.contains("data-report=\"ready\""),
        "page script did not run: {html_tag}"
    );
    assert!(
        !html_tag.contains("data-pwned"),
        "an injected script ran: {html_tag}"
    );
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "banner not shown as text"
    );
    assert!(
        dom.contains("&lt;script&gt;document.documentElement.setAttribute('data-pwned','banner')")
    );
    // Default order: score, highest first.
    let mut desc = by_score.clone();
    desc.reverse();
    assert_eq!(scores(&rows(&dom)), desc);
    assert_eq!(rows(&dom).len(), 6);

    // Sorting by score, ascending, from the address.
    let dom = headless(&format!("{url}#sort=score-asc"), &["--dump-dom"]);
    assert_eq!(scores(&rows(&dom)), by_score);
    // A click on the Score header (sorted descending) sorts ascending; a second
    // click from ascending sorts descending.
    let dom = headless(&format!("{url}#click=score"), &["--dump-dom"]);
    assert_eq!(scores(&rows(&dom)), by_score);
    assert!(
        dom.contains("data-key=\"score\" tabindex=\"0\" aria-sort=\"ascending\"")
            || dom.contains("aria-sort=\"ascending\""),
        "{dom}"
    );
    let dom = headless(
        &format!("{url}#sort=score-asc&click=score"),
        &["--dump-dom"],
    );
    assert_eq!(scores(&rows(&dom)), desc);

    // Filtering: a word, and a minimum severity.
    let dom = headless(&format!("{url}#filter=redis"), &["--dump-dom"]);
    let visible: Vec<f64> = rows(&dom).iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert_eq!(visible, [7.5]);
    assert!(
        dom.contains("<span id=\"shown\">1</span>"),
        "count not updated"
    );
    let dom = headless(&format!("{url}#min=3"), &["--dump-dom"]);
    let visible: Vec<f64> = rows(&dom).iter().filter(|r| !r.1).map(|r| r.0).collect();
    assert_eq!(visible, [9.5, 7.5]);

    // The screenshot, kept as a test artifact.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/export-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    headless(
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,2400",
            "--hide-scrollbars",
        ],
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    std::fs::copy(&file, artifacts.join("report.html")).unwrap();
}
