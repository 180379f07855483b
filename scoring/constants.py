"""Values the light modules (CLI, Airflow side) share with the torch modules, without importing torch."""

# Decompression-bomb guard: far above any photo, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 64_000_000
PRECISIONS = ("fp32", "bf16", "fp16")
