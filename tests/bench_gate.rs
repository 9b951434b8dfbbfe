//! The bench gate's parser and verdict: it reads iai-callgrind summaries,
//! holds the committed budgets, and fails on an injected slowdown.

#[path = "../benches/gate/budget.rs"]
mod budget;

use budget::{Budget, check, parse_budgets, parse_summary};

/// A summary as iai-callgrind 0.16 writes it (trimmed to what the gate reads).
fn summary(function: &str, id: &str, metrics: &str) -> String {
    format!(
        r#"{{"function_name":"{function}","id":"{id}","profiles":[{{"tool":"Callgrind",
        "summaries":{{"parts":[],"total":{{"regressions":[],"summary":{{"Callgrind":{{
        "Ir":{{"diffs":null,"metrics":{metrics}}}}}}}}}}}}}]}}"#
    )
}

#[test]
fn reads_this_run_from_left_or_both() {
    let s = summary("follow_internal", "dense1", r#"{"Left":{"Int":123}}"#);
    assert_eq!(
        parse_summary(&s),
        Ok(("follow_internal.dense1".into(), 123))
    );
    let s = summary(
        "v2p_external",
        "kshared16",
        r#"{"Both":[{"Int":7},{"Int":9}]}"#,
    );
    assert_eq!(parse_summary(&s), Ok(("v2p_external.kshared16".into(), 7)));
    assert!(parse_summary(&summary("a", "b", r#"{"Right":{"Int":1}}"#)).is_err());
    assert!(parse_summary("{").is_err());
}

#[test]
fn committed_budgets_parse_and_match_benchmarks_md() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/budgets.txt"))
        .unwrap();
    let b = parse_budgets(&text).unwrap();
    let get = |name: &str| b.iter().find(|x| x.bench == name).unwrap().clone();
    // The budgets of docs/BENCHMARKS.md: the figures before the paging-mode
    // redesign plus 10%.
    assert_eq!(get("references_internal.dense1").budget, Some(5.3));
    assert_eq!(get("follow_external.kshared16").budget, Some(20.1));
    assert_eq!(get("follow_external.kshared16").units, 4_260_096);
    assert_eq!(get("references_internal.kshared16").units, 327_936);
    assert_eq!(get("references_internal.sparse1").budget, Some(2.6));
    assert_eq!(get("v2p_internal.kshared16").budget, Some(19.8));
    // None is ever looser than the first, wide ceilings (12 per leaf
    // internal, 30 external, 3 per sparse entry, 40 per translation).
    for x in &b {
        let ceiling = match x.bench.split('.').next().unwrap() {
            n if n.starts_with("v2p") => 40.0,
            _ if x.unit == "entry" => 3.0,
            n if n.ends_with("_external") => 30.0,
            _ => 12.0,
        };
        assert!(x.budget.is_none_or(|v| v <= ceiling), "{x:?}");
    }
    assert!(parse_budgets("x leaf 1 2").is_err());
    assert!(parse_budgets("x leaf one 2 3").is_err());
}

#[test]
fn an_injected_slowdown_fails_the_gate() {
    let budgets = vec![Budget {
        bench: "references_internal.dense1".into(),
        unit: "leaf".into(),
        units: 1000,
        budget: Some(12.0),
        goal: Some(5.0),
    }];
    let at_budget = [("references_internal.dense1".to_string(), 12_000)];
    assert!(check(&budgets, &at_budget).failures.is_empty());
    let slower = [("references_internal.dense1".to_string(), 12_001)];
    let r = check(&budgets, &slower);
    assert_eq!(r.failures.len(), 1, "{}", r.table);
    assert!(r.table.contains("OVER BUDGET"));
    // A benchmark that did not run is a failure too, never a silent pass.
    assert_eq!(check(&budgets, &[]).failures.len(), 1);
    assert!(
        check(&budgets, &[("references_internal.dense1".into(), 4000)])
            .table
            .contains("goal met")
    );
}
