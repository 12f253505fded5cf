"""The web process never imports torch: loading every URL, view and API module leaves it out."""

import os
import subprocess
import sys

CODE = """
import django, sys
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # imports every view and API module
from django.test import Client
import config.urls, retrieval.api, retrieval.run_views
import retrieval.runs.search, retrieval.runs.index, retrieval.runs.evaluation
import retrieval.runs.services, retrieval.runs.comparison
print('torch' in sys.modules, 'timm' in sys.modules)
"""


def test_views_do_not_import_torch(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true", "DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stderr
