//! Debian's Chromium, headless, as a real browser for our pages: the DOM it builds and the
//! pixels it paints.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where tests leave what a person may want to look at (screenshots): `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Runs headless Chromium once with a fresh profile and `args` before the URL; its stdout.
/// Background networking is off: nothing but the URL is fetched (the machine has no internet).
async fn chromium(args: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 60 s")
    .unwrap_or_else(|e| panic!("cannot run {CHROMIUM} (Debian package chromium; tests/run.sh installs it): {e}"));
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("chromium prints UTF-8")
}

/// The DOM Chromium built from `url`, serialised.
pub async fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom".to_owned()], url).await
}

/// The DOM of `url` after `virtual_ms` of the page's own time: its timers run (a page that
/// refreshes itself does so) while Chromium waits for what they fetch.
pub async fn dump_dom_after(url: &str, virtual_ms: u32) -> String {
    chromium(&["--dump-dom".to_owned(), format!("--virtual-time-budget={virtual_ms}")], url).await
}

/// What a page looks like to a person in a `width`×`height` window, as Chromium lays it out:
/// axe-core's accessibility violations, whether it scrolls sideways, and where the first failing
/// probe is.
#[derive(Debug, serde::Deserialize)]
pub struct Inspection {
    /// axe-core's violations: `{id, impact, help, nodes}` each, the nodes with what is wrong.
    pub violations: Vec<serde_json::Value>,
    /// The document's width against the window's: more is horizontal scrolling.
    #[serde(rename = "scrollWidth")]
    pub scroll_width: f64,
    #[serde(rename = "innerWidth")]
    pub inner_width: f64,
    #[serde(rename = "innerHeight")]
    pub inner_height: f64,
    /// The bottom of the first failing probe named at the top of the status page (-1: none).
    #[serde(rename = "firstFailingBottom")]
    pub first_failing_bottom: f64,
    /// Ticks drawn in heartbeat bars.
    pub heartbeats: usize,
    /// Charts with something drawn in them (a line or a bar).
    pub charts: usize,
    /// The first elements reaching beyond the window's right edge, for a failure's message.
    pub wide: Vec<String>,
}

/// Loads `url`'s HTML into a page of its own with axe-core (tests/axe, installed by
/// tests/run.sh) and a script that measures the layout, renders it in a `width`×`height` window
/// (dark when `dark`) and reads what the script found. The page is served from a file: its own
/// refresh script finds nothing to fetch, and nothing but the page is loaded.
pub async fn inspect(url: &str, width: u32, height: u32, dark: bool) -> Inspection {
    let axe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe/node_modules/axe-core/axe.min.js");
    assert!(axe.exists(), "{} is missing: run `bash tests/run.sh`, which installs it", axe.display());
    let html = super::http().get(url).send().await.expect("GET the page").text().await.unwrap();
    let probe = format!(
        "<script src=\"file://{}\"></script><script>\n\
         window.addEventListener('load', async () => {{\n\
           // The layout first: axe leaves elements of its own behind.\n\
           const scrollWidth = document.documentElement.scrollWidth;\n\
           const first = document.querySelector('section.broken li');\n\
           const firstFailingBottom = first ? first.getBoundingClientRect().bottom : -1;\n\
           const r = await axe.run(document, {{resultTypes: ['violations']}});\n\
           const out = {{\n\
             violations: r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}})),\n\
             scrollWidth, innerWidth: window.innerWidth, innerHeight: window.innerHeight, firstFailingBottom,\n\
             heartbeats: document.querySelectorAll('svg.heartbeat rect').length,\n\
             charts: [...document.querySelectorAll('svg.chart')].filter(c => c.querySelector('path, rect')).length,\n\
             wide: [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > window.innerWidth)\n\
               .slice(0, 6).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))\n\
               .concat((() => {{ const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); const out = []; let n; while ((n = w.nextNode())) {{ const r = document.createRange(); r.selectNodeContents(n); const right = r.getBoundingClientRect().right; if (right > window.innerWidth) out.push('text in ' + n.parentElement.tagName + '.' + n.parentElement.className + ' ' + Math.round(right) + ': ' + n.textContent.slice(0, 40)); }} return out.slice(0, 4); }})()),\n\
           }};\n\
           const pre = document.createElement('pre'); pre.id = 'inspection'; pre.textContent = JSON.stringify(out);\n\
           document.body.appendChild(pre);\n\
         }});\n</script>",
        axe.display()
    );
    let page = html.replacen("</body>", &format!("{probe}</body>"), 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(&file, page).unwrap();
    let mut args = vec![
        format!("--window-size={width},{height}"),
        "--dump-dom".to_owned(),
        "--virtual-time-budget=15000".to_owned(),
    ];
    if dark {
        args.push("--force-dark-mode".to_owned());
        args.push("--blink-settings=preferredColorScheme=0".to_owned());
    }
    let dom = chromium(&args, &format!("file://{}", file.display())).await;
    let json = dom
        .split_once("<pre id=\"inspection\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(j, _)| j.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        .unwrap_or_else(|| panic!("the inspection did not finish for {url}"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// A screenshot of `url` in a `width`×`height` window (dark when `dark`), saved as `path`.
pub async fn screenshot_in(url: &str, path: &Path, width: u32, height: u32, dark: bool) -> Image {
    let _ = std::fs::remove_file(path);
    let mut args = vec![format!("--window-size={width},{height}"), format!("--screenshot={}", path.display())];
    if dark {
        args.push("--force-dark-mode".to_owned());
        args.push("--blink-settings=preferredColorScheme=0".to_owned());
    }
    chromium(&args, url).await;
    Image::load(path)
}

/// A screenshot of `url` in a `width`×`height` window, saved as `path`, and decoded.
pub async fn screenshot(url: &str, path: &Path, width: u32, height: u32) -> Image {
    let _ = std::fs::remove_file(path);
    chromium(&[format!("--window-size={width},{height}"), format!("--screenshot={}", path.display())], url).await;
    Image::load(path)
}

/// Decoded RGB(A) pixels.
pub struct Image {
    pub width: u32,
    pub height: u32,
    channels: usize,
    data: Vec<u8>,
}

impl Image {
    fn load(path: &Path) -> Image {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display()));
        let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().expect("a PNG");
        let mut data = vec![0; reader.output_buffer_size().expect("fits in memory")];
        let info = reader.next_frame(&mut data).expect("PNG frame");
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("unexpected PNG colour type {other:?}"),
        };
        data.truncate(info.buffer_size());
        Image { width: info.width, height: info.height, channels, data }
    }

    /// How many pixels have this colour, each channel within `tolerance` (anti-aliased strokes
    /// and text are rarely painted in their exact colour).
    pub fn count_near(&self, rgb: [u8; 3], tolerance: u8) -> usize {
        self.data
            .chunks_exact(self.channels)
            .filter(|p| p[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tolerance))
            .count()
    }
}
