"""lm-eval's side: `codegen`, our lm-eval model (model.py: requests in, engine calls, results out), and
the import hook that makes the plain `lm_eval` command find it and our tasks (hook.py).

Nothing here is imported at start-up but hook.py, which imports only os and sys.
"""
