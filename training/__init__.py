"""Training half of segrt: models, data, losses, training loops, export and checkpoint import (needs PyTorch)."""
