"""What is measured: lm-eval task YAMLs and the few functions a YAML cannot express."""
