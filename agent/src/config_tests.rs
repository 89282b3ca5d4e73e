//! Tests of configuration loading: defaults, and errors that name the key and line.

use super::*;

const GOOD: &str = r#"
[agent]
name = "web-01"
data_dir = "/var/lib/soc-agent"

[collector]
url = "https://soc.example.org:8443"
ca_file = "/etc/soc/ca.pem"

[shipping]
flush_interval = "2s"

[[sources]]
name = "ufw"
type = "iptables"
include = ["/var/log/ufw.log*"]
exclude = ["*.gz"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/soc/agent.toml"), text)
}

#[test]
fn good_config_gets_defaults() -> Result<(), ConfigError> {
    let c = parse(GOOD)?;
    assert_eq!(c.agent.name, "web-01");
    assert_eq!(c.agent.max_open_files, 256);
    assert_eq!(
        c.collector.key_file,
        Path::new("/var/lib/soc-agent/agent.key")
    );
    assert!(c.collector.secret.is_none());
    assert_eq!(c.shipping.flush_interval, Duration::from_secs(2));
    assert_eq!(c.shipping.retry_max, Duration::from_secs(60));
    assert_eq!(c.shipping.max_in_flight, 2);
    let s = &c.sources[0];
    assert_eq!(s.source_type, "iptables");
    assert_eq!(s.start_at, StartAt::End);
    assert_eq!(s.max_line_bytes, 65536);
    Ok(())
}

#[test]
fn example_config_in_deploy_is_valid() -> Result<(), ConfigError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
    let c = Config::load(&path)?;
    assert!(!c.sources.is_empty());
    Ok(())
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config should have been refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn typo_names_the_key_and_line() {
    let text = GOOD.replace("flush_interval", "flush_intervl");
    let msg = error_of(&text);
    assert!(msg.starts_with("/etc/soc/agent.toml:11:"), "{msg}");
    assert!(msg.contains("flush_intervl"), "{msg}");
}

#[test]
fn bad_duration_names_the_key_and_line() {
    let text = GOOD.replace("\"2s\"", "\"2 parsecs\"");
    let msg = error_of(&text);
    assert!(msg.starts_with("/etc/soc/agent.toml:11:"), "{msg}");
    assert!(msg.contains("shipping.flush_interval"), "{msg}");
}

#[test]
fn refusals() {
    let cases: &[(&str, &str, &str)] = &[
        ("https://soc", "http://soc", "scheme must be https"),
        ("name = \"ufw\"", "name = \"u f w\"", "sources[0].name"),
        ("\"/var/log/ufw.log*\"", "\"ufw.log*\"", "absolute"),
        ("\"*.gz\"", "\"[.gz\"", "sources[0].exclude"),
        (
            "flush_interval = \"2s\"",
            "batch_max_lines = 0",
            "out of range",
        ),
        (
            "flush_interval = \"2s\"",
            "max_in_flight = 0",
            "shipping.max_in_flight",
        ),
        (
            "flush_interval = \"2s\"",
            "max_in_flight = 17",
            "out of range",
        ),
        (
            "flush_interval = \"2s\"",
            "retry_initial = \"2m\"",
            "retry_max",
        ),
        ("type = \"iptables\"", "start_at = \"middle\"", "middle"),
    ];
    for (from, to, expect) in cases {
        let msg = error_of(&GOOD.replace(from, to));
        assert!(msg.contains(expect), "{to}: {msg}");
    }
}

#[test]
fn duplicate_source_and_no_source() {
    let dup = format!("{GOOD}\n[[sources]]\nname = \"ufw\"\ninclude = [\"/x\"]\n");
    let msg = error_of(&dup);
    assert!(
        msg.contains("defined twice") && msg.contains(":20:"),
        "{msg}"
    );
    let none = GOOD.split("[[sources]]").next().unwrap_or_default();
    assert!(error_of(none).contains("at least one"));
}

#[test]
fn both_secrets_refused_and_secret_is_redacted() -> Result<(), ConfigError> {
    let both = GOOD.replace(
        "ca_file = \"/etc/soc/ca.pem\"",
        "ca_file = \"ca.pem\"\nenrollment_secret = \"s3cret\"\nenrollment_secret_file = \"s\"",
    );
    assert!(error_of(&both).contains("not both"));
    let one = GOOD.replace(
        "ca_file = \"/etc/soc/ca.pem\"",
        "ca_file = \"ca.pem\"\nenrollment_secret = \"s3cret\"",
    );
    let c = parse(&one)?;
    assert_eq!(c.collector.ca_file, Path::new("/etc/soc/ca.pem"));
    assert!(!format!("{c:?}").contains("s3cret"));
    Ok(())
}

