"""mgtui: the Model Garden terminal UI for LoRA/QLoRA fine-tuning."""

__version__ = "0.1.0"
