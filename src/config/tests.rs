//! Config parsing: a full file reads into typed values; each bad value is refused with its key
//! and line.

use super::*;

const FULL: &str = r#"data = "./data"
listen = "127.0.0.1:9530"
monitors = "./monitors"
scripts = "./scripts"
ingest_token = "in"
admin_token = "ad"
read_token = "rd"
public_url = "http://tocsin.example:9530"
max_body_bytes = 1024
[retention]
metrics = "2d"
events = 3600
[host_input]
enabled = false
every = "30s"
[[access_keys]]
id = "ak"
secret = "sk"
[[policies]]
id = "oncall"
name = "On-call"
silent_timeout = "1h"
expire = "12h"
[[policies.targets]]
url = "http://127.0.0.1:8080/hook"
statuses = ["critical", "nodata_ok"]
tags = { env = ["prod", "staging"], team = "db" }
format = "alertmanager"
secret = "s"
timeout = "5s"
[[policies.mutes]]
start = "2024-05-01T22:00:00Z"
end = 1714615200
monitors = ["host-disk"]
[[policies.mutes]]
cron = "0 2 * * *"
duration = "1h"
tags = { env = "dev" }
[[policies]]
id = "default"
[[policies.targets]]
url = "https://example.com/x"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("t.toml"))
}

fn refused(text: &str) -> String {
    parse(text).expect_err("must be refused").to_string()
}

#[test]
fn a_full_config_reads_into_typed_values() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.data, Some(PathBuf::from("./data")));
    assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9530"));
    assert_eq!(c.scripts, Some(PathBuf::from("./scripts")));
    assert_eq!(c.public_url.as_deref(), Some("http://tocsin.example:9530"));
    assert_eq!(c.max_body_bytes, 1024);
    assert_eq!(
        (
            c.ingest_token.as_deref(),
            c.admin_token.as_deref(),
            c.read_token.as_deref()
        ),
        (Some("in"), Some("ad"), Some("rd"))
    );
    assert_eq!(c.retention.metrics, Seconds(2 * 86_400));
    assert_eq!(c.retention.events, Seconds(3600));
    assert_eq!(
        c.host_input,
        HostInput {
            enabled: false,
            every: Seconds(30)
        }
    );
    assert_eq!(c.access_keys[0].id, "ak");
    assert_eq!(c.policy_ids(), vec!["oncall", "default"]);
    let p = &c.policies[0];
    assert_eq!(p.display_name(), "On-call");
    assert_eq!(p.silent_timeout, Some(Seconds(3600)));
    assert_eq!(p.expire, Seconds(12 * 3600));
    let t = &p.targets[0];
    assert_eq!(t.url.0, "http://127.0.0.1:8080/hook");
    assert_eq!(t.statuses, vec![Status::Critical, Status::NodataOk]);
    assert_eq!(t.format, Format::Alertmanager);
    assert_eq!(t.timeout, Seconds(5));
    assert_eq!(
        t.tags.as_ref().unwrap()["env"],
        TagValues::Many(vec!["prod".into(), "staging".into()])
    );
    assert_eq!(
        p.mutes[0].window,
        MuteWindow::OneOff {
            start: Timestamp(1_714_600_800),
            end: Timestamp(1_714_615_200)
        }
    );
    assert_eq!(p.mutes[0].monitors, Some(vec!["host-disk".to_string()]));
    match &p.mutes[1].window {
        MuteWindow::Repeating { cron, duration } => {
            assert_eq!(cron.expr, "0 2 * * *");
            assert_eq!(*duration, Seconds(3600));
        }
        other => panic!("expected a repeating mute, got {other:?}"),
    }
    assert_eq!(c.policy_names()["default"], "default");
}

