"""Produce weights: LoRA/QLoRA fine-tuning (the variants issue)."""
