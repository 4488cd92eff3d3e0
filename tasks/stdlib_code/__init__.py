"""Tasks on held-out standard-library code: the likelihood of the `validation` split's function
bodies (`stdlib_nll`, nll.py), humaneval_nll's measurement on code that is not HumanEval. The YAMLs
are the tasks."""