#[test]
fn defaults_are_declared_with_the_fields() {
    let c = parse("[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"http://h/\"\n").unwrap();
    assert_eq!(c.retention, Retention::default());
    assert_eq!(c.retention.metrics, Seconds(7 * 86_400));
    assert_eq!(c.retention.events, Seconds(30 * 86_400));
    assert_eq!(c.host_input, HostInput::default());
    assert!(c.host_input.enabled);
    assert_eq!(c.max_body_bytes, 32 << 20);
    let (p, t) = (&c.policies[0], &c.policies[0].targets[0]);
    assert_eq!((p.expire, p.silent_timeout), (Seconds(86_400), None));
    assert_eq!((t.format, t.timeout), (Format::Json, Seconds(10)));
    assert!(!t.statuses.contains(&Status::Info));
    assert_eq!(t.statuses.len(), ALL_STATUSES.len() - 1);
    // An empty section takes the same defaults as a missing one.
    let c = parse("[retention]\n[host_input]\n").unwrap();
    assert_eq!(c.retention, Retention::default());
    assert_eq!(c.host_input, HostInput::default());
}

#[test]
fn a_bad_duration_is_refused_with_its_key_and_line() {
    let e = refused("listen = \"x\"\n[retention]\nmetrics = \"7x\"\n");
    assert!(e.starts_with("t.toml:3: retention.metrics: "), "{e}");
    assert!(e.contains("unknown unit \"x\""), "{e}");
    let e = refused("[[policies]]\nid = \"p\"\nsilent_timeout = \"soon\"\n");
    assert!(e.starts_with("t.toml:3: policies.silent_timeout: "), "{e}");
}

#[test]
fn an_unknown_status_is_refused_naming_it_and_the_valid_ones() {
    let e = refused("[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"http://h/\"\nstatuses = [\"critical\", \"fatal\"]\n");
    assert!(
        e.starts_with("t.toml:5: policies.targets.statuses: "),
        "{e}"
    );
    assert!(e.contains("unknown status \"fatal\""), "{e}");
    assert!(
        e.contains("expected one of ok, info, warning, error, critical, nodata"),
        "{e}"
    );
}

#[test]
fn an_unknown_format_is_refused_naming_it_and_the_valid_ones() {
    let e = refused(
        "[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"http://h/\"\nformat = \"slack\"\n",
    );
    assert!(e.starts_with("t.toml:5: policies.targets.format: "), "{e}");
    assert!(
        e.contains("unknown format \"slack\": expected one of json, alertmanager, alertmanager_api, dingtalk"),
        "{e}"
    );
}

#[test]
fn alertmanager_api_targets_take_a_base_url_and_a_resend() {
    let t = |body: &str| format!("[[policies]]\nid = \"p\"\n[[policies.targets]]\n{body}");
    let c = parse(&t(
        "url = \"http://am:9093/\"\nformat = \"alertmanager_api\"\n",
    ))
    .unwrap();
    let target = &c.policies[0].targets[0];
    assert_eq!(target.resend, Some(Seconds(60)), "default 1m");
    assert_eq!(target.post_url(), "http://am:9093/api/v2/alerts");
    let c = parse(&t(
        "url = \"https://proxy/am\"\nformat = \"alertmanager_api\"\nresend = \"15s\"\n",
    ))
    .unwrap();
    let target = &c.policies[0].targets[0];
    assert_eq!(target.resend, Some(Seconds(15)));
    assert_eq!(target.post_url(), "https://proxy/am/api/v2/alerts");
    // other formats post to the URL as given and have no resend
    let c = parse(&t("url = \"http://h/hook/\"\n")).unwrap();
    assert_eq!(c.policies[0].targets[0].post_url(), "http://h/hook/");
    assert_eq!(c.policies[0].targets[0].resend, None);

    let e = refused(&t(
        "url = \"http://am:9093\"\nformat = \"alertmanager_api\"\nresend = \"soon\"\n",
    ));
    assert!(e.starts_with("t.toml:6: policies.targets.resend: "), "{e}");
    let e = refused(&t(
        "url = \"http://am:9093\"\nformat = \"alertmanager_api\"\nresend = 0\n",
    ));
    assert!(
        e.contains("policies.targets.resend: 0s is too short; give at least \"1s\""),
        "{e}"
    );
    let e = refused(&t("url = \"http://h/hook\"\nresend = \"1m\"\n"));
    assert!(
        e.contains("policies.targets.resend: only format = \"alertmanager_api\" re-sends alerts"),
        "{e}"
    );
    for url in [
        "http://am:9093/api/v2/alerts",
        "http://am:9093/api/v2/",
        "http://am:9093/?x=1",
    ] {
        let e = refused(&t(&format!(
            "url = \"{url}\"\nformat = \"alertmanager_api\"\n"
        )));
        assert!(
            e.contains("policies.targets.url: ") && e.contains("takes Alertmanager's base URL"),
            "{url}: {e}"
        );
    }
}

#[test]
fn a_bad_cron_is_refused_with_its_key_and_line() {
    let e = refused(
        "[[policies]]\nid = \"p\"\n[[policies.mutes]]\ncron = \"61 * * * *\"\nduration = \"1h\"\n",
    );
    assert!(
        e.starts_with("t.toml:4: policies.mutes.cron: cron \"61 * * * *\""),
        "{e}"
    );
    let e = refused(
        "[[policies]]\nid = \"p\"\n[[policies.mutes]]\ncron = \"* *\"\nduration = \"1h\"\n",
    );
    assert!(e.contains("expected 5 fields"), "{e}");
}

#[test]
fn an_unknown_key_is_refused_naming_it_and_its_line() {
    let e = refused("listen = \"x\"\nlisten_addr = \"y\"\n");
    assert!(
        e.starts_with("t.toml:2: unknown field `listen_addr`"),
        "{e}"
    );
    let e = refused("[host_input]\nenabled = true\nevry = \"1s\"\n");
    assert!(e.starts_with("t.toml:3: unknown field `evry`"), "{e}");
    let e = refused("[[policies]]\nid = \"p\"\n[[policies.mutes]]\nstart = 1\nend = 2\nwhen = 3\n");
    assert!(e.contains("unknown field `when`"), "{e}");
}

#[test]
fn mutes_need_one_window_that_ends_after_it_starts() {
    let e = refused("[[policies]]\nid = \"p\"\n[[policies.mutes]]\nstart = 10\nend = 5\n");
    assert!(e.contains("end must be after start"), "{e}");
    let e =
        refused("[[policies]]\nid = \"p\"\n[[policies.mutes]]\nstart = 10\nduration = \"1h\"\n");
    assert!(e.contains("give either start and end"), "{e}");
    let e =
        refused("[[policies]]\nid = \"p\"\n[[policies.mutes]]\nstart = \"tomorrow\"\nend = 5\n");
    assert!(e.starts_with("t.toml:4: policies.mutes.start: "), "{e}");
}

#[test]
fn urls_and_policy_ids_are_checked() {
    let e = refused("[[policies]]\nid = \"p\"\n[[policies.targets]]\nurl = \"ftp://h/\"\n");
    assert!(e.starts_with("t.toml:4: policies.targets.url: "), "{e}");
    assert!(e.contains("expected an http:// or https:// URL"), "{e}");
    let e = refused("[[policies]]\nid = \"p\"\n[[policies]]\nid = \"p\"\n");
    assert_eq!(
        e,
        "t.toml:4: policies.id: id \"p\" is used twice; ids must be unique"
    );
}

#[test]
fn limits_read_typed_with_defaults_and_refuse_unknown_keys() {
    let c = parse("").unwrap();
    assert_eq!(c.limits.max_series, 2_000_000);
    assert_eq!(c.limits.max_fields_per_point, 1_000);
    assert_eq!(c.limits.max_tags_per_series, 64);
    let c = parse("[limits]\nmax_series = 3\nmax_tags_per_series = 8\n").unwrap();
    assert_eq!(c.limits.max_series, 3);
    assert_eq!(c.limits.max_fields_per_point, 1_000);
    let p = c.limits.point_limits();
    assert_eq!((p.max_fields, p.max_tags), (1_000, 8));
    let err = refused("[limits]\nmax_seriez = 3\n");
    assert!(err.contains("max_seriez") && err.contains(":2:"), "{err}");
    // a negative count is not a usize: refused at load
    refused("[limits]\nmax_series = -1\n");
}

#[test]
fn no_config_file_means_the_declared_defaults() {
    let c = Config::default();
    assert_eq!(c.max_body_bytes, 32 << 20);
    assert!(c.host_input.enabled);
    assert_eq!(c.limits.max_series, 2_000_000);
    assert_eq!(c.limits.max_fields_per_point, 1_000);
    assert!(c.policies.is_empty());
}
