"""Pure ML: torch, timm, faiss and numpy, no Django (import-linter keeps it so).

Weights never come from the network (retrieval.ml.weights). HF_HUB_OFFLINE is set here, before any
module of this package can import timm or huggingface_hub, which read it once at import time; the
cache lookups also pass local_files_only explicitly, so an exported HF_HUB_OFFLINE=0 cannot make a
backbone download either.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
