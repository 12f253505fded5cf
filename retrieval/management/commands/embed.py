"""manage.py embed DATASET --backbone NAME [--weights pretrained|random|PATH]: off-the-shelf features."""

from django.core.management.base import BaseCommand

from retrieval.cli import add_run_options, common_config, create_and_follow, dataset_lookup, split_for


class Command(BaseCommand):
    help = (
        "Embed every image of a dataset with an off-the-shelf timm backbone (paper 002), build its FAISS "
        "index and, with a split, evaluate retrieval on the test part. Queued on the GPU queue unless --sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset")
        add_run_options(parser)
        parser.add_argument("--no-split", action="store_true", help="embed and index only, no evaluation")
        parser.add_argument(
            "--method",
            choices=["timm", "ensemble", "ssim"],
            default="timm",
            help="timm: a backbone's features (002); ensemble: combine the fine-tuned --runs "
            "(000); ssim: structural similarity, ranks catalogues and searches (001/003)",
        )
        parser.add_argument("--runs", nargs="+", type=int, default=[], help="ensemble: ids of fine-tuned runs")

    def handle(self, *args, **o):
        dataset = dataset_lookup(o["dataset"])
        split = None if o["no_split"] else split_for(dataset, o["split"], o["split_seed"])
        name = (
            o["name"]
            or f"{o['backbone']} ({o['weights'] if o['weights'] in ('pretrained', 'random') else 'checkpoint'})"
        )
        cfg = common_config(o)
        if o["method"] == "ensemble":
            cfg = {"runs": o["runs"], **({"metric": o["metric"]} if o["metric"] else {})}
            name = o["name"] or "ensemble " + "+".join(map(str, o["runs"]))
        elif o["method"] == "ssim":
            cfg, name = {}, o["name"] or "SSIM"
        create_and_follow(
            self,
            dataset=dataset,
            name=name,
            method=o["method"],
            config=cfg,
            split=split,
            sync=o["sync"],
            no_wait=o["no_wait"],
        )
