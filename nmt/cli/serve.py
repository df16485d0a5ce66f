"""``nmt-serve``: the HTTP translation server and its page (nmt.serving.server).

nmt-serve checkpoint=runs/quickstart/best.pt port=8000     # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, ListConfig

from nmt.cli.startup import report_user_errors, setup_cpu
from nmt.decoding.backend import translator_from_cfg
from nmt.decoding.translator import search_origin
from nmt.errors import ConfigError
from nmt.paths import CONFIG_DIR
from nmt.serving.server import ServeOptions, create_app, log, model_digest, serve


@hydra.main(config_path=str(CONFIG_DIR), config_name="serve", version_base="1.3")
@report_user_errors("nmt-serve")
def main(cfg: DictConfig) -> None:
    if cfg.search.n_best != 1:
        raise ConfigError(f"search.n_best={cfg.search.n_best}: nmt-serve returns one translation per line (n_best=1)")
    options = ServeOptions(
        max_lines=cfg.max_lines,
        max_chars=cfg.max_chars,
        max_beam_size=cfg.max_beam_size,
        max_body_bytes=cfg.max_body_bytes,
        max_batch_wait_ms=float(cfg.max_batch_wait_ms),
        max_queue=cfg.max_queue,
        request_timeout_s=float(cfg.request_timeout_s),
        keep_alive_s=cfg.keep_alive_s,
    )
    setup_cpu(int(cfg.threads))
    translator = translator_from_cfg(cfg)
    log.info("decoding with %s %s", translator.search.describe(), search_origin(cfg.search))
    paths = list(cfg.checkpoint) if isinstance(cfg.checkpoint, ListConfig) else [cfg.checkpoint]
    app = create_app(translator, options, model_digest(paths))
    serve(app, options, str(cfg.host), int(cfg.port), bool(cfg.access_log))


if __name__ == "__main__":
    main()
