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
