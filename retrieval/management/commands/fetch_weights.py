"""manage.py fetch_weights MODEL [MODEL ...]: pretrained weights into the local Hugging Face cache."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from retrieval.ml.fetch import WeightsFetchError, fetch_weights  # a command, not the web process: timm is fine


class Command(BaseCommand):
    help = (
        "Download the pretrained weights of timm or open_clip models (e.g. resnet50, "
        "open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224) into the Hugging Face cache "
        "the runs read, with a progress bar. Needs WEIGHTS_DOWNLOAD=true (the server may reach the hub, HF_ENDPOINT); "
        "otherwise it says which file to copy where. Runs themselves never download."
    )

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="+", help="timm model name, hf-hub:ORG/REPO or open_clip:hf-hub:ORG/REPO")

    def handle(self, *args, models, **options):
        for model in models:
            try:
                paths = fetch_weights(model, allowed=settings.WEIGHTS_DOWNLOAD)
            except WeightsFetchError as exc:
                raise CommandError(str(exc)) from None
            for path in paths:
                self.stdout.write(f"{model}: {path}")
