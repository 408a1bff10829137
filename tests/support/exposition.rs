//! A small reader of the Prometheus/OpenMetrics text `/metrics` answers, for asserting values.

use std::collections::BTreeMap;

/// One sample: name (with its `_total`/`_info` suffix), labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// Parses Prometheus/OpenMetrics text into samples (comments and `# EOF` skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().expect("number"))
        })
        .collect()
}

/// The sum of every series of `name` whose labels include all of `want`.
pub fn sum(metrics: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    matching(metrics, name, want).map(|(_, _, v)| v).sum()
}

/// The series of `name` whose labels include all of `want`.
pub fn matching<'a>(
    metrics: &'a [Sample],
    name: &'a str,
    want: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    metrics.iter().filter(move |(n, l, _)| {
        n == name && want.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    })
}
