"""The root `nwt-train` app: it only registers the commands."""

from __future__ import annotations

import typer

from nwt_data.helptext import tidy
from nwt_train.cli import demo, describe, dvae, encode, env, eval_dvae, generate, mnist_study, prior

app = typer.Typer(
    name="nwt-train",
    help="Train the NWT dVAE-Adv and its autoregressive priors on nwt-data shards.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("env")(env.env)
app.command("dvae")(dvae.dvae)
app.command("encode")(encode.encode)
app.command("prior")(prior.prior)
app.command("generate")(generate.generate)
app.command("eval-dvae")(eval_dvae.eval_dvae)
app.command("mnist-study")(mnist_study.mnist_study)
app.command("describe")(describe.describe)
app.command("demo")(demo.demo)


tidy(app)


def main() -> None:
    app()
