"""HumanEval tasks: pass@k in the published evalplus protocol (`humaneval_custom`) and the prefilled
fence (`humaneval_fenced`) in utils.py, likelihood of the canonical solutions (`humaneval_nll`,
nll.py), similarity to them (`humaneval_similarity`, similarity.py). The YAMLs are the tasks."""
