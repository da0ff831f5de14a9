"""Triton's load generator, the real ``perf_analyzer`` binary, against the server.

It asks for the model's metadata and config, streams random 256x256 images at concurrency
1 and 2, reads the server's statistics before and after each window (it refuses them if
the three compute counts differ) and writes its CSV report, which is parsed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from perf_analyzer_tool import PerfAnalyzer, find_perf_analyzer

from robust_style.server.app import StyleServer


@pytest.fixture(scope="module")
def perf_analyzer() -> PerfAnalyzer:
    found = find_perf_analyzer()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def test_perf_analyzer_at_concurrency_1_and_2(perf_analyzer: PerfAnalyzer, server: StyleServer,
                                              tmp_path: Path) -> None:
    tc = pytest.importorskip("tritonclient.grpc")
    report = tmp_path / "report.csv"
    proc, rows = perf_analyzer.run(
        ["-m", "tiny", "-u", server.address, "-i", "grpc", "--shape", "image:256,256,3",
         "--concurrency-range", "1:2", "--measurement-mode", "count_windows",
         "--measurement-request-count", "20", "--stability-percentage", "100",
         "--max-trials", "10", "--percentile", "95"], report)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Server side statistics compute counts must be the same" not in proc.stderr
    assert [int(r["Concurrency"]) for r in rows] == [1, 2], report.read_text()
    for row in rows:
        assert row["Inferences/Second"] > 0
        assert 0 < row["p50 latency"] <= row["p95 latency"] <= row["p99 latency"]
        # server-side figures come from our ModelStatistics (microseconds per request)
        assert row["Server Compute Infer"] > 0
    # perf_analyzer printed the server's side of each window
    assert proc.stdout.count("Server:") == 2 and "Execution count" in proc.stdout

    stats = tc.InferenceServerClient(server.address).get_inference_statistics("tiny")
    s = stats.model_stats[0]
    st = s.inference_stats
    assert st.success.count >= 2 * 20 and st.fail.count == 0
    assert s.inference_count == s.execution_count == st.success.count  # batch 1 on a CPU
    assert st.queue.count == st.compute_input.count == st.compute_infer.count \
        == st.compute_output.count == st.success.count
