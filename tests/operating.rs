//! The operator kit, checked with the real tools: `/metrics` passes `promtool check metrics`;
//! the shipped rules pass `promtool check rules` and their unit tests; every metric the
//! Grafana dashboard (`conf/grafana/sluice.json`) and the rules (`conf/prometheus/`) name
//! exists in a scrape; and a real Prometheus that scraped a test sluice answers every
//! dashboard and rule expression without error and with data; every shipped alert fires on
//! a real scrape of a sluice in trouble, for that node, and none on a fresh one. README's
//! metric table matches `/metrics` family by family. Per-stream series stay
//! bounded against invented hashes. Request ids travel from the player to the origin, the
//! logs, `access_logs` and back.
//!
//! `promtool` and `prometheus` come from Debian's `prometheus` package
//! (scripts/ensure-test-deps.sh installs it); a missing binary fails these tests.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    admin_key, client, free_port, metrics, RedisServer, Reply, RunningOrigin, Sluice, TestOrigin,
};
use serde_json::Value;

const STREAM_SECRET: &str = "operating-test-stream-secret-0123456789";

fn conf(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Run a tool of the `prometheus` package; fails loudly when it is not installed.
fn tool(bin: &str) -> Command {
    let path = format!("/usr/bin/{bin}");
    let found = if Path::new(&path).exists() {
        path
    } else {
        bin.to_string()
    };
    if Command::new(&found).arg("--version").output().is_err() {
        panic!(
            "`{bin}` is not installed: these tests need Debian's `prometheus` package \
             (scripts/ensure-test-deps.sh installs it: apt-get install prometheus)"
        );
    }
    Command::new(found)
}

fn origin() -> RunningOrigin {
    let mut o = TestOrigin::new()
        .route(
            "/movie-open/seg1.ts",
            Reply::ok(vec![7u8; 4000], "video/mp2t"),
        )
        .route(
            "/movie-open/seg2.ts",
            Reply::ok(vec![8u8; 2000], "video/mp2t"),
        )
        // The configured content asked for in another spelling (the origin's paths are
        // case-sensitive; the label is the configured one).
        .route(
            "/MOVIE-OPEN/seg1.ts",
            Reply::ok(vec![7u8; 10], "video/mp2t"),
        )
        .route("/movie-broken/seg1.ts", Reply::status(503));
    for i in 0..5 {
        o = o.route(
            &format!("/real-{i}/seg.ts"),
            Reply::ok(vec![1u8; 100], "video/mp2t"),
        );
    }
    o.start()
}

fn config(origin: &RunningOrigin, extra: &str) -> String {
    format!(
        "origins:\n  bucket: {url}\nadmin:\n  rate_limit_api: 2\nstreaming:\n  secret: {STREAM_SECRET}\n  contents:\n    - id: open\n      hash: movie-open\n    - id: gated\n      hash: movie-gated\n      token_required: true\n{extra}",
        url = origin.url()
    )
}

async fn get(s: &Sluice, path: &str) -> u16 {
    client()
        .get(s.edge_url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One round of every kind of traffic the dashboard and the rules look at: misses and hits,
/// an origin error, gate refusals, admin rate-limit refusals.
async fn drive(s: &Sluice) {
    for _ in 0..3 {
        assert_eq!(get(s, "/stream/movie-open/seg1.ts").await, 200);
        assert_eq!(get(s, "/stream/movie-open/seg2.ts").await, 200);
    }
    assert_eq!(get(s, "/stream/real-0/seg.ts").await, 200);
    assert!(get(s, "/stream/movie-broken/seg1.ts").await >= 500);
    assert_eq!(get(s, "/stream/movie-gated/master.m3u8").await, 401);
    let mut limited = 0;
    for _ in 0..4 {
        let r = client()
            .get(s.admin_url("/api/stream-ids"))
            .send()
            .await
            .unwrap();
        limited += usize::from(r.status() == 429);
    }
    assert!(limited > 0, "admin.rate_limit_api did not refuse");
}

/// Every PromQL expression of the dashboard (panel targets).
fn dashboard_exprs() -> Vec<String> {
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(conf("conf/grafana/sluice.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(out.len() >= 10, "the dashboard lost its panels");
    out
}

/// The rules file: (record name or alert name, expr, is_alert).
fn rules() -> Vec<(String, String, bool)> {
    let y: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(conf("conf/prometheus/sluice-rules.yml")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for g in y["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let expr = r["expr"].as_str().expect("expr").to_string();
            match (r["record"].as_str(), r["alert"].as_str()) {
                (Some(name), _) => out.push((name.to_string(), expr, false)),
                (_, Some(name)) => out.push((name.to_string(), expr, true)),
                _ => panic!("a rule with neither record nor alert"),
            }
        }
    }
    out
}

/// `sluice_…` metric names in a PromQL expression (recording rules are `sluice:…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if start_ok && expr[i..].starts_with("sluice_") {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| i + e);
            names.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// An alert's condition operands: `A > 1 and B < 2` → [`A`, `B`] (see the rules file's
/// header: each alert is comparison clauses joined by `and`).
fn alert_operands(expr: &str) -> Vec<String> {
    expr.split(" and ")
        .map(|clause| {
            let cut = clause
                .rfind(['<', '>'])
                .unwrap_or_else(|| panic!("alert clause without a comparison: {clause}"));
            let (operand, threshold) = clause.split_at(cut);
            let threshold = threshold.trim_start_matches(['<', '>', '=']).trim();
            assert!(
                threshold.parse::<f64>().is_ok(),
                "alert clause not `<operand> <cmp> <number>`: {clause}"
            );
            operand.trim().to_string()
        })
        .collect()
}

#[test]
fn alert_operands_strip_comparisons() {
    assert_eq!(
        alert_operands("a:b > 0.05 and c_total < 1"),
        vec!["a:b".to_string(), "c_total".to_string()]
    );
    assert_eq!(
        metric_names("sum(rate(sluice_a_total{x=\"y\"}[5m])) / sluice:b + sluice_c_bucket"),
        ["sluice_a_total", "sluice_c_bucket"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

/// A metric name present in Prometheus text (as a sample line).
fn exposed(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
    })
}

#[tokio::test]
async fn metrics_pass_promtool_and_contain_every_name_the_dashboard_and_rules_use() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    drive(&s).await;
    let text = metrics(&s).await;

    let mut check = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut wanted = BTreeSet::new();
    for e in dashboard_exprs() {
        wanted.extend(metric_names(&e));
    }
    for (_, e, _) in rules() {
        wanted.extend(metric_names(&e));
    }
    assert!(wanted.len() >= 12, "{wanted:?}");
    let missing: Vec<_> = wanted.iter().filter(|n| !exposed(&text, n)).collect();
    assert!(
        missing.is_empty(),
        "named by the dashboard or rules but not in /metrics: {missing:?}"
    );

    // Every series of a known label set exists before its first event.
    for series in [
        "sluice_auth_rejections_total{reason=\"stream_token_revoked\",surface=\"stream\"} 0",
        "sluice_auth_rejections_total{reason=\"key_token_invalid\",surface=\"key\"} 0",
        "sluice_rate_limited_total{class=\"verify\"} 0",
        "sluice_stream_requests_total{route=\"stream\",stream=\"movie-gated\"} 0",
        "sluice_stream_requests_total{route=\"proxy\",stream=\"other\"} 0",
        "sluice_ctx_store_evictions_total{reason=\"expired\"} 0",
        "sluice_lifecycle_events_total{event=\"upgrade_handover\"} 0",
    ] {
        assert!(text.lines().any(|l| l == series), "no `{series}` at start");
    }
    // The traffic shows up where the dashboard looks.
    assert!(
        common::metric(
            &text,
            "sluice_auth_rejections_total{reason=\"stream_token_missing\",surface=\"stream\"}"
        ) >= 1.0
    );
    assert!(common::metric(&text, "sluice_rate_limited_total{class=\"api\"}") >= 1.0);
    let open = "{route=\"stream\",stream=\"movie-open\"}";
    assert_eq!(
        common::metric(&text, &format!("sluice_stream_requests_total{open}")),
        6.0
    );
    assert_eq!(
        common::metric(&text, &format!("sluice_stream_bytes_out_total{open}")),
        18000.0
    );
    assert_eq!(
        common::metric(&text, &format!("sluice_stream_origin_fetches_total{open}")),
        2.0
    );
    assert_eq!(
        common::metric(&text, &format!("sluice_stream_cache_hits_total{open}")),
        4.0
    );
    assert!(common::metric(&text, "sluice_upstream_errors_total{kind=\"status_5xx\"}") >= 1.0);
}

/// A metric family as README's "Every metric" table documents it.
#[derive(Debug)]
struct DocumentedFamily {
    kind: String,
    labels: BTreeSet<String>,
    /// Exposed only with `state.redis`.
    redis_only: bool,
}

/// Backticked words of `cell` outside parentheses: `` `a` (`x`, `y`), `b` `` → a, b.
fn backticked_outside_parens(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut word: Option<String> = None;
    for c in cell.chars() {
        match (c, word.as_mut()) {
            ('`', Some(w)) => {
                if depth == 0 {
                    out.push(std::mem::take(w));
                }
                word = None;
            }
            (c, Some(w)) => w.push(c),
            ('`', None) => word = Some(String::new()),
            ('(', None) => depth += 1,
            (')', None) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

/// README's "Every metric" table: family name → what it documents.
fn documented_families() -> std::collections::BTreeMap<String, DocumentedFamily> {
    let readme = std::fs::read_to_string(conf("README.md")).unwrap();
    let at = readme
        .find("**Every metric**")
        .expect("README has no \"Every metric\" table");
    let mut out = std::collections::BTreeMap::new();
    let rows = readme[at..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2);
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "README metric row: {row}");
        let names = backticked_outside_parens(cells[0]);
        assert_eq!(names.len(), 1, "one family per README row: {row}");
        let labels = if cells[2] == "—" {
            BTreeSet::new()
        } else {
            backticked_outside_parens(cells[2]).into_iter().collect()
        };
        let family = DocumentedFamily {
            kind: cells[1].to_string(),
            labels,
            redis_only: cells[3].starts_with("`state.redis` only"),
        };
        assert!(
            out.insert(names[0].clone(), family).is_none(),
            "{} documented twice",
            names[0]
        );
    }
    assert!(
        out.len() >= 40,
        "the README metric table lost rows: {out:?}"
    );
    out
}

/// The label names of one sample line's `{…}` (values may hold any escaped character).
fn sample_label_names(labels: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = labels.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() {
            return names;
        }
        names.push(name.trim_start_matches(',').to_string());
        assert_eq!(chars.next(), Some('"'), "label value in {labels}");
        let mut escaped = false;
        for c in chars.by_ref() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('"', false) => break,
                _ => escaped = false,
            }
        }
    }
}

/// A scrape's families: name → (type, label names of its samples, `le` aside).
fn exposed_families(text: &str) -> std::collections::BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_string(), (kind.to_string(), BTreeSet::new()));
        }
    }
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = l.find(['{', ' ']).unwrap();
        let sample = &l[..end];
        let family = std::iter::once(sample)
            .chain(
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|s| sample.strip_suffix(s)),
            )
            .find(|f| out.contains_key(*f))
            .unwrap_or_else(|| panic!("sample of no family: {l}"))
            .to_string();
        if l[end..].starts_with('{') {
            let close = l.rfind('}').unwrap();
            let labels = &mut out.get_mut(&family).unwrap().1;
            labels.extend(
                sample_label_names(&l[end + 1..close])
                    .into_iter()
                    .filter(|n| n != "le"),
            );
        }
    }
    out
}

