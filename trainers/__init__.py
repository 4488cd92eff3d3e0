"""What produces weights: sft.py trains LoRA / QLoRA adapters with trl, recipes.py names the
adapters the matrix uses, trained on the standard-library corpus (harness/corpus/stdlib.py)."""
