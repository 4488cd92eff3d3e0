"""Runs and reports: everything between a model and a number.

    cli.py            `codegen-bench` (provision, build, train, exec, matrix, leaderboard, check)
    lm_eval_plugin/   the `codegen` lm-eval model and the hook that makes plain `lm_eval` find it
    engine/           token ids in, text and log-likelihoods out: our HF engine, vLLM
    execution/        HumanEval problems, sanitize -> execute (sandboxed) -> score, samples files
    runs/             the matrix, the latency suite, reports, statistics, the regression gate
    errors.py files.py cache.py provision.py loading.py distributed.py signals.py config_args.py
    cpu.py            what every room uses: the one error type, atomic/JSONL/record files, the
                      cache folder, the embedded default model, model loading, accelerate ranks,
                      SIGTERM, typed configs from command-line strings, the CPU's flags

What is measured lives in tasks/, what a variant is in variants/, what produces weights in trainers/.
"""
