"""A worker's scorer as init() builds it: where its start-up went, as data and as one log line."""

import logging
import re

from scoring.job_settings import JobSettings
from scoring.mini_batch import MiniBatchScorer, Stamp


def test_init_times_its_steps_and_logs_them_in_one_line(model_dir, caplog):
    caplog.set_level(logging.INFO, logger="scoring.mini_batch")
    scorer = MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"), settings=JobSettings(device="cpu"))
    assert list(scorer.init_steps) == ["capabilities", "model", "batch_fit", "decoder"]
    assert scorer.init_steps["model"] > 0 and all(seconds >= 0 for seconds in scorer.init_steps.values())
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("init: ")]
    assert len(lines) == 1
    assert re.fullmatch(r"init: \d+\.\ds \(capabilities \d+\.\d\ds, model \d+\.\d\ds, batch fit \d+\.\d\ds, "
                        r"decoder \d+\.\d\ds\)", lines[0]), lines[0]
