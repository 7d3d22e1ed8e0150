//! The console draws what a detector compared the values with: a learned band's edges and a
//! forecast's threshold, from `df_event_detail.detector`, on the event's chart. Headless
//! Chromium through chromedriver against `tocsin serve`; skips where they are not installed.

mod common;

use common::webdriver::Browser;
use common::{now, Tocsin};

const BAND: &str = r#"
id = "band"
manual = true
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "range"
band = "percentile"
percentiles = [10, 90]
baseline = "10m"
min_history = 5
critical = "Result > 3"
"#;

const FORECAST: &str = r#"
id = "fill"
manual = true
interval = "1m"
[query]
measurement = "q"
field = "v"
by = ["k"]
[rules]
kind = "forecast"
lookback = "10m"
threshold = 95
horizon = "2h"
critical = "Result < 1"
"#;

#[test]
fn event_charts_show_the_band_and_the_forecast_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(b) = Browser::start(&tmp.path().join("chromedriver.log")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(dir.path().join("monitors/band.toml"), BAND).unwrap();
    std::fs::write(dir.path().join("monitors/fill.toml"), FORECAST).unwrap();
    let t = Tocsin::start(dir.path(), "[host_input]\nenabled = false\n");
    // Ten minutes alternating 10 and 12 for the band (then 30 in the last minute), a steady
    // climb to 90 for the forecast.
    let end = now();
    let mut lines = String::new();
    for i in 0..20 {
        let ts = end - 600 + i * 30;
        let band = if i >= 18 { 30 } else { 10 + 2 * (i % 2) };
        lines.push_str(&format!("q,k=band v={band} {ts}\n"));
        lines.push_str(&format!("q,k=fill v={} {ts}\n", 71 + i));
    }
    let (code, body) = t.post_token("/v1/write/metric?precision=s", lines.as_bytes(), None);
    assert_eq!(code, 200, "{body}");
    for (monitor, object, labels) in [
        ("band", "band", vec!["band upper 12", "band lower 10"]),
        ("fill", "fill", vec!["forecast threshold 95"]),
    ] {
        let r = t.run(monitor, None);
        let ev = r["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["df_dimension_tags"].as_str().unwrap().contains(object))
            .unwrap_or_else(|| panic!("{monitor}: {r}"))
            .clone();
        assert_eq!(ev["df_status"], "critical", "{ev}");
        b.goto(&format!(
            "{}/#/events/{}",
            t.url,
            ev["df_event_id"].as_str().unwrap()
        ));
        b.wait("body[data-ready='1']", 20);
        b.wait("#event-chart svg path.line", 15);
        let drawn = b.all("#event-chart svg line.threshold");
        assert_eq!(drawn.len(), labels.len(), "{monitor}");
        let chart = b.text(&b.wait("#event-chart", 5));
        for l in labels {
            assert!(chart.contains(l), "{monitor}: {l} in {chart}");
        }
    }
}