/// Every family exposed is documented with its type and labels, and every documented
/// family is exposed (`state.redis` ones when `redis` is set).
fn assert_matches_readme(text: &str, redis: bool) {
    let documented = documented_families();
    let exposed = exposed_families(text);
    let wanted: BTreeSet<&String> = documented
        .iter()
        .filter(|(_, d)| redis || !d.redis_only)
        .map(|(n, _)| n)
        .collect();
    let got: BTreeSet<&String> = exposed.keys().collect();
    let undocumented: Vec<_> = got.difference(&wanted).collect();
    let missing: Vec<_> = wanted.difference(&got).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "redis={redis}: exposed but not in README's metric table: {undocumented:?}; \
         in README but not exposed: {missing:?}"
    );
    for (name, (kind, labels)) in &exposed {
        let d = &documented[name];
        assert_eq!(
            &d.kind, kind,
            "{name}: README says {}, /metrics {kind}",
            d.kind
        );
        assert_eq!(&d.labels, labels, "{name}: labels in README vs /metrics");
    }
}

#[test]
fn readme_metric_table_parser() {
    assert_eq!(
        backticked_outside_parens("`listener` (`edge`, `admin`), `class`, `status`"),
        ["listener", "class", "status"]
    );
    assert_eq!(
        sample_label_names(r#"a="x,y",b="q\"}",c="""#),
        ["a", "b", "c"]
    );
    let f = exposed_families(
        "# TYPE h histogram\nh_bucket{c=\"s\",le=\"0.5\"} 1\nh_sum{c=\"s\"} 1\nh_count{c=\"s\"} 1\n# TYPE g gauge\ng 3\n",
    );
    assert_eq!(f["h"], ("histogram".into(), ["c".to_string()].into()));
    assert_eq!(f["g"], ("gauge".into(), BTreeSet::new()));
}

/// README's metric table and `/metrics` agree: on a fresh sluice, and on one with Redis.
#[tokio::test]
async fn readme_metric_table_matches_a_fresh_scrape() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let text = metrics(&s).await;
    assert_matches_readme(&text, false);
    // The process and the build are there.
    assert!(common::metric(&text, "process_resident_memory_bytes") > 0.0);
    assert!(common::metric(&text, "process_open_fds") > 0.0);
    assert!(common::metric(&text, "process_start_time_seconds") > 1.7e9);
    let build = format!(
        "sluice_build_info{{commit=\"{}\",version=\"{}\"}} 1",
        option_env!("SLUICE_BUILD_COMMIT")
            .filter(|c| !c.is_empty())
            .unwrap_or("unknown"),
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == build), "no `{build}`");
    drop(s);

    let redis = RedisServer::start();
    let node = Sluice::start_node(&redis, "", &config(&o, ""), &[]);
    assert_matches_readme(&metrics(&node).await, true);
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let out = tool("promtool")
        .args(["check", "rules"])
        .arg(conf("conf/prometheus/sluice-rules.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tool("promtool")
        .args(["test", "rules", "sluice-rules.test.yml"])
        .current_dir(conf("conf/prometheus"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("SUCCESS"),
        "promtool test rules:\n{said}"
    );
    // Each alert is tested firing and not firing, on series labelled as a real scrape
    // labels them.
    let tests = std::fs::read_to_string(conf("conf/prometheus/sluice-rules.test.yml")).unwrap();
    let series: Vec<&str> = tests
        .lines()
        .filter(|l| l.trim_start().starts_with("- series:"))
        .collect();
    assert!(series.len() >= 10, "{series:?}");
    for l in series {
        assert!(
            l.contains("job=\"sluice\"") && l.contains("instance=\""),
            "an input series without the scrape's job and instance labels: {l}"
        );
    }
    for (name, _, alert) in rules() {
        if alert {
            let blocks: Vec<&str> = tests
                .split("  - interval:")
                .filter(|b| b.contains(&format!("alertname: {name}\n")))
                .collect();
            assert!(
                blocks.iter().any(|b| b.contains("exp_labels"))
                    && blocks.iter().any(|b| b.contains("exp_alerts: []")),
                "{name} needs a firing and a silent unit test"
            );
        }
    }
}

/// A `prometheus` server on a free port with its own storage, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scraping `target` (host:port) every second, with the shipped rules evaluated every
    /// second (the file's 15 s intervals shortened for the test; the expressions are as
    /// shipped).
    fn start(target: &str) -> Prometheus {
        Self::start_with(&[target.to_string()], &shipped_rules(false))
    }

    /// Scraping `targets` every second, evaluating `rules` (a rules file's text).
    fn start_with(targets: &[String], rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sluice-rules.yml"), rules).unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [sluice-rules.yml]\nscrape_configs:\n  - job_name: sluice\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = tool("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query`: the result vector, or the error Prometheus gave.
    async fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let r = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            // A scalar or string result.
            other => Ok(vec![other.clone()]),
        }
    }

    /// Wait until `q` has a result with a value of at least `min`.
    async fn wait_for(&self, q: &str, min: f64, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(rows) = self.query(q).await {
                let best = rows
                    .iter()
                    .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                    .fold(f64::NEG_INFINITY, f64::max);
                if best >= min {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "prometheus: `{q}` did not reach {min} within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped rules file with its 15 s intervals shortened to 1 s (the expressions as
/// shipped); with `no_for`, every alert's `for:` is 0 s, so an alert fires on the first
/// evaluation its condition holds (each `for:` line replaced is checked: one per alert).
fn shipped_rules(no_for: bool) -> String {
    let text = std::fs::read_to_string(conf("conf/prometheus/sluice-rules.yml"))
        .unwrap()
        .replace("interval: 15s", "interval: 1s");
    if !no_for {
        return text;
    }
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => {
                replaced += 1;
                format!("{}for: 0s", &l[..l.len() - l.trim_start().len()])
            }
            None => l.to_string(),
        })
        .collect();
    let alerts = rules().iter().filter(|(_, _, alert)| *alert).count();
    assert_eq!(replaced, alerts, "one `for:` per alert");
    lines.join("\n") + "\n"
}

/// Grafana's interval variables as Prometheus sees them.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
}

#[tokio::test]
async fn a_real_prometheus_answers_every_dashboard_and_rule_expression() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    drive(&s).await;
    let prom = Prometheus::start(&s.admin.to_string());
    // A first scrape, then traffic between scrapes (so rates are not zero), then more.
    prom.wait_for(
        "count_over_time(up{job=\"sluice\"}[1m])",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    prom.wait_for("up{job=\"sluice\"}", 1.0, Duration::from_secs(5))
        .await;
    drive(&s).await;
    prom.wait_for(
        "count_over_time(up{job=\"sluice\"}[1m])",
        3.0,
        Duration::from_secs(10),
    )
    .await;
    // The recording rules have run on the new samples.
    prom.wait_for(
        "sluice:auth_rejections_total:rate5m",
        0.000_001,
        Duration::from_secs(10),
    )
    .await;

    let mut failures = Vec::new();
    let mut checked = 0;
    for e in dashboard_exprs() {
        let q = grafana_to_promql(&e);
        checked += 1;
        match prom.query(&q).await {
            Err(err) => failures.push(format!("dashboard `{q}`: {err}")),
            Ok(rows) if rows.is_empty() => failures.push(format!("dashboard `{q}`: empty")),
            Ok(_) => {}
        }
    }
    for (name, expr, alert) in rules() {
        let mut queries = vec![expr.clone()];
        if alert {
            // The condition itself is usually (rightly) empty: evaluate its operands.
            queries = alert_operands(&expr);
        } else {
            queries.push(name.clone());
        }
        for q in queries {
            checked += 1;
            match prom.query(&q).await {
                Err(err) => failures.push(format!("rule {name} `{q}`: {err}")),
                Ok(rows) if rows.is_empty() => failures.push(format!("rule {name} `{q}`: empty")),
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The data is the test's traffic, not zeros: egress by stream, refusals by reason.
    let top = prom
        .query("topk(1, sum by (stream) (increase(sluice_stream_bytes_out_total[1m])))")
        .await
        .unwrap();
    assert_eq!(top[0]["metric"]["stream"], "movie-open", "{top:?}");
    prom.wait_for(
        "sum(sluice:auth_rejections:rate5m{surface=\"stream\",reason=\"stream_token_missing\"})",
        0.000_001,
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn per_stream_series_stay_bounded_against_invented_hashes() {
    let o = origin();
    let top = 3;
    let s = Sluice::start(&config(&o, &format!("metrics:\n  top_streams: {top}\n")));
    // Five real but unconfigured streams: the first three served take the slots.
    for i in 0..5 {
        assert_eq!(get(&s, &format!("/stream/real-{i}/seg.ts")).await, 200);
    }
    // 500 invented hashes (the origin has none of them).
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let paths: Vec<String> = (0..500)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            format!("/stream/{rng:016x}/seg.ts")
        })
        .collect();
    for chunk in paths.chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|p| get(&s, p.as_str()))).await;
        assert!(answers.iter().all(|&a| a == 404), "{answers:?}");
    }
    // And the configured content spelled another way is still the configured series.
    assert_eq!(get(&s, "/stream/MOVIE-OPEN/seg1.ts").await, 200);

    // Counted in the logging phase, which may run just after the player has its answer.
    let series = "sluice_stream_requests_total{route=\"stream\",stream=\"movie-open\"}";
    let started = std::time::Instant::now();
    let mut text = metrics(&s).await;
    while common::metric(&text, series) < 1.0 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = metrics(&s).await;
    }
    let configured = 2;
    for family in [
        "sluice_stream_requests_total",
        "sluice_stream_bytes_out_total",
        "sluice_stream_cache_lookups_total",
        "sluice_stream_cache_hits_total",
        "sluice_stream_origin_fetches_total",
    ] {
        let labels: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{family}{{route=\"stream\",stream=\"")))
            .filter_map(|r| r.split('"').next())
            .collect();
        assert!(
            labels.len() <= configured + top + 1,
            "{family}: {} series: {labels:?}",
            labels.len()
        );
        for l in [
            "movie-open",
            "movie-gated",
            "other",
            "real-0",
            "real-1",
            "real-2",
        ] {
            assert!(labels.contains(l), "{family}: no {l}: {labels:?}");
        }
    }
    assert_eq!(
        common::metric(
            &text,
            "sluice_stream_requests_total{route=\"stream\",stream=\"other\"}"
        ),
        502.0
    );
    assert_eq!(
        common::metric(
            &text,
            "sluice_stream_requests_total{route=\"stream\",stream=\"movie-open\"}"
        ),
        1.0
    );
}

fn hex32(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn request_ids_reach_the_origin_the_logs_access_logs_and_the_answer() {
    let o = origin();
    let s = Sluice::start(&config(&o, ""));
    let send = |path: &'static str, id: Option<String>| {
        let mut r = client().get(s.edge_url(path));
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        async move {
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    let origin_ids = |o: &RunningOrigin| -> Vec<String> {
        o.requests()
            .iter()
            .filter_map(|r| r.headers.get("x-request-id").cloned())
            .collect()
    };

    // The player's id: to the origin and back.
    let id = send("/stream/movie-open/seg1.ts", Some("trace-abc-123".into())).await;
    assert_eq!(id, "trace-abc-123");
    assert_eq!(origin_ids(&o), vec!["trace-abc-123".to_string()]);

    // None sent: one is made per request, and the origin sees it.
    let a = send("/stream/movie-open/seg2.ts", None).await;
    let b = send("/stream/movie-open/seg2.ts", None).await;
    assert!(hex32(&a) && hex32(&b) && a != b, "{a} {b}");
    assert_eq!(origin_ids(&o)[1], a);

    // A bad one (spaces, too long) is replaced, upstream as well.
    let c = send("/stream/real-1/seg.ts", Some("has spaces in it".into())).await;
    assert!(hex32(&c), "{c}");
    let d = send("/stream/real-2/seg.ts", Some("x".repeat(129))).await;
    assert!(hex32(&d), "{d}");
    assert_eq!(origin_ids(&o)[2..], [c.clone(), d]);

    // The access-log line carries it.
    let log_has = |needle: &str| {
        s.log()
            .lines()
            .any(|l| l.contains("sluice::access") && l.contains(needle))
    };
    let start = Instant::now();
    while !log_has("request_id=trace-abc-123") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An admin request: the answer and its access_logs row carry the id.
    let key = admin_key(&s);
    let r = client()
        .get(s.admin_url("/api/stream-ids"))
        .bearer_auth(&key)
        .header("x-request-id", "admin-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "admin-req-42");
    // A local refusal on the edge carries one too.
    let r = client()
        .get(s.edge_url("/stream/movie-gated/master.m3u8"))
        .header("x-request-id", "refused-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "refused-1");

    let db = s.state_dir().join("state/sluice.db");
    let start = Instant::now();
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let row: Option<(String, Option<String>)> = conn
            .query_row(
                "SELECT endpoint, request_id FROM access_logs WHERE request_id = 'admin-req-42'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((endpoint, _)) = row {
            assert_eq!(endpoint, "/api/stream-ids");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no access_logs row with the request id"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shipped alert fires on a real Prometheus scraping a real sluice driven into each
/// condition, labelled with that node's `instance`; a fresh sluice scraped by the same
/// Prometheus fires none. The rules are the shipped file's with `for:` set to 0 s (a test
/// cannot wait out 15 minutes) and 1 s intervals; the expressions are as shipped, so their
/// `[5m]` rates divide what happened by 300 s: the traffic is 300 × each threshold.
#[tokio::test]
async fn every_alert_fires_on_a_real_scrape_of_a_sluice_in_trouble_and_not_on_a_fresh_one() {
    const OBJECTS: usize = 4000;
    let mut o = TestOrigin::new()
        .route("/movie-broken/seg1.ts", Reply::status(503))
        .route(
            "/movie-open/seg1.ts",
            Reply::ok(vec![7u8; 100], "video/mp2t"),
        );
    for i in 0..OBJECTS {
        o = o.route(
            &format!("/movie-open/s{i}.ts"),
            Reply::ok(common::random_bytes(4 * 1024, i as u64), "video/mp2t"),
        );
    }
    let o = o.start();
    // A 1 MiB cache: 4000 objects of 4 KiB fill it and evict ~3800 (> 10/s over 5 min).
    let small_cache = "cache:\n  memory_bytes: 1048576\n  max_object_bytes: 65536\n";
    let troubled = Sluice::start(&config(&o, small_cache));
    let fresh = Sluice::start(&config(&o, small_cache));
    let (t, f) = (troubled.admin.to_string(), fresh.admin.to_string());
    let prom = Prometheus::start_with(&[t.clone(), f.clone()], &shipped_rules(true));
    // Both scraped before the trouble starts: the counters' rise falls inside the windows.
    for target in [&t, &f] {
        prom.wait_for(
            &format!("count_over_time(up{{instance=\"{target}\"}}[1m])"),
            2.0,
            Duration::from_secs(30),
        )
        .await;
    }

    // The trouble, all on one node: a working set larger than the cache (misses, a low hit
    // ratio, evictions), a failing origin, gate refusals, an admin client over its limit.
    let paths: Vec<String> = (0..OBJECTS)
        .map(|i| format!("/stream/movie-open/s{i}.ts"))
        .collect();
    for chunk in paths.chunks(50) {
        let answers =
            futures::future::join_all(chunk.iter().map(|p| get(&troubled, p.as_str()))).await;
        assert!(answers.iter().all(|&a| a == 200), "{answers:?}");
    }
    // Over 5 % of origin fetches fail, and over 0.1/s.
    let broken = vec!["/stream/movie-broken/seg1.ts"; 300];
    for chunk in broken.chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|p| get(&troubled, p))).await;
        assert!(answers.iter().all(|&a| a >= 500), "{answers:?}");
    }
    // Over 5 gate refusals/s.
    let gated = vec!["/stream/movie-gated/master.m3u8"; 1800];
    for chunk in gated.chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|p| get(&troubled, p))).await;
        assert!(answers.iter().all(|&a| a == 401), "{answers:?}");
    }
    // Over 1 admin rate-limit refusal/s.
    let admin = |_| async {
        client()
            .get(troubled.admin_url("/api/stream-ids"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let mut limited = 0;
    for _ in 0..8 {
        let answers = futures::future::join_all((0..50).map(admin)).await;
        limited += answers.iter().filter(|&&a| a == 429).count();
    }
    assert!(limited >= 390, "{limited} admin requests limited");
    let m = metrics(&troubled).await;
    let fill = common::metric(&m, "sluice_cache_bytes")
        / common::metric(&m, "sluice_cache_memory_budget_bytes");
    assert!(
        fill > 0.8 && fill <= 1.0,
        "the cache did not fill past the alert's threshold: {fill}"
    );
    assert!(common::metric(&m, "sluice_cache_evictions_total") >= 3300.0);

    // Each alert fired, for the troubled node.
    let alerts: BTreeSet<String> = rules()
        .into_iter()
        .filter(|(_, _, alert)| *alert)
        .map(|(name, _, _)| name)
        .collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    let fired = |instance: String| {
        let prom = &prom;
        async move {
            let q = format!(
                "max by (alertname) (max_over_time(ALERTS{{alertstate=\"firing\",job=\"sluice\",instance=\"{instance}\"}}[5m]))"
            );
            prom.query(&q)
                .await
                .unwrap()
                .iter()
                .map(|r| r["metric"]["alertname"].as_str().unwrap().to_string())
                .collect::<BTreeSet<String>>()
        }
    };
    let start = Instant::now();
    loop {
        let got = fired(t.clone()).await;
        if got == alerts {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "fired for the troubled node: {got:?}, not {:?}\n{}",
            alerts.difference(&got).collect::<Vec<_>>(),
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The fresh node: scraped, its recording rules evaluated (so silence is its values,
    // not missing data), no alert.
    for rule in [
        "sluice:cache_memory_fill:ratio",
        "sluice:origin_error_ratio:rate5m",
    ] {
        let rows = prom
            .query(&format!("{rule}{{instance=\"{f}\"}}"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{rule} for the fresh node: {rows:?}");
    }
    let silent = fired(f.clone()).await;
    assert!(silent.is_empty(), "fired for a fresh sluice: {silent:?}");
}

/// In daemon mode (the shipped unit's) the `process_*` families describe the process that
/// serves, not the parent that forked it and exited.
#[tokio::test]
async fn process_metrics_describe_the_serving_process_in_daemon_mode() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let pid_file = dir.path().join("sluice.pid");
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  edge: 127.0.0.1:{edge}\n  admin: {admin}\nstate:\n  sqlite: {db}\nserver:\n  daemon: true\n  threads: 1\n  pid_file: {pid}\n  error_log: {err}\n  upgrade_sock: {sock}\n{quick}",
            edge = free_port(),
            db = dir.path().join("state/sluice.db").display(),
            pid = pid_file.display(),
            err = dir.path().join("sluice.err.log").display(),
            sock = dir.path().join("upgrade.sock").display(),
            quick = common::QUICK_STOP,
        ),
    )
    .unwrap();
    let status = Command::new(common::sluice_bin())
        .args(["serve", "-c"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the daemonizing parent failed");
    /// Stops the daemon however the test ends.
    struct Daemon(PathBuf);
    impl Drop for Daemon {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
            }
        }
    }
    let _daemon = Daemon(pid_file.clone());
    let start = Instant::now();
    let text = loop {
        if let Ok(r) = client().get(format!("http://{admin}/metrics")).send().await {
            if r.status() == 200 {
                break r.text().await.unwrap();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the daemon did not serve:\n{}",
            std::fs::read_to_string(dir.path().join("sluice.err.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", pid.trim()))
        .unwrap()
        .count() as f64;
    let open = common::metric(&text, "process_open_fds");
    assert!(
        (open - fds).abs() <= 16.0,
        "process_open_fds {open}, the serving process (pid {}) has {fds}:\n{text}",
        pid.trim()
    );
    assert!(common::metric(&text, "process_resident_memory_bytes") > 0.0);
    assert!(common::metric(&text, "process_threads") >= 1.0);
}
