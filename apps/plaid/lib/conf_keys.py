"""The app's own ``--conf`` keys, each described once by its field (`plaid.options.option`).

Every field of `plaid.infer.predictor.InferConfig` and every training option of `plaid.train.config.TrainConfig`
is a ``--conf`` key as well (the training ones set the server's training defaults); the docs' tables are
generated from all three (``scripts/plaid_dev/option_tables.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from plaid.options import option


@dataclass(frozen=True)
class AppConf:
    """``--conf`` keys read by the app itself, with the defaults the app uses when one is not given."""

    model_dir: str | None = option(None, help="folder of the published `calcification.pt` and of the training "
                                   "runs", shown_default="`<repo>/model`")
    models: str = option("all", help="comma-separated names of the models to serve (`calcification`), or `all`",
                         notes="An unknown name stops the server at startup, listing the available ones")
    skip_trainers: bool = option(False, help="serve inference only (no trainer)")
    finetune: bool = option(True, help="training starts from the published model when one exists (a train "
                            "request's `finetune` decides for its run)")
    recipe: str | None = option(None, help="recipe file (`recipes/*.json`, the format `plaid train --recipe` reads) "
                                "giving the training defaults; a training option given as a `--conf` key beside "
                                "it wins", notes="A bad file or an unknown setting stops the server at startup, "
                                                 "naming it")
    pretrained_weights: str | None = option(None, help="the training option `weights_path` under the name the app "
                                            "gives it", shown_default="torch hub cache")
    dicomweb_modality: str = option("MG", help="DICOMweb datastore: the Modality whose instances are listed")
    dicomweb_refresh_s: float = option(10.0, help="DICOMweb datastore: seconds between two QIDO-RS listings")
    dicomweb_auto_scoring: bool = option(False, help="DICOMweb datastore: run MONAI Label's active-learning "
                                         "scoring at startup and after each label",
                                         notes="It downloads every listed study; POST /scoring/active_learning "
                                               "runs it when wanted")


APP_DEFAULTS = AppConf()
