"""What produces weights: data.py builds training pairs from the standard library, sft.py trains
LoRA / QLoRA adapters on them with trl."""
