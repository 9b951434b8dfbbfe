//! The bench gate's logic: read the budget table and iai-callgrind's
//! `summary.json` files, turn total instructions into per-unit figures and
//! judge them. Pure functions, so the parser and the verdict are tested
//! (`tests/bench_gate.rs`) without running valgrind.

use std::fmt::Write as _;

/// One row of `benches/budgets.txt`.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// `function.id`, as iai-callgrind names the benchmark.
    pub bench: String,
    /// What one unit of work is (leaf, entry, translation).
    pub unit: String,
    /// Units of work the benchmark does.
    pub units: u64,
    /// Instructions per unit CI allows (`None`: report only).
    pub budget: Option<f64>,
    /// Instructions per unit we aim at (`None`: no goal set).
    pub goal: Option<f64>,
}

/// Parses the budget table: `#` comments, then whitespace-separated
/// `bench unit units budget goal` rows (`-` for no budget or goal).
pub fn parse_budgets(text: &str) -> Result<Vec<Budget>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [bench, unit, units, budget, goal] = cols[..] else {
            return Err(format!(
                "budgets line {}: expected 5 columns, got {}",
                n + 1,
                cols.len()
            ));
        };
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| format!("budgets line {}: '{s}' is not a number", n + 1))
        };
        out.push(Budget {
            bench: bench.to_string(),
            unit: unit.to_string(),
            units: units
                .parse()
                .map_err(|_| format!("budgets line {}: '{units}' is not a count", n + 1))?,
            budget: if budget == "-" {
                None
            } else {
                Some(num(budget)?)
            },
            goal: if goal == "-" { None } else { Some(num(goal)?) },
        });
    }
    Ok(out)
}

/// `(function.id, total instructions)` from one iai-callgrind 0.16
/// `summary.json`.
pub fn parse_summary(json: &str) -> Result<(String, u64), String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("summary: {e}"))?;
    let name = format!(
        "{}.{}",
        v["function_name"]
            .as_str()
            .ok_or("summary: no function_name")?,
        v["id"].as_str().ok_or("summary: no id")?
    );
    let profile = v["profiles"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["tool"] == "Callgrind"))
        .ok_or("summary: no Callgrind profile")?;
    let ir = &profile["summaries"]["total"]["summary"]["Callgrind"]["Ir"]["metrics"];
    // "Left": this run only; "Both": [this run, the previous baseline].
    let new = ir
        .get("Left")
        .or_else(|| ir.get("Both").and_then(|b| b.get(0)));
    let total = new
        .and_then(|m| m.get("Int"))
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("summary of {name}: no instruction count"))?;
    Ok((name, total))
}

/// The verdict over all budgets.
#[derive(Debug)]
pub struct Report {
    /// The printed table.
    pub table: String,
    /// One line per broken budget or missing benchmark.
    pub failures: Vec<String>,
}

/// Judges `measured` (`function.id` → total instructions) against `budgets`:
/// a budget exceeded, a row not measured and a benchmark without a row all
/// fail.
pub fn check(budgets: &[Budget], measured: &[(String, u64)]) -> Report {
    let mut table = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(
        table,
        "{:<36} {:>12} {:>9} {:<12} {:>8} {:>7} {:>6}  verdict",
        "benchmark", "instructions", "units", "unit", "per unit", "budget", "goal"
    );
    for b in budgets {
        let Some(&(_, total)) = measured.iter().find(|(n, _)| *n == b.bench) else {
            failures.push(format!("{}: not measured", b.bench));
            let _ = writeln!(table, "{:<36} {:>12}", b.bench, "missing");
            continue;
        };
        let per = total as f64 / b.units as f64;
        let verdict = match b.budget {
            Some(max) if per > max => {
                failures.push(format!(
                    "{}: {per:.2} instructions per {} > budget {max}",
                    b.bench, b.unit
                ));
                "OVER BUDGET"
            }
            _ if b.goal.is_some_and(|g| per <= g) => "goal met",
            Some(_) => "ok",
            None => "report only",
        };
        let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x}"));
        let (budget, goal) = (show(b.budget), show(b.goal));
        let _ = writeln!(
            table,
            "{:<36} {:>12} {:>9} {:<12} {:>8.2} {:>7} {:>6}  {verdict}",
            b.bench, total, b.units, b.unit, per, budget, goal
        );
    }
    // A benchmark without a row would go unjudged: that is a failure too.
    for (name, total) in measured {
        if !budgets.iter().any(|b| b.bench == *name) {
            failures.push(format!("{name}: measured but not in budgets.txt"));
            let _ = writeln!(table, "{name:<36} {total:>12} {:>9}", "no row");
        }
    }
    Report { table, failures }
}
