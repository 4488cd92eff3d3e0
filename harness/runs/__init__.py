"""Runs and what is read from them: the variants x tasks matrix, the latency suite, the reports, the
statistics behind every interval and paired comparison, and the regression gate.

    matrix.py       every (variant, task) cell through lm-eval, resumable; the latency suite after
    item_scores.py  each cell's per-item scores, so every metric gets an interval and a paired test
    uncertainty.py  Wilson and bootstrap intervals, exact McNemar, paired bootstrap differences
    reports.py      records -> matrix.csv, LEADERBOARD.md, quality_vs_cost.png
    gate.py         `codegen-bench check`: a run against the committed baseline

A run folder holds records.jsonl (one line per finished cell), latency.json and samples/.
"""
