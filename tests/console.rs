//! The web console in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver) against a `tocsin serve` on loopback with seeded events and issues. Skips,
//! saying so, where chromium or chromedriver is not installed (`.ci/run` installs both).
//! Screenshots at desktop and phone sizes are kept in `target/console-screenshots/`.

mod common;

use common::webdriver::Browser;
use common::{now, Tocsin};
use serde_json::{json, Value};
use std::path::PathBuf;

const CPU: &str = r#"
id = "cpu"
name = "Host CPU"
manual = true
interval = "5m"
[query]
measurement = "cpu"
field = "usage"
agg = "avg"
by = ["host"]
[rules]
critical = "Result > 90"
warning = "Result > 80"
[template]
title = "{{ host }}: CPU {{ Result }}%"
message = "CPU of {{ host }} is {{ Result }}% over 5 minutes"
"#;

/// A title and message a hostile sender could choose: markup that would run script if the
/// page ever turned event text into HTML.
const HOSTILE_TITLE: &str =
    r#"<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>payment down"#;

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
}

struct Seeded {
    t: Tocsin,
    _dir: tempfile::TempDir,
}

fn seed() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("monitors")).unwrap();
    std::fs::write(dir.path().join("monitors/cpu.toml"), CPU).unwrap();
    let t = Tocsin::start(
        dir.path(),
        "ingest_token = \"ing\"\nadmin_token = \"adm\"\nread_token = \"rd\"\npublic_url = \"http://console.test:9530\"\n",
    );
    // Five minutes of CPU: web01 and web02 hot, db01 quiet.
    let end = now();
    let mut lines = String::new();
    for i in 0..10 {
        let ts = (end - 290 + i * 30) * 1_000_000_000;
        for (host, v) in [
            ("web01", 97.0 + i as f64 * 0.1),
            ("web02", 93.0),
            ("db01", 12.0),
        ] {
            lines.push_str(&format!("cpu,host={host} usage={v} {ts}\n"));
        }
    }
    let (code, body) = t.post_token("/write", lines.as_bytes(), Some("ing"));
    assert_eq!(code, 204, "{body}");
    let r = t.run("cpu", Some("adm"));
    assert_eq!(r["events"].as_array().unwrap().len(), 2, "{r}");
    let hostile = json!({"status": "critical", "title": HOSTILE_TITLE,
        "message": "<b>not bold</b> & <a href=\"javascript:alert(1)\">link</a>",
        "customTags": {"service": "<i>pay</i>"}});
    let (code, body) = t.post(
        "/api/v1/events/create",
        hostile.to_string().as_bytes(),
        &[
            ("Authorization", "Bearer ing"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(code, 200, "{body}");
    Seeded { t, _dir: dir }
}

fn events(t: &Tocsin, query: &str) -> Vec<Value> {
    let v = t.get_token(&format!("/api/v1/events?{query}"), Some("rd"));
    v["events"].as_array().unwrap().clone()
}

fn ready(b: &Browser) {
    b.wait("body[data-ready='1']", 20);
}

#[test]
fn on_call_sees_events_and_issues_and_recovers_in_the_page() {
    let Some(tmp) = tempfile::tempdir().ok() else {
        return;
    };
    let Some(b) = Browser::start(&tmp.path().join("chromedriver.log")) else {
        return;
    };
    let s = seed();
    let t = &s.t;

    // The page asks for the read token once (reads need it on this server).
    b.goto(&format!("{}/", t.url));
    let input = b.wait("#token-dialog[open] #token-input", 20);
    b.type_into(&input, "rd");
    b.click(&b.wait("#token-ok", 5));
    ready(&b);
    b.wait("#event-list .event-row", 20);
    let rows = b.all("#event-list .event-row");
    assert_eq!(rows.len(), 3, "two monitor events and the custom one");
    let list_text = b.text(&b.wait("#event-list", 5));
    assert!(list_text.contains("web01: CPU"), "{list_text}");

    // Markup in a title is shown as text and runs nothing.
    assert!(
        list_text.contains(r#"<img src=x onerror="window.__pwned=1">"#),
        "{list_text}"
    );
    assert!(b
        .all("#event-list img, #event-list script, #event-list i")
        .is_empty());
    assert_eq!(
        b.exec("return window.__pwned === undefined", vec![]),
        json!(true)
    );

    // Filters: status and dimension tags, through the form.
    let tag = b.wait("#event-filters input[name=tag]", 5);
    b.type_into(&tag, "host:web02");
    b.click(&b.wait("#event-filters button[type=submit]", 5));
    b.until(10, "the tag filter applies", || {
        let rows = b.all("#event-list .event-row");
        (rows.len() == 1 && b.text(&rows[0]).contains("web02")).then_some(())
    });

    // The live list shows a new event without a reload.
    b.goto(&format!("{}/#/events", t.url));
    ready(&b);
    b.wait("#event-list .event-row", 10);
    b.until(10, "the stream connects", || {
        b.text(&b.wait(".live", 5)).contains("live").then_some(())
    });
    let (code, body) = t.post(
        "/api/v1/events/create",
        json!({"status": "warning", "title": "disk filling on db01", "customTags": {"host": "db01"}})
            .to_string()
            .as_bytes(),
        &[("Authorization", "Bearer ing"), ("Content-Type", "application/json")],
    );
    assert_eq!(code, 200, "{body}");
    b.until(10, "the new event arrives live", || {
        b.text(&b.wait("#event-list", 5))
            .contains("disk filling on db01")
            .then_some(())
    });

    // df_event_url opens the event's page: fields, detail, tags and the chart of the object.
    let web01 = events(t, "monitor=cpu&tag=host:web01");
    let url = web01[0]["df_event_url"].as_str().unwrap().to_string();
    let id = web01[0]["df_event_id"].as_str().unwrap();
    assert_eq!(url, format!("http://console.test:9530/#/events/{id}"));
    b.goto(&url.replace("http://console.test:9530", &t.url));
    ready(&b);
    let title = b.text(&b.wait("#event-title", 10));
    assert!(title.starts_with("web01: CPU 97"), "{title}");
    let fields = b.text(&b.wait("#event-fields", 5));
    for needle in [
        "df_event_detail",
        "df_monitor_checker_id",
        "host:web01",
        "df_issue_start_time",
    ] {
        assert!(fields.contains(needle), "{needle} in {fields}");
    }
    b.wait("#event-chart svg path.line", 15);
    assert_eq!(
        b.all("#event-chart svg line.threshold").len(),
        2,
        "critical and warning lines"
    );
    std::fs::create_dir_all(screenshots()).unwrap();
    b.screenshot(&screenshots().join("desktop-event.png"));

    // The custom event's page shows its hostile text as text too.
    let hostile = events(t, "source=custom&status=critical");
    b.goto(&format!(
        "{}/#/events/{}",
        t.url,
        hostile[0]["df_event_id"].as_str().unwrap()
    ));
    ready(&b);
    assert_eq!(b.text(&b.wait("#event-title", 10)), HOSTILE_TITLE);
    assert!(b
        .all("main img, main script, main b, main i, #event-message a")
        .is_empty());
    assert_eq!(
        b.exec("return window.__pwned === undefined", vec![]),
        json!(true)
    );

    // Issues: grouped by monitor, counted per status; recover web01 in the page.
    b.goto(&format!("{}/#/issues", t.url));
    ready(&b);
    let group = b.wait("details.group[data-group='monitor:cpu']", 10);
    assert_eq!(
        b.all("details.group[data-group='monitor:cpu'] .issue-row")
            .len(),
        2
    );
    let counts = b.text(&b.wait("#issue-counts", 5));
    assert!(counts.contains("critical 3"), "{counts}");
    b.screenshot(&screenshots().join("desktop-issues.png"));
    let _ = group;
    let web01_ref = web01[0]["df_monitor_checker_event_ref"].as_str().unwrap();
    let row = format!(".issue-row[data-ref='{web01_ref}']");
    b.click(&b.wait(&format!("{row} button"), 5));
    b.type_into(
        &b.wait("#recover-dialog[open] #recover-name", 5),
        "Ann Oncall",
    );
    b.type_into(&b.wait("#recover-email", 5), "ann@example.com");
    b.type_into(&b.wait("#recover-message", 5), "rebooted <web01> & checked");
    b.click(&b.wait("#recover-ok", 5));
    // The admin token is asked once, then the recovery goes out.
    b.type_into(&b.wait("#token-dialog[open] #token-input", 10), "adm");
    b.click(&b.wait("#token-ok", 5));
    b.until(15, "the recovered issue leaves the list", || {
        b.all(&row).is_empty().then_some(())
    });
    assert_eq!(
        b.all(".issue-row").len(),
        3,
        "web02 and the two custom issues stay"
    );
    let ok = events(t, "status=manual_ok");
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["df_monitor_checker_event_ref"], web01_ref);
    assert_eq!(ok[0]["df_user_name"], "Ann Oncall");
    assert_eq!(ok[0]["df_user_email"], "ann@example.com");
    assert_eq!(ok[0]["df_message"], "rebooted <web01> & checked");

    // Recover a whole group: the cpu group (web02) goes, the custom one stays.
    b.click(&b.wait("details.group[data-group='monitor:cpu'] summary button", 5));
    b.type_into(
        &b.wait("#recover-dialog[open] #recover-message", 5),
        "group done",
    );
    b.click(&b.wait("#recover-ok", 5));
    b.until(15, "the group leaves the list", || {
        b.all("details.group[data-group='monitor:cpu']")
            .is_empty()
            .then_some(())
    });
    assert_eq!(events(t, "status=manual_ok").len(), 2);

    // Monitors: "run now" makes an async run (web01 and web02 still hot: two new events).
    let before = events(t, "monitor=cpu&status=critical").len();
    common::next_second();
    b.goto(&format!("{}/#/monitors", t.url));
    ready(&b);
    b.click(&b.wait(".monitor-row[data-id='cpu'] .run-now", 10));
    b.until(15, "the run reports", || {
        b.text(&b.wait(".monitor-row[data-id='cpu'] .run-out", 5))
            .starts_with("ran:")
            .then_some(())
    });
    let after = events(t, "monitor=cpu&status=critical");
    assert_eq!(after.len(), before + 2);
    assert_eq!(after[0]["df_exec_mode"], "async");
    b.goto(&format!("{}/#/monitors/cpu", t.url));
    ready(&b);
    let def = b.text(&b.wait("#monitor-definition", 10));
    assert!(def.contains("critical = \"Result > 90\""), "{def}");

    // Statistics: bars per status.
    b.goto(&format!("{}/#/stats", t.url));
    ready(&b);
    b.wait("#stat-status .bar-row", 10);
    let st = b.text(&b.wait("#stat-status", 5));
    assert!(st.contains("critical") && st.contains("manual_ok"), "{st}");

    // Phone size: the same pages, laid out for a narrow screen.
    b.screen(390, 844, true);
    b.goto(&format!("{}/#/events", t.url));
    ready(&b);
    b.wait("#event-list .event-row", 10);
    let width = b.exec("return document.documentElement.scrollWidth", vec![]);
    assert!(
        width.as_i64().unwrap() <= 390,
        "no sideways scrolling on a phone: {width}"
    );
    b.screenshot(&screenshots().join("phone-events.png"));
    b.goto(&format!("{}/#/issues", t.url));
    ready(&b);
    b.wait(".issue-row", 10);
    b.screenshot(&screenshots().join("phone-issues.png"));
}
