"""Data that the trainers, the variants and the tasks all read, kept below all three so none of them
imports another for it: stdlib.py, the pairs extracted from the standard library's own source
(training data, Wanda's calibration text and the held-out `code_explain_stdlib` task)."""
