//! `socctl decode --json` as a rule writer uses it: the built binary, lines
//! on stdin, exactly one JSON object per input line, in input order, with
//! the fields under their ECS names; `--type` forces a decoder family.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `socctl --json decode [extra...]` with `input` on stdin; returns the
/// parsed output lines.
fn decode_json(input: &str, extra: &[&str]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_socctl"))
        .arg("--json")
        .arg("decode")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socctl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("socctl runs");
    assert!(
        out.status.success(),
        "socctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn field<'v>(v: &'v Value, name: &str) -> &'v Value {
    &v["fields"][name]
}

const LINES: &[&str] = &[
    "Mar  1 00:00:09 fw01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.7 DST=198.51.100.4 PROTO=TCP SPT=40000 DPT=22",
    "this line is nothing any decoder knows",
    "Mar  1 00:00:10 ws-alice clamd[812]: /home/alice/x.exe: Win.Trojan.Agent-1 FOUND",
    "",
    "20240105 101112 File \"C:\\a\\x.exe\" belongs to virus/spyware 'Troj/Agent-A'.",
];

#[test]
fn one_object_per_line_in_order_with_ecs_names() {
    let input = LINES.join("\n") + "\n";
    let out = decode_json(&input, &[]);
    assert_eq!(
        out.len(),
        LINES.len(),
        "one object per input line, empty ones too"
    );
    for (i, obj) in out.iter().enumerate() {
        assert_eq!(obj["line"], i + 1, "in input order");
        assert_eq!(field(obj, "message"), LINES[i], "the raw line is kept");
    }
    let fw = &out[0];
    assert_eq!(fw["decoder"], "iptables");
    assert_eq!(field(fw, "event.module"), "iptables");
    assert_eq!(field(fw, "source.ip"), "203.0.113.7");
    assert_eq!(field(fw, "destination.port"), 22);
    assert_eq!(field(fw, "event.action"), "deny");
    assert_eq!(field(fw, "host.name"), "fw01");
    // The rules each line would feed; a sequence only under the lines of
    // its steps, with the steps named.
    let rules = |v: &Value| -> Vec<String> {
        v["rules"]
            .as_array()
            .expect("rules is a list")
            .iter()
            .map(|r| r.as_str().expect("rule ids").to_string())
            .collect()
    };
    let sequence = "malware-then-outbound-traffic";
    assert!(rules(fw).iter().any(|r| r == "net-port-scan"), "{fw}");
    assert!(!rules(fw).iter().any(|r| r == sequence), "{fw}");
    assert_eq!(fw["steps"], serde_json::json!({}));

    assert_eq!(field(&out[1], "event.module"), "unknown");
    assert!(out[1]["decoder"].is_null());
    assert_eq!(rules(&out[1]), Vec::<String>::new());

    assert_eq!(field(&out[2], "malware.name"), "Win.Trojan.Agent-1");
    assert_eq!(field(&out[2], "event.action"), "malware_detected");
    assert!(rules(&out[2]).iter().any(|r| r == sequence), "{}", out[2]);
    assert_eq!(
        out[2]["steps"],
        serde_json::json!({ sequence: ["malware found"] })
    );

    assert_eq!(field(&out[4], "event.module"), "sophos_av");
    assert_eq!(field(&out[4], "file.path"), "C:\\a\\x.exe");
}

#[test]
fn forced_type_selects_the_decoder_family() {
    // A bare "key: value" line: SentinelOne's scan report when the agent says
    // so, nothing when the agent names another source type.
    let line = "Scan status: finished\n";
    let s1 = decode_json(line, &["--type", "sentinelone"]);
    assert_eq!(s1.len(), 1);
    assert_eq!(s1[0]["decoder"], "sentinelone_scan_status");
    assert_eq!(field(&s1[0], "log.source_type"), "sentinelone");
    let other = decode_json(line, &["--type", "clamav"]);
    assert_eq!(field(&other[0], "event.module"), "unknown");

    // A netfilter line is not decoded as iptables when forced to another type.
    let fw = "Mar  1 00:00:09 fw01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=203.0.113.7 DST=198.51.100.4 PROTO=TCP SPT=1 DPT=22\n";
    let forced = decode_json(fw, &["--type", "checkpoint"]);
    assert_ne!(forced[0]["decoder"], "iptables");
    assert_eq!(
        decode_json(fw, &["--type", "ufw"])[0]["decoder"],
        "iptables"
    );
}

/// Without `--json`, what a log line carries is printed for a terminal: an
/// escape sequence or a right-to-left override in the line (here in a sshd
/// user name, so in a decoded field too) is written out as an escape,
/// never sent to the terminal as it is.
#[test]
fn control_characters_of_a_line_are_shown_escaped() {
    let line = "Mar  1 00:00:09 web01 sshd[812]: Invalid user r\u{1b}]2;pwned\u{7}oot\u{202e}gpj.exe from 203.0.113.7 port 4242\n";
    let out = Command::new(env!("CARGO_BIN_EXE_socctl"))
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(line.as_bytes())?;
            child.wait_with_output()
        })
        .expect("socctl runs");
    assert!(
        out.status.success(),
        "socctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && (c.is_control() || c == '\u{202e}'))
        .collect();
    assert!(raw.is_empty(), "raw controls {raw:?} in:\n{text}");
    let escaped = r"r\x1b]2;pwned\x07oot\u{202e}gpj.exe";
    assert!(
        text.lines().next().is_some_and(|l| l.contains(escaped)),
        "the line, escaped:\n{text}"
    );
    assert!(
        text.contains(&format!("user.name: {escaped}")),
        "the decoded field, escaped:\n{text}"
    );
}
