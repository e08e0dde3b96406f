//! The README's "Using it" examples, pasted into a shell against a real cluster as a reader
//! would: every `sh` block runs (in order, in one shell, so variables carry over), and every
//! line it prints is JSON with the same fields as the README's answer below it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{eventually, try_call, Cluster};

/// The (commands, answers) pairs of the README section `## Using it`.
fn examples() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## Using it").nth(1).expect("README has a `Using it` section");
    let section = section.split("\n## ").next().unwrap();
    let mut pairs = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```sh\n") {
        let after = &rest[start + 6..];
        let end = after.find("```").unwrap();
        let commands = after[..end].to_string();
        let after = &after[end + 3..];
        let json = after.trim_start().strip_prefix("```json\n").expect("each sh block is followed by its json answer");
        let json_end = json.find("```").unwrap();
        pairs.push((commands, json[..json_end].lines().map(str::to_string).collect()));
        rest = &json[json_end + 3..];
    }
    pairs
}

/// The set of field paths of a JSON value (`members[].http`, ...), ignoring the values.
fn shape(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                shape(v, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn fields(line: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let mut out = BTreeSet::new();
    shape(&v, "", &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_examples_work_when_pasted() {
    let cluster = Cluster::start(3).await;
    // As after `lockio dev` has run a moment: every member has answered every other's probe.
    let status_url = cluster.url(2, "/cluster/status");
    eventually(Duration::from_secs(10), "every member reachable", || {
        let url = status_url.clone();
        async move {
            let members = try_call("GET", &url).await?.body["members"].as_array()?.clone();
            members.iter().all(|m| m["reachable"] == true && m["state"].is_string()).then_some(())
        }
    })
    .await;
    let examples = examples();
    assert!(examples.len() >= 6, "found only {} examples", examples.len());
    // The README talks to `lockio dev` (localhost:5000-5002); this cluster has other ports.
    let mut script = String::from("set -e\n");
    for (i, (commands, _)) in examples.iter().enumerate() {
        let mut commands = commands.clone();
        for id in 1..=3u64 {
            commands = commands.replace(
                &format!("localhost:{}", 4999 + id),
                &format!("127.0.0.1:{}", cluster.base(id).rsplit(':').next().unwrap()),
            );
        }
        script.push_str(&format!("echo '--- example {i}'\n{commands}\necho\n"));
    }
    let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "the examples failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let outputs: Vec<Vec<String>> = stdout
        .split("--- example ")
        .skip(1)
        .map(|chunk| {
            chunk
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .flat_map(|l| {
                    // curl -s prints no newline; two answers can share a line: split at "}{".
                    l.replace("}{", "}\n{").lines().map(str::to_string).collect::<Vec<_>>()
                })
                .collect()
        })
        .collect();
    for (i, ((commands, documented), got)) in examples.iter().zip(&outputs).enumerate() {
        assert_eq!(got.len(), documented.len(), "example {i} ({commands}) printed {got:?}");
        for (doc, line) in documented.iter().zip(got) {
            assert_eq!(
                fields(line),
                fields(doc),
                "example {i}: `{commands}` answered\n{line}\nbut the README shows\n{doc}"
            );
        }
    }
}
