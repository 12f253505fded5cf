"""manage.py train DATASET --task binary --positive Cardiomegaly [...]: fine-tune, embed, index, evaluate."""

from django.core.management.base import BaseCommand

from retrieval.cli import add_run_options, common_config, create_and_follow, dataset_lookup, split_for


class Command(BaseCommand):
    help = (
        "Fine-tune a timm backbone on the dataset's labels (binary: positive findings vs negatives, "
        "multi-label, or regression on a numeric label), then embed, index and evaluate (paper 000). "
        "Training uses the split's train part, model selection its val part, evaluation its test part."
    )

    def add_arguments(self, parser):
        parser.add_argument("dataset")
        add_run_options(parser)
        parser.add_argument(
            "--method",
            choices=["finetune", "densenet_cnn", "attention", "igcbir", "rating_metric"],
            default="finetune",
            help="finetune: any timm backbone (paper 000); densenet_cnn: DenseNet-121, Euclidean "
            "(001/003); attention: dual-attention DenseNet (003); igcbir: a second network on "
            "the saliency of --classifier-run (001/003); rating_metric: metric learning from "
            "the readers' rating vectors of a rating table (004)",
        )
        parser.add_argument(
            "--characteristics",
            nargs="+",
            default=None,
            help="rating_metric: the rated characteristics to learn from (default: all)",
        )
        parser.add_argument(
            "--semi-supervised",
            action="store_true",
            help="rating_metric: a rating regressor first labels the unrated training images",
        )
        parser.add_argument("--classifier-run", type=int, default=None, help="igcbir: id of the classifier run")
        parser.add_argument(
            "--input-saliency",
            choices=["deep_taylor", "grad_cam"],
            default=None,
            help="igcbir: the classifier's saliency, input of the second network (default deep_taylor; "
            "Grad-CAM is used, and recorded, where Deep Taylor does not apply: attention, ViT)",
        )
        parser.add_argument(
            "--features",
            choices=["raw", "l2_normalised"],
            default=None,
            help="embeddings: raw penultimate features (default of densenet_cnn/attention/igcbir with "
            "--metric l2, papers 001/003) or L2-normalised (default otherwise)",
        )
        parser.add_argument(
            "--saliency",
            choices=["grad_cam", "deep_taylor", "gradient_x_input", "none"],
            default="grad_cam",
            help="overlays of the test images shown in the UI",
        )
        parser.add_argument("--task", choices=["binary", "multilabel", "regression"], default="binary")
        parser.add_argument("--positive", nargs="+", default=[], help="binary: positive findings (their union)")
        parser.add_argument("--negative", nargs="+", default=["No Finding"], help="binary: negative findings")
        parser.add_argument("--no-undersample", action="store_true", help="binary: keep the class imbalance")
        parser.add_argument("--labels", nargs="+", default=[], help="multi-label: the label names")
        parser.add_argument("--target", default="", help="regression: the numeric label")
        parser.add_argument(
            "--bins", nargs="*", type=float, default=None, help="regression: class edges for evaluation"
        )
        parser.add_argument("--epochs", type=int, default=None, help="default 5; rating_metric 60 (paper 004)")
        parser.add_argument("--lr", type=float, default=None, help="default 1e-4; rating_metric 1e-3 (paper 004)")
        parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **o):
        dataset = dataset_lookup(o["dataset"])
        if o["method"] == "rating_metric":
            return self._rating_metric(dataset, o)
        o["epochs"], o["lr"] = o["epochs"] or 5, o["lr"] or 1e-4
        cfg = {
            **common_config(o),
            "task": o["task"],
            "epochs": o["epochs"],
            "lr": o["lr"],
            "optimizer": o["optimizer"],
            "seed": o["seed"],
            "saliency": "" if o["saliency"] == "none" else o["saliency"],
        }
        if o["classifier_run"] is not None:
            cfg["classifier_run"] = o["classifier_run"]
        if o["input_saliency"]:
            cfg["input_saliency"] = o["input_saliency"]
        if o["features"]:
            cfg["features"] = o["features"]
        if o["task"] == "binary":
            cfg.update(positive=o["positive"], negative=o["negative"], undersample=not o["no_undersample"])
        elif o["task"] == "multilabel":
            cfg["labels"] = o["labels"]
        else:
            cfg["target"] = o["target"]
            if o["bins"]:
                cfg["bins"] = o["bins"]
        what = "+".join(o["positive"] or o["labels"] or [o["target"]])
        name = o["name"] or f"{o['method'] if o['method'] != 'finetune' else o['backbone']} {o['task']} {what}"
        create_and_follow(
            self,
            dataset=dataset,
            name=name,
            method=o["method"],
            config=cfg,
            split=split_for(dataset, o["split"], o["split_seed"]),
            sync=o["sync"],
            no_wait=o["no_wait"],
        )

    def _rating_metric(self, dataset, o):
        cfg = {**common_config(o), "seed": o["seed"], "semi_supervised": o["semi_supervised"]}
        cfg.update({k: o[k] for k in ("epochs", "lr", "characteristics") if o[k] is not None})
        name = o["name"] or f"{o['backbone']} rating metric{' (semi-supervised)' if o['semi_supervised'] else ''}"
        create_and_follow(
            self,
            dataset=dataset,
            name=name,
            method="rating_metric",
            config=cfg,
            split=split_for(dataset, o["split"], o["split_seed"]),
            sync=o["sync"],
            no_wait=o["no_wait"],
        )
