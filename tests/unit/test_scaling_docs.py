"""README "Scaling out" stays in step with the code it documents: the spark-submit line carries
the packages and confs of `lake_config.spark.classic_conf`, and names job files that exist."""

from __future__ import annotations

import re
from pathlib import Path

from lake_config.settings import Settings
from lake_config.spark import classic_conf

ROOT = Path(__file__).resolve().parents[2]
# Left to the job, which reads them from TLAKE_S3_*: never on a command line.
CREDENTIALS = {"spark.hadoop.fs.s3a.access.key", "spark.hadoop.fs.s3a.secret.key"}


def _scaling_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Scaling out", 1)[1].split("\n## ", 1)[0]


def test_spark_submit_line_matches_classic_conf() -> None:
    section = _scaling_section()
    # Explicit values win over any TLAKE_* in the environment; README shows an http endpoint.
    settings = Settings(env="test", spark_remote="", s3_endpoint="http://127.0.0.1:8333")
    conf = classic_conf(settings)
    documented = dict(re.findall(r"--conf ([\w.]+)=(\S+)", section))
    packages = re.findall(r"--packages (\S+)", section)
    assert packages == [conf.pop("spark.jars.packages")]
    assert set(documented) == set(conf) - CREDENTIALS
    for key in set(documented) - {"spark.hadoop.fs.s3a.endpoint"}:
        assert documented[key] == conf[key], key


def test_documented_jobs_exist_and_take_a_run_id() -> None:
    section = _scaling_section()
    jobs = re.search(r"for job in (.+); do", section)
    assert jobs is not None
    for job in jobs[1].split():
        source = (ROOT / "spark_jobs" / job).read_text()
        assert '"--run-id", required=True' in source, job
