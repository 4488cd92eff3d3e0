"""Code explanation tasks: a function in, its docstring's first paragraph as the reference
(`code_explain_humaneval`, `code_explain_stdlib`): pairs in data.py, BLEU/chrF/BERTScore in
utils.py and bertscore.py. The YAMLs are the tasks."""
