//! A small W3C WebDriver client over HTTP for the console tests: Debian's `chromedriver`
//! driving headless `chromium` on loopback. Only the commands the tests use.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{free_port, program, Program};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver with one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Program,
    base: String,
}

/// An element found on the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless session, or `None` (the test skips) when chromium
    /// or chromedriver is not installed.
    pub fn start(log: &Path) -> Option<Browser> {
        let driver_bin = program(&["chromedriver"])?;
        let chromium = program(&["chromium", "chromium-browser", "google-chrome"])?;
        let port = free_port();
        let driver = Program::start(&driver_bin, &[format!("--port={port}")], log);
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_ready(&format!("{url}/status"), 20);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
            },
        }}});
        let v = call("POST", &format!("{url}/session"), Some(caps)).expect("new session");
        let id = v["sessionId"].as_str().expect("session id").to_string();
        Some(Browser {
            driver,
            base: format!("{url}/session/{id}"),
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(method, &format!("{}{path}", self.base), body)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })))
            .unwrap();
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and answers its value.
    pub fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .unwrap()
    }

    /// Every element matching the CSS selector (none is fine).
    pub fn all(&self, css: &str) -> Vec<Element> {
        let v = self
            .cmd(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| Element(e[ELEMENT].as_str().unwrap().to_string()))
            .collect()
    }

    /// Waits up to `secs` for an element matching `css`; panics naming it (and the page's
    /// text) when none shows.
    pub fn wait(&self, css: &str, secs: u64) -> Element {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(e) = self.all(css).into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                let body = self.exec("return document.body.innerText", vec![]);
                panic!("no {css:?} after {secs} s; the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `secs` for `f` to answer `Some`.
    pub fn until<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.exec("return document.body.innerText", vec![]);
                panic!("{what}: not after {secs} s; the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The visible text of an element.
    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})))
            .unwrap();
    }

    /// Clears an input and types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})))
            .unwrap();
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .unwrap();
    }

    /// Emulates a screen of `width` × `height` CSS pixels (`mobile`: a phone's viewport).
    pub fn screen(&self, width: u32, height: u32, mobile: bool) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}}),
            ),
        )
        .unwrap();
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &PathBuf) {
        use base64::Engine as _;
        let v = self.cmd("GET", "/screenshot", None).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.cmd("DELETE", "", None);
        self.driver.kill();
    }
}

/// One WebDriver command: its `value`, or the driver's error message.
fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(60));
    let res = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match res {
        Ok(r) => Ok(r.into_json::<Value>().map_err(|e| e.to_string())?["value"].take()),
        Err(ureq::Error::Status(code, r)) => Err(format!(
            "{method} {url}: {code}: {}",
            r.into_string().unwrap_or_default()
        )),
        Err(e) => Err(format!("{method} {url}: {e}")),
    }
}
