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
    // redesign plus 10% (dense1's re-measured with an owner index that
    // holds all its tables).
    assert_eq!(get("references_internal.dense1").budget, Some(5.9));
    assert_eq!(get("follow_external.dense1").budget, Some(20.0));
    assert_eq!(get("follow_external.kshared16").budget, Some(20.1));
    assert_eq!(get("follow_external.kshared16").units, 4_260_096);
    assert_eq!(get("references_internal.kshared16").units, 327_936);
    assert_eq!(get("references_internal.sparse1").budget, Some(2.6));
    assert_eq!(get("v2p_internal.kshared16").budget, Some(19.8));
    // None is ever looser than the first, wide ceilings (12 per leaf
    // internal, 30 external, 3 per sparse entry, 40 per translation); the
    // real guest's are composed, below.
    for x in &b {
        let (f, w) = x.bench.split_once('.').unwrap();
        if w.starts_with("x64_") || w.starts_with("pae_") {
            continue; // held to their i686 counterparts below
        }
        let ceiling = match f {
            n if n.starts_with("guest_") => continue,
            n if n.starts_with("v2p") => 40.0,
            _ if x.unit == "entry" => 3.0,
            n if n.ends_with("_external") => 30.0,
            _ => 12.0,
        };
        assert!(x.budget.is_none_or(|v| v <= ceiling), "{x:?}");
    }
    // Issue 8: the PAE and x86-64 rows aim at i686's budgets. Each
    // `f.x64_W` / `f.pae_W` row has an i686 `f.W` row whose budget is its
    // goal (the x86-64 v2p's is composed, below); the rows that already
    // meet it are held to it; the others carry their measured figure +
    // 10% (benches/budgets.txt), never more than 1.2 times their goal.
    // Every i686 walk row has its x86-64 counterpart (compaction stays
    // i686, reported without a budget).
    let meets_i686 = [
        "references_internal.x64_dense1",
        "follow_internal.x64_dense1",
        "references_external.x64_dense1",
        "follow_external.x64_dense1",
        "references_internal.pae_dense1",
        "follow_internal.pae_dense1",
        "references_external.pae_dense1",
        "follow_external.pae_dense1",
        "references_internal.x64_kshared16",
        "follow_internal.x64_kshared16",
        "references_external.x64_kshared16",
        "follow_external.x64_kshared16",
        "references_internal.pae_kshared16",
        "follow_internal.pae_kshared16",
        "references_external.pae_kshared16",
        "follow_external.pae_kshared16",
        "references_internal.x64_sparse1",
        "follow_internal.x64_sparse1",
        "references_external.x64_sparse1",
        "follow_external.x64_sparse1",
        "counts_follow.x64_dense1",
        "counts_follow.x64_kshared16",
        "counts_follow.pae_dense1",
        "counts_follow.pae_kshared16",
        "v2p_internal.x64_kshared16",
        "v2p_external.x64_kshared16",
    ];
    let mut new_rows = 0;
    for x in &b {
        let (f, w) = x.bench.split_once('.').unwrap();
        let Some(base) = w.strip_prefix("x64_").or_else(|| w.strip_prefix("pae_")) else {
            continue;
        };
        if f.starts_with("guest_") {
            continue;
        }
        let i686 = get(&format!("{f}.{base}"));
        assert_eq!(x.unit, i686.unit, "{}", x.bench);
        let goal = if f.starts_with("v2p") {
            // i686's budget per entry read, times the entries an x86-64
            // translation reads (tests/workloads.rs counts both).
            let per_entry = i686.budget.unwrap() * 4096.0 / 5158.0;
            (per_entry * 13_301.0 / 4096.0 * 10.0).round() / 10.0
        } else {
            i686.budget.unwrap()
        };
        assert_eq!(x.goal, Some(goal), "{x:?} aims at {goal}");
        let limit = if meets_i686.contains(&x.bench.as_str()) {
            goal
        } else {
            1.2 * goal
        };
        assert!(
            x.budget.is_some_and(|b| b <= limit),
            "{x:?} is looser than {limit}"
        );
        new_rows += 1;
    }
    assert_eq!(new_rows, 26);
    for x in &b {
        let (f, w) = x.bench.split_once('.').unwrap();
        if f != "compact" && ["dense1", "kshared16", "sparse1"].contains(&w) {
            get(&format!("{f}.x64_{w}"));
        }
    }
    // The real guest's target (goal) per leaf is composed from i686's
    // budgets: the per-entry budget for the 8,663,040 entries its follow
    // walk reads, plus the per-leaf follow budget (tests/workloads.rs
    // checks both counts). Its budget is the goal where the goal is met,
    // else the measured figure + 10%.
    for (f, per_leaf) in [
        ("guest_follow_internal", "follow_internal.kshared16"),
        ("guest_follow_external", "follow_external.kshared16"),
    ] {
        let g = get(&format!("{f}.x64_pti"));
        let entry = get("follow_internal.sparse1").budget.unwrap();
        let target = entry * 8_663_040.0 / g.units as f64 + get(per_leaf).budget.unwrap();
        assert_eq!(g.units, 552_650);
        assert_eq!(g.goal, Some((target * 10.0).round() / 10.0), "{g:?}");
        assert!(g.budget.is_some_and(|b| b <= 1.7 * target), "{g:?}");
    }
    assert_eq!(get("guest_follow_internal.x64_pti").budget, Some(46.8));
    assert_eq!(get("guest_follow_external.x64_pti").budget, Some(60.9));
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
    // So is one that ran without a budget row: it would go unjudged.
    let extra = [
        ("references_internal.dense1".to_string(), 4000),
        ("references_internal.x64_dense1".to_string(), 4000),
    ];
    let r = check(&budgets, &extra);
    assert_eq!(r.failures.len(), 1, "{}", r.table);
    assert!(r.failures[0].contains("x64_dense1"));
    assert!(
        check(&budgets, &[("references_internal.dense1".into(), 4000)])
            .table
            .contains("goal met")
    );
}