#[test]
fn labels_long_lines_and_rate_are_read_and_checked() -> Result<(), ConfigError> {
    let text = GOOD.replace(
        "[collector]",
        "[agent.labels]\nagency = \"so-tai-chinh\"\nlevel = \"district\"\ndistrict = \"An Binh\"\n\n[collector]",
    ) + "long_lines = \"split\"\nmax_lines_per_second = 500\n";
    let c = parse(&text)?;
    assert_eq!(c.agent.labels.len(), 3);
    assert_eq!(
        c.agent.labels.get("level").map(String::as_str),
        Some("district")
    );
    assert_eq!(c.sources[0].long_lines, LongLines::Split);
    assert_eq!(c.sources[0].max_lines_per_second, Some(500));
    let d = parse(GOOD)?;
    assert_eq!(d.sources[0].long_lines, LongLines::Truncate);
    assert_eq!(d.sources[0].max_lines_per_second, None);

    let bad = GOOD.replace(
        "[collector]",
        "[agent.labels]\nlevel = \"village\"\n\n[collector]",
    );
    let msg = error_of(&bad);
    assert!(
        msg.contains("agent.labels.level") && msg.contains("commune"),
        "{msg}"
    );
    assert!(msg.contains(":7:"), "names the line: {msg}");
    let bad = GOOD.replace(
        "[collector]",
        "[agent.labels]\nAgency = \"x\"\n\n[collector]",
    );
    assert!(error_of(&bad).contains("a-z 0-9"));
    let bad = GOOD.to_owned() + "max_lines_per_second = 0\n";
    assert!(error_of(&bad).contains("max_lines_per_second"));
    let bad = GOOD.to_owned() + "long_lines = \"wrap\"\n";
    assert!(error_of(&bad).contains("wrap"));
    Ok(())
}

#[test]
fn every_mistake_of_a_file_is_reported_at_once() {
    // A typo, a value serde refuses and four values the checks refuse, in
    // three tables: one run names all six, in the order of the file.
    let text = r#"
[agent]
name = "web 01"
data_dir = "/var/lib/soc-agent"

[collector]
url = "http://soc.example.org:8443"
ca_file = "/etc/soc/ca.pem"

[shipping]
flush_intervl = "2s"

[[sources]]
name = "ufw"
include = ["ufw.log*"]
start_at = "middle"
max_line_bytes = 0
"#;
    let msg = error_of(text);
    let lines: Vec<&str> = msg.lines().collect();
    let expect = [
        (":3: `agent.name`", "must be 1 to 128 characters"),
        (":7: `collector.url`", "scheme must be https"),
        (":11:1: `shipping.flush_intervl`", "unknown field"),
        (":15: `sources[0].include`", "absolute path"),
        (":16:12: `sources[0].start_at`", "unknown variant `middle`"),
        (":17: `sources[0].max_line_bytes`", "out of range"),
    ];
    assert_eq!(lines.len(), expect.len(), "{msg}");
    for (line, (place, what)) in lines.iter().zip(expect) {
        assert!(
            line.starts_with(&format!("/etc/soc/agent.toml{place}")) && line.contains(what),
            "{line}\n(all: {msg})"
        );
    }
}

#[test]
fn a_refused_required_key_is_reported_once_and_the_other_tables_still_checked() {
    let text = GOOD
        .replace("name = \"web-01\"", "name = 7")
        .replace("\"2s\"", "\"soon\"");
    let msg = error_of(&text);
    assert!(msg.contains(":3:8: `agent.name`: invalid type"), "{msg}");
    assert!(!msg.contains("missing field"), "{msg}");
    // The agent table cannot be read without its name, so the values of
    // the others are checked next time; their keys are checked now.
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let text = text.replace("flush_interval", "flush_intervl");
    let msg = error_of(&text);
    assert_eq!(msg.lines().count(), 2, "{msg}");
    assert!(msg.contains(":11:1: `shipping.flush_intervl`"), "{msg}");
}
